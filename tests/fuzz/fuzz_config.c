/*
 * fuzz_config.c - config_parse() (common/config.h) on arbitrary bytes: JSON
 * syntax errors (line/column), the strict key walk with type checks, model
 * and variant cross references, defaults and path resolution. The path is a
 * fake one; the parser only resolves paths, it does not open them.
 */
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);   /* config_parse takes a C string */
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	struct run_config c;
	if (config_parse(&c, text, "/tmp/fuzz/config.json") == 0) {
		for (int v = 0; v < c.nvariants; v++)
			(void)variant_name(c.variants[v].kind);
		for (int k = 0; k < c.nmodels; k++)
			if (config_model(&c, c.models[k].name) < 0)
				abort();   /* every model must be found by its name */
	}
	config_release(&c);   /* harmless after a failure (left zeroed) */
	free(text);
	return 0;
}

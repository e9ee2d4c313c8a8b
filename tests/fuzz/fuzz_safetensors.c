/*
 * fuzz_safetensors.c - st_parse() (common/safetensors.h) on arbitrary bytes:
 * the 8-byte header length, the JSON header (dtypes, shapes, data_offsets,
 * __metadata__) and the coverage/overlap checks; then st_find and
 * st_read_f32 on every tensor, as a checkpoint load does.
 */
#include <stdlib.h>

#include "fuzz_common.h"
#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct st_file st;
	if (st_parse(&st, data, size, "fuzz.safetensors") == 0) {
		for (int i = 0; i < st.ntensors; i++) {
			const struct st_tensor *t = &st.tensors[i];
			if (st_find(&st, t->name) == NULL)
				abort();   /* a listed tensor must be found by name */
			size_t n = 1;
			for (int d = 0; d < t->ndim; d++)
				n *= (size_t)t->shape[d];
			if (n <= (1u << 20)) {
				float *out = malloc((n ? n : 1) * sizeof *out);
				if (out) {
					(void)st_read_f32(&st, t->name, out, n);
					free(out);
				}
			}
		}
	}
	st_release(&st);   /* harmless on failure (st_parse leaves it empty) */
	return 0;
}

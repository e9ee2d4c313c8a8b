/*
 * fuzz_manifest.c - manifest_parse() (common/manifest.h) on arbitrary bytes:
 * the RFC 4180 reader, header checks, id table and per-row reports. The
 * reports are capped as in production (manifest_max_reports), so the
 * formatting of "file:line: reason" lines is exercised too.
 */
#include <string.h>

#include "fuzz_common.h"
#include "manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct manifest m;
	if (manifest_parse(&m, (const char *)data, size, "/tmp/fuzz/manifest.csv") == 0) {
		/* touch what a caller reads */
		for (int r = 0; r < m.nrows; r++)
			for (int k = 0; k < m.ncols; k++)
				(void)strlen(m.rows[r].cells[k]);
		(void)manifest_col(&m, "id");
		manifest_release(&m);
	}
	return 0;
}

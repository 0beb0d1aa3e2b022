/*
 * fuzz_manifest.c - the strict manifest parser on arbitrary bytes.  Whatever
 * it accepts must re-serialize to exactly the input (canonical form), and
 * signature checking of it must not crash.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nexus/manifest.h"
#include "nexus/sign.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum nx_sig_status st;
	char id[NX_KEY_ID_LEN + 1];
	nx_manifest *m = NULL;
	char *out = NULL;
	size_t len = 0, i;
	int rc;

	if (nx_manifest_parse(&m, (const char *)data, size, "fuzz", NULL) != 0)
		return 0;
	rc = nx_manifest_serialize(&out, &len, m, NULL);
	/* running out of memory is the one excuse for not writing it back */
	if ((rc != 0 && rc != NX_ENOMEM) || (rc == 0 && (len != size || memcmp(out, data, size))))
		abort();
	free(out);
	for (i = 0; i < m->nfiles; i++)
		if (nx_manifest_find(m, m->files[i].path) != &m->files[i])
			abort();
	nx_manifest_verify_signature(&st, id, m, NULL, 0, NULL);
	nx_manifest_free(m);
	return 0;
}

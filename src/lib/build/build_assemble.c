/*
 * build_assemble.c - the assemble step: tokenizer files, runtime settings,
 * README/LICENSE and the runtime (bin/nexus_cli + lib/) into the SPEC §1
 * layout.  Only the inputs opened by the load step are written, so nothing
 * unnamed (a teacher checkpoint beside the tokenizer, say) can slip in.
 */
#include "build_int.h"

#include <string.h>

int nx_build__assemble(struct build *b)
{
	size_t i;
	int rc = 0;

	for (i = 0; i < b->nin && !rc; i++) {
		struct build_input *in = &b->in[i];

		switch (in->kind) {
		case BUILD_COPY:
			rc = nx_build__copy(b, in->dst, in->fd, (uint64_t)in->st.st_size, in->src, in->exec);
			break;
		case BUILD_RUNTIME: {
			/* A bundle must not ship settings its runtime would reject;
			 * its python_packages go into the manifest's policy. */
			nx_runtime_config_free(b->rtcfg);
			b->rtcfg = NULL;
			rc = nx_runtime_config_parse(&b->rtcfg, in->buf, in->len, in->src, b->err);
			if (!rc)
				rc = nx_build__put(b, in->dst, in->buf, in->len, false);
			break;
		}
		case BUILD_TEXT:
			if (strncmp(in->dst, "src/", 4) != 0) /* sources went through filter */
				rc = nx_build__put(b, in->dst, in->buf, in->len, false);
			break;
		case BUILD_PYTHON:
			break;
		}
	}
	/* Last: it runs the staged runtime on the staged model and tokenizer. */
	if (!rc)
		rc = nx_build__selftest(b);
	return rc;
}

/* fuzz_onnx.c - libFuzzer target: nx_onnx_open, nx_onnx_visit_strings and
 * nx_onnx_canon_check on arbitrary bytes, through a memfd as the real
 * callers use a file. */
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "nexus/onnx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int visit(void *ctx, enum nx_onnx_str_kind kind, const char *s, size_t len,
		 uint64_t offset, const char *scope)
{
	size_t *total = ctx;

	/* touch every byte handed out so the sanitizers check the bounds */
	*total += len + strlen(scope) + (len ? (unsigned char)s[len - 1] : 0) + (size_t)kind;
	(void)offset;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	nx_onnx_model *m = NULL;
	nx_error err;
	size_t total = 0, i;
	int fd = memfd_create("fuzz_onnx", MFD_CLOEXEC);

	if (fd < 0)
		return 0;
	if (size && write(fd, data, size) != (ssize_t)size)
		goto out;
	if (nx_onnx_open(&m, fd, "fuzz.onnx", &err) == 0) {
		const nx_onnx_summary *s = nx_onnx_summary_get(m);

		for (i = 0; i < s->ntensors; i++)
			total += strlen(s->tensors[i].name) + strlen(s->tensors[i].scope);
		for (i = 0; i < s->ninputs; i++)
			total += strlen(s->inputs[i].name) + s->inputs[i].ndims;
		nx_onnx_free(m);
	}
	nx_onnx_visit_strings(fd, "fuzz.onnx", visit, &total, &err);
	{
		struct nx_onnx_canon c;

		if (nx_onnx_canon_check(&c, fd, "fuzz.onnx", &err) == 0)
			total += c.canonical + strlen(c.what) + (size_t)c.list_bytes;
	}
out:
	close(fd);
	return 0;
}

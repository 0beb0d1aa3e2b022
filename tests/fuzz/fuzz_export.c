/*
 * fuzz_export.c - the exporter's round trip on arbitrary bytes: export to a
 * memfd, re-open the result as a model, and require that every string in
 * the output occurs in the input (the exporter removes and copies; apart
 * from its own producer fields it never invents text), and that the
 * exported model exports again to the same bytes (the output is canonical).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nexus/export.h"
#include "nexus/onnx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct src {
	const uint8_t *data;
	size_t size;
};

static int in_source(void *ctx, enum nx_onnx_str_kind kind, const char *s, size_t len,
		     uint64_t offset, const char *scope)
{
	const struct src *src = ctx;

	(void)offset;
	(void)scope;
	if (kind == NX_ONNX_PRODUCER || !len)
		return 0;
	if (!memmem(src->data, src->size, s, len))
		abort();
	return 0;
}

static int export_fd(int src_fd, int *out_fd, struct nx_export_result *r)
{
	struct nx_export_opts o = { .ws_dirfd = -1, .external = NX_EXPORT_EXT_NEVER };
	nx_error err = {0};
	int fd = memfd_create("fuzz_export_out", MFD_CLOEXEC), rc;

	if (fd < 0)
		return -1;
	rc = nx_export_run(r, src_fd, "fuzz.onnx", fd, &o, &err);
	if (rc != 0) {
		if (err.code != rc || !err.message[0])
			abort();
		close(fd);
		return rc;
	}
	*out_fd = fd;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct nx_export_result r1 = {0}, r2 = {0};
	struct src src = { data, size };
	nx_error err;
	int in = memfd_create("fuzz_export_in", MFD_CLOEXEC), out = -1, again = -1, rc;

	if (in < 0)
		return 0;
	if (size && write(in, data, size) != (ssize_t)size)
		goto done;
	if (export_fd(in, &out, &r1) != 0)
		goto done;
	/* the output reads back, and a second export of it gives the same
	 * bytes; running out of memory is the one excuse */
	rc = nx_onnx_visit_strings(out, "exported.onnx", in_source, &src, &err);
	if (rc == 0)
		rc = export_fd(out, &again, &r2);
	if (rc != 0 && rc != NX_ENOMEM)
		abort();
	if (rc == 0 && (r2.size != r1.size || memcmp(r2.sha256, r1.sha256, sizeof(r1.sha256))))
		abort();
done:
	nx_export_result_release(&r1);
	nx_export_result_release(&r2);
	if (again >= 0)
		close(again);
	if (out >= 0)
		close(out);
	close(in);
	return 0;
}

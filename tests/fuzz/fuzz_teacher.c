/*
 * fuzz_teacher.c - the teacher-file readers of `--teacher` (the PyTorch zip
 * reader, safetensors, pickle, ONNX) on arbitrary bytes, through
 * nx_fingerprint_file as verify calls it.  The reader opens a path with
 * O_NOFOLLOW, so the bytes go to one temporary file per process (a memfd's
 * /proc path is a link), rewritten for each input.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "nexus/fingerprint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[4096];

static void remove_file(void)
{
	if (path[0])
		unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int fd = -1;
	nx_fp_set *set = NULL;
	nx_error err;

	if (fd < 0) {
		const char *dir = getenv("TMPDIR");

		snprintf(path, sizeof(path), "%s/fuzz_teacher.XXXXXX", dir && *dir ? dir : "/tmp");
		if ((fd = mkstemp(path)) < 0)
			abort();
		atexit(remove_file);
	}
	if (ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size))
		abort();
	if (nx_fp_set_new(&set, &err) != 0)
		return 0;
	/* a small minimum so that even tiny inputs reach the tensor readers */
	nx_fingerprint_file(set, AT_FDCWD, path, 16, &err);
	nx_fp_set_free(set);
	return 0;
}

/*
 * fuzz_magic.c - the magic sniffer and the whole-content text scan that
 * verify runs on every bundle file, on arbitrary bytes: the same kind from
 * the buffer and from the file, no read outside either.
 */
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "nexus/magic.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct nx_magic_result r;
	enum nx_magic_kind k = nx_magic_sniff(data, size);
	nx_error err;
	int fd = memfd_create("fuzz_magic", MFD_CLOEXEC);

	if (!nx_magic_name(k))
		abort();
	if (fd < 0)
		return 0;
	if (size && write(fd, data, size) != (ssize_t)size)
		goto out;
	if (nx_magic_scan_fd(&r, fd, size, "fuzz.bin", &err) == 0 && r.head != k)
		abort();
out:
	close(fd);
	return 0;
}

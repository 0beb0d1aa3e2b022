/*
 * fuzz_elf.c - nx_elf_read (the runtime closure's ELF reader) on arbitrary
 * bytes: it succeeds with a complete result or fails with an error that
 * says what failed; it never reads outside the file or leaks.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "nexus/elf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct nx_elf_info info;
	nx_error err = {0};
	size_t i, total = 0;
	int rc, fd = memfd_create("fuzz_elf", MFD_CLOEXEC);

	if (fd < 0)
		return 0;
	if (size && write(fd, data, size) != (ssize_t)size)
		goto out;
	rc = nx_elf_read(&info, fd, "fuzz.so", &err);
	if (rc != 0) {
		if (err.code != rc || !err.message[0])
			abort();
		goto out;
	}
	/* touch every string handed out so the sanitizers check them */
	for (i = 0; i < info.nneeded; i++)
		total += strlen(info.needed[i]);
	total += info.interp ? strlen(info.interp) : 0;
	total += info.runpath ? strlen(info.runpath) : 0;
	nx_elf_info_release(&info);
	(void)total;
out:
	close(fd);
	return 0;
}

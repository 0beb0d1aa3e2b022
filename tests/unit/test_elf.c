/* test_elf.c - nexus/elf.h on real system binaries and on hostile bytes. */
#include <elf.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "nexus/elf.h"

static bool has(char **v, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(v[i], s))
			return true;
	return false;
}

static void python_closure_has_libc_and_loader(void **state)
{
	const char *bins[] = { "/usr/bin/python3" };
	char **v = NULL;
	size_t n = 0;

	assert_int_equal(nx_elf_closure(&v, &n, bins, 1, NULL, NULL), 0);
	assert_true(has(v, n, "/lib64/ld-linux-x86-64.so.2"));
	assert_true(has(v, n, "/lib/x86_64-linux-gnu/libc.so.6"));
	assert_false(has(v, n, "/usr/bin/python3"));
	for (size_t i = 0; i < n; i++)    /* deduplicated */
		for (size_t j = i + 1; j < n; j++)
			assert_string_not_equal(v[i], v[j]);
	nx_elf_closure_free(v, n);
}

static void read_reports_interp_and_needed(void **state)
{
	struct nx_elf_info info;
	int fd = open("/usr/bin/true", O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(nx_elf_read(&info, fd, "/usr/bin/true", NULL), 0);
	assert_string_equal(info.interp, "/lib64/ld-linux-x86-64.so.2");
	assert_true(info.nneeded >= 1);
	assert_int_equal(info.machine, EM_X86_64);
	nx_elf_info_release(&info);
	close(fd);
}

static int tmpfile_with(const void *buf, size_t len)
{
	char name[] = "/tmp/nx-elf-XXXXXX";
	int fd = mkstemp(name);

	assert_true(fd >= 0);
	unlink(name);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	return fd;
}

/* Every truncation and byte flip of a real header is an error or a
 * result, never a crash (run under ASan by make asan). */
static void hostile_headers_never_crash(void **state)
{
	unsigned char buf[8192];
	int src = open("/usr/bin/true", O_RDONLY | O_CLOEXEC);
	ssize_t n = read(src, buf, sizeof(buf));

	close(src);
	assert_true(n > 1024);
	for (size_t cut = 0; cut < 1024; cut += 7) {
		struct nx_elf_info info;
		nx_error err;
		int fd = tmpfile_with(buf, cut);

		if (nx_elf_read(&info, fd, "cut", &err) == 0)
			nx_elf_info_release(&info);
		close(fd);
	}
	for (size_t i = 0; i < 1024; i++) {
		unsigned char m[8192];
		struct nx_elf_info info;
		int fd;

		memcpy(m, buf, (size_t)n);
		m[i] ^= 0xff;
		fd = tmpfile_with(m, (size_t)n);
		if (nx_elf_read(&info, fd, "flip", NULL) == 0)
			nx_elf_info_release(&info);
		close(fd);
	}
}

static void huge_phnum_is_limit(void **state)
{
	Elf64_Ehdr eh = {0};
	struct nx_elf_info info;
	nx_error err;
	int fd;

	memcpy(eh.e_ident, ELFMAG, SELFMAG);
	eh.e_ident[EI_CLASS] = ELFCLASS64;
	eh.e_ident[EI_DATA] = ELFDATA2LSB;
	eh.e_phentsize = sizeof(Elf64_Phdr);
	eh.e_phnum = 60000;
	eh.e_phoff = sizeof(eh);
	fd = tmpfile_with(&eh, sizeof(eh));
	assert_int_equal(nx_elf_read(&info, fd, "big", &err), NX_ELIMIT);
	close(fd);
	eh.e_phnum = 3;   /* headers past the end of the file */
	fd = tmpfile_with(&eh, sizeof(eh));
	assert_int_equal(nx_elf_read(&info, fd, "short", &err), NX_EFORMAT);
	close(fd);
}

static void not_elf_is_format(void **state)
{
	int fd = tmpfile_with("#!/bin/sh\necho hi\n" "0123456789012345678901234567890123456789012345678", 67);
	struct nx_elf_info info;

	assert_int_equal(nx_elf_read(&info, fd, "script", NULL), NX_EFORMAT);
	close(fd);
}

static void internal_root_is_not_listed(void **state)
{
	const char *bins[] = { "/usr/bin/true" };
	char **v = NULL;
	size_t n = 0;

	/* Everything under /usr is "inside", so nothing is listed but what
	 * lies outside it (nothing, as /lib and /lib64 resolve into /usr). */
	assert_int_equal(nx_elf_closure(&v, &n, bins, 1, "/usr", NULL), 0);
	for (size_t i = 0; i < n; i++)
		assert_false(strncmp(v[i], "/usr/", 5) == 0);
	nx_elf_closure_free(v, n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(python_closure_has_libc_and_loader),
		cmocka_unit_test(read_reports_interp_and_needed),
		cmocka_unit_test(hostile_headers_never_crash),
		cmocka_unit_test(huge_phnum_is_limit),
		cmocka_unit_test(not_elf_is_format),
		cmocka_unit_test(internal_root_is_not_listed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}

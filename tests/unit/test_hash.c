/* test_hash.c - SHA-256 helpers and copy-while-hashing against known digests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nexus/hash.h"
#include "../../src/lib/format/hash_int.h"

#define ABC_HEX "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define EMPTY_HEX "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static int tmpfile_with(const void *data, size_t len)
{
	char name[] = "/tmp/nx_hash_XXXXXX";
	int fd = mkstemp(name);

	assert_true(fd >= 0);
	unlink(name);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	return fd;
}

static void buf_known_vectors(void **state)
{
	unsigned char md[NX_SHA256_LEN];
	char hex[65];

	assert_int_equal(nx_sha256_buf(md, "abc", 3), 0);
	nx_hex(hex, md);
	assert_string_equal(hex, ABC_HEX);
	assert_int_equal(nx_sha256_buf(md, "", 0), 0);
	nx_hex(hex, md);
	assert_string_equal(hex, EMPTY_HEX);
}

static void unhex_strict(void **state)
{
	unsigned char md[NX_SHA256_LEN], back[NX_SHA256_LEN];
	char hex[65];

	assert_int_equal(nx_unhex(md, ABC_HEX), 0);
	nx_hex(hex, md);
	assert_string_equal(hex, ABC_HEX);
	memcpy(back, md, sizeof(md));
	/* Upper case, short, long, non-hex: all refused and out untouched. */
	assert_int_equal(nx_unhex(md, "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"),
			 NX_EFORMAT);
	assert_int_equal(nx_unhex(md, "ba7816"), NX_EFORMAT);
	assert_int_equal(nx_unhex(md, ABC_HEX "0"), NX_EFORMAT);
	assert_int_equal(nx_unhex(md, "ga7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"), NX_EFORMAT);
	assert_int_equal(nx_unhex(md, " " ABC_HEX), NX_EFORMAT);
	assert_int_equal(nx_unhex(md, ""), NX_EFORMAT);
	assert_memory_equal(md, back, sizeof(md));
}

static void fd_and_range(void **state)
{
	unsigned char md[NX_SHA256_LEN];
	char hex[65];
	nx_error err;
	int fd = tmpfile_with("xxabcyy", 7);

	assert_int_equal(nx_sha256_range(md, fd, 2, 3, "t", &err), 0);
	nx_hex(hex, md);
	assert_string_equal(hex, ABC_HEX);
	/* Only the announced size is read, never past it. */
	assert_int_equal(nx_sha256_fd(md, fd, 0, "t", &err), 0);
	nx_hex(hex, md);
	assert_string_equal(hex, EMPTY_HEX);
	close(fd);
}

static void short_file_is_error(void **state)
{
	unsigned char md[NX_SHA256_LEN];
	nx_error err;
	int fd = tmpfile_with("abc", 3);

	nx_error_clear(&err);
	assert_int_equal(nx_sha256_fd(md, fd, 4, "short.bin", &err), NX_EFORMAT);
	assert_string_equal(err.path, "short.bin");
	assert_int_equal(nx_sha256_range(md, fd, 2, 2, "short.bin", NULL), NX_EFORMAT);
	close(fd);
	assert_int_equal(nx_sha256_fd(md, -1, 1, "bad", &err), NX_EIO);
}

/* Sizes around the chunk and ring boundaries, inline and threaded. */
static void copy_hash_matches(void **state)
{
	static const size_t sizes[] = { 0, 1, 4096, 1u << 18, (1u << 19) + 1, (1u << 20) - 1, 1u << 20, (2u << 20) + 1,
					(9u << 20) + 12345 };
	size_t i, j;

	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t n = sizes[i];
		unsigned char *data = malloc(n + 1), *back = malloc(n + 1);
		unsigned char a[NX_SHA256_LEN], b[NX_SHA256_LEN];
		nx_error err;
		int src, dst;
		char name[] = "/tmp/nx_copy_XXXXXX";

		for (j = 0; j < n; j++)
			data[j] = (unsigned char)(j * 2654435761u >> 13);
		src = tmpfile_with(data, n);
		dst = mkstemp(name);
		assert_true(dst >= 0);
		unlink(name);
		assert_int_equal(nx_copy_hash(a, dst, src, n, "src", "dst", &err), 0);
		assert_int_equal(nx_sha256_buf(b, data, n), 0);
		assert_memory_equal(a, b, sizeof(a));
		assert_int_equal(pread(dst, back, n + 1, 0), (ssize_t)n);
		assert_memory_equal(back, data, n);
		close(src);
		close(dst);
		free(data);
		free(back);
	}
}

static void copy_hash_short_source(void **state)
{
	unsigned char md[NX_SHA256_LEN];
	size_t n = 5u << 20;
	unsigned char *data = calloc(1, n);
	char name[] = "/tmp/nx_copy_XXXXXX";
	nx_error err;
	int src = tmpfile_with(data, n), dst = mkstemp(name);

	unlink(name);
	assert_int_equal(nx_copy_hash(md, dst, src, n + 1, "src", "dst", &err), NX_EFORMAT);
	assert_int_equal(nx_copy_hash(md, dst, src, 100, "src", "dst", &err), 0);
	assert_int_equal(nx_copy_hash(md, -1, src, n, "src", "out/dst", &err), NX_EIO);
	assert_string_equal(err.path, "out/dst");  /* the write failed: name the output */
	assert_int_equal(nx_copy_hash(md, -1, src, 100, "src", "out/small", &err), NX_EIO);
	assert_string_equal(err.path, "out/small");
	close(src);
	close(dst);
	free(data);
}

/* copy_range_plain, in place (copy_file_range) and across filesystems
 * (/dev/shm -> /tmp: the kernel refuses, the pread/pwrite fallback runs),
 * at an offset on both sides, and from a source that is too short. */
static void copy_plain(void **state)
{
	static const char *const dirs[] = { "/tmp", "/dev/shm" };
	size_t n = (3u << 20) + 777, j, d;
	unsigned char *data = malloc(n), *back = malloc(n + 10);

	(void)state;
	for (j = 0; j < n; j++)
		data[j] = (unsigned char)(j * 2654435761u >> 11);
	for (d = 0; d < 2; d++) {
		char sname[64], dname[] = "/tmp/nx_plain_XXXXXX";
		nx_error err;
		int src, dst;

		snprintf(sname, sizeof(sname), "%s/nx_plain_src_XXXXXX", dirs[d]);
		src = mkstemp(sname);
		if (src < 0 && d == 1)
			skip();   /* no /dev/shm here */
		assert_true(src >= 0);
		unlink(sname);
		assert_int_equal(write(src, data, n), (ssize_t)n);
		dst = mkstemp(dname);
		assert_true(dst >= 0);
		unlink(dname);
		assert_int_equal(copy_range_plain(dst, 10, src, 5, n - 5, "src", "dst", &err), 0);
		assert_int_equal(pread(dst, back, n + 10, 0), (ssize_t)(n + 5));
		assert_memory_equal(back + 10, data + 5, n - 5);
		assert_int_equal(copy_range_plain(dst, 0, src, 100, n, "src", "dst", &err),
				 NX_EFORMAT);
		close(src);
		close(dst);
	}
	free(data);
	free(back);
}

/* nx_hash_follow: the digest of a file written in uneven steps equals the
 * digest of its bytes; a file shorter than announced, and an fd that cannot
 * be read, are errors; cancel stops a thread still waiting. */
static void follow_matches_writes(void **state)
{
	size_t n = (5u << 20) + 12345, at = 0, step = 1;
	unsigned char *data = malloc(n), a[NX_SHA256_LEN], b[NX_SHA256_LEN];
	char name[] = "/tmp/nx_follow_XXXXXX";
	nx_hash_follow *h;
	nx_error err;
	size_t j;
	int fd, wo;

	(void)state;
	for (j = 0; j < n; j++)
		data[j] = (unsigned char)(j * 2654435761u >> 9);
	fd = mkstemp(name);
	assert_true(fd >= 0);
	wo = open(name, O_WRONLY);
	assert_true(wo >= 0);
	unlink(name);
	assert_int_equal(nx_hash_follow_start(&h, fd, "f", &err), 0);
	while (at < n) {
		size_t k = n - at < step ? n - at : step;

		assert_int_equal(pwrite(fd, data + at, k, (off_t)at), (ssize_t)k);
		at += k;
		nx_hash_follow_advance(h, at);
		step = step * 3 + 7;
	}
	assert_int_equal(nx_hash_follow_finish(h, n, a, &err), 0);
	assert_int_equal(nx_sha256_buf(b, data, n), 0);
	assert_memory_equal(a, b, sizeof(a));

	assert_int_equal(nx_hash_follow_start(&h, fd, "f", &err), 0);
	assert_int_equal(nx_hash_follow_finish(h, n + 1, a, &err), NX_EFORMAT);
	assert_int_equal(nx_hash_follow_start(&h, wo, "f", &err), 0);
	assert_int_equal(nx_hash_follow_finish(h, n, a, &err), NX_EIO);
	assert_int_equal(nx_hash_follow_start(&h, fd, "f", &err), 0);
	nx_hash_follow_advance(h, 100);
	nx_hash_follow_cancel(h);
	nx_hash_follow_cancel(NULL);
	close(fd);
	close(wo);
	free(data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(buf_known_vectors),
		cmocka_unit_test(unhex_strict),
		cmocka_unit_test(fd_and_range),
		cmocka_unit_test(short_file_is_error),
		cmocka_unit_test(copy_hash_matches),
		cmocka_unit_test(copy_hash_short_source),
		cmocka_unit_test(copy_plain),
		cmocka_unit_test(follow_matches_writes),
	};
	return cmocka_run_group_tests_name("hash", tests, NULL, NULL);
}

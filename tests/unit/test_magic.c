/* test_magic.c - content sniffing by magic bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nexus/magic.h"

static enum nx_magic_kind sniff(const void *b, size_t n)
{
	return nx_magic_sniff(b, n);
}

static void heads_are_recognised(void **state)
{
	unsigned char tar[512] = {0};
	unsigned char st[16] = {0x10, 0, 0, 0, 0, 0, 0, 0, '{', '"', '_', '_'};
	unsigned char pyc[16] = {0xa7, 0x0d, '\r', '\n'};
	unsigned char onnx[] = {0x08, 0x07, 0x12, 0x07, 'p', 'y', 't', 'o', 'r', 'c', 'h'};
	static const char torch_zip[] = "PK\x03\x04\x00\x00\x08\x00\x00\x00\x00\x00archive/data.pklPK";

	memcpy(tar + 257, "ustar", 5);
	assert_int_equal(sniff(tar, sizeof(tar)), NX_MAGIC_TAR);
	assert_int_equal(sniff(st, sizeof(st)), NX_MAGIC_SAFETENSORS);
	assert_int_equal(sniff(pyc, sizeof(pyc)), NX_MAGIC_PYC);
	assert_int_equal(sniff(onnx, sizeof(onnx)), NX_MAGIC_ONNX);
	assert_int_equal(sniff(torch_zip, sizeof(torch_zip) - 1), NX_MAGIC_PYTORCH_ZIP);
	assert_int_equal(sniff("PK\x03\x04plain.txt", 13), NX_MAGIC_ZIP);
	assert_int_equal(sniff("\x93NUMPY\x01\x00", 8), NX_MAGIC_NUMPY);
	assert_int_equal(sniff("\x89HDF\r\n\x1a\n", 8), NX_MAGIC_HDF5);
	assert_int_equal(sniff("GGUF\x03\x00\x00\x00", 8), NX_MAGIC_GGUF);
	assert_int_equal(sniff("\x1f\x8b\x08\x00", 4), NX_MAGIC_GZIP);
	assert_int_equal(sniff("\x28\xb5\x2f\xfd\x00", 5), NX_MAGIC_ZSTD);
	assert_int_equal(sniff("\xfd" "7zXZ\x00\x00", 7), NX_MAGIC_XZ);
	assert_int_equal(sniff("BZh91AY&SY", 10), NX_MAGIC_BZIP2);
	assert_int_equal(sniff("\x7f" "ELF\x02\x01", 6), NX_MAGIC_ELF);
}

static void pickle_protocols(void **state)
{
	assert_int_equal(sniff("\x80\x02}q\x00.", 6), NX_MAGIC_PICKLE);
	assert_int_equal(sniff("\x80\x05\x95\x10", 4), NX_MAGIC_PICKLE);
	assert_int_equal(sniff("(dp0\nS'a'\n", 10), NX_MAGIC_PICKLE);
	assert_int_equal(sniff("ccollections\nOrderedDict\n", 25), NX_MAGIC_PICKLE);
	assert_int_equal(sniff("}q\x00(X\x01\x00\x00\x00a", 10), NX_MAGIC_PICKLE);
	assert_int_equal(sniff("\x80\x01", 2), NX_MAGIC_NONE);
}

static void text_is_not_weights(void **state)
{
	static const char *const texts[] = {
		"# Quickstart\n", "import numpy\n", "task: classification\n", "{\"version\": \"1.0\"}",
		"[PAD]\n[UNK]\n", "MIT License\n", "",
	};
	size_t i;

	for (i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
		assert_int_equal(sniff(texts[i], strlen(texts[i])), NX_MAGIC_NONE);
	assert_false(nx_magic_is_weights(NX_MAGIC_ZIP));
	assert_true(nx_magic_is_archive(NX_MAGIC_ZIP));
	assert_true(nx_magic_is_weights(NX_MAGIC_SAFETENSORS));
	assert_string_equal(nx_magic_name(NX_MAGIC_PYTORCH_ZIP), "pytorch-zip");
	assert_string_equal(nx_magic_name(NX_MAGIC_COUNT), "none");
}

static struct nx_text_scan scan_chunked(const unsigned char *b, size_t n, size_t chunk)
{
	struct nx_text_scan s;
	size_t off;

	nx_text_scan_init(&s);
	for (off = 0; off < n; off += chunk)
		nx_text_scan_feed(&s, b + off, n - off < chunk ? n - off : chunk);
	nx_text_scan_finish(&s);
	return s;
}

static void clean_utf8_text_passes(void **state)
{
	const char *t = "caf\xc3\xa9 \xe2\x82\xac ok\n\tline two\r\n";
	struct nx_text_scan s = scan_chunked((const unsigned char *)t, strlen(t), 1);

	assert_int_equal(s.binary_at, -1);
	assert_int_equal(s.embedded_at, -1);
	assert_int_equal(s.base64_at, -1);
}

static void binary_regions_found(void **state)
{
	struct nx_text_scan s;

	s = scan_chunked((const unsigned char *)"abc\0def", 7, 3);
	assert_int_equal(s.binary_at, 3);
	s = scan_chunked((const unsigned char *)"ab\xff", 3, 2);
	assert_int_equal(s.binary_at, 2);
	s = scan_chunked((const unsigned char *)"ab\xc3", 3, 64);   /* truncated sequence */
	assert_int_equal(s.binary_at, 3);
	s = scan_chunked((const unsigned char *)"ab\xc0\x80", 4, 64);  /* overlong NUL */
	assert_int_equal(s.binary_at, 2);
}

/* A magic split across any chunk boundary is still found, at its offset. */
static void embedded_magic_across_chunks(void **state)
{
	unsigned char buf[64];
	size_t chunk;

	memset(buf, 'x', sizeof(buf));
	memcpy(buf + 30, "\x93NUMPY", 6);
	for (chunk = 1; chunk <= sizeof(buf); chunk++) {
		struct nx_text_scan s = scan_chunked(buf, sizeof(buf), chunk);

		assert_int_equal(s.embedded_at, 30);
		assert_int_equal(s.embedded, NX_MAGIC_NUMPY);
	}
	memcpy(buf, "PK\x03\x04", 4);   /* offset 0 is the head, not embedded */
	memset(buf + 30, 'x', 6);
	assert_int_equal(scan_chunked(buf, sizeof(buf), 7).embedded_at, -1);
}

static void base64_runs(void **state)
{
	size_t n = NX_MAGIC_BASE64_RUN_MAX + 100, i;
	unsigned char *b = malloc(n);
	struct nx_text_scan s;

	assert_non_null(b);
	for (i = 0; i < n; i++)
		b[i] = "QUJD+/=="[i % 8];
	b[10] = ' ';
	s = scan_chunked(b, n, 1000);
	assert_int_equal(s.base64_at, 11);
	/* the same run broken by whitespace every 76 bytes is ordinary text */
	for (i = 0; i < n; i += 76)
		b[i] = '\n';
	s = scan_chunked(b, n, 1000);
	assert_int_equal(s.base64_at, -1);
	assert_true(s.base64_longest < 76);
	free(b);
}

static void scan_fd_reads_exactly_size(void **state)
{
	char tmpl[] = "/tmp/nx_magic_XXXXXX";
	int fd = mkstemp(tmpl);
	struct nx_magic_result r;
	nx_error e;

	assert_true(fd >= 0);
	unlink(tmpl);
	assert_int_equal(write(fd, "hello\n\x93NUMPY", 12), 12);
	assert_int_equal(nx_magic_scan_fd(&r, fd, 6, "t", &e), 0);
	assert_int_equal(r.head, NX_MAGIC_NONE);
	assert_int_equal(r.text.embedded_at, -1);
	assert_int_equal(nx_magic_scan_fd(&r, fd, 12, "t", &e), 0);
	assert_int_equal(r.text.embedded_at, 6);
	assert_int_equal(r.text.binary_at, 6);
	assert_int_equal(nx_magic_scan_fd(&r, fd, 13, "t", &e), NX_EIO);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(heads_are_recognised),
		cmocka_unit_test(pickle_protocols),
		cmocka_unit_test(text_is_not_weights),
		cmocka_unit_test(clean_utf8_text_passes),
		cmocka_unit_test(binary_regions_found),
		cmocka_unit_test(embedded_magic_across_chunks),
		cmocka_unit_test(base64_runs),
		cmocka_unit_test(scan_fd_reads_exactly_size),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_oci.c - references, layer media types, the artifact vector of
 * docs/FORMAT.md §8.3 and pull's blob sink (the network parts are tested
 * end to end). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "nexus/oci.h"
#include "../../src/lib/oci/oci_int.h"

#include "format_vector.h"

static void sha_hex(char out[2 * NX_SHA256_LEN + 1], const char *buf, size_t len)
{
	unsigned char d[NX_SHA256_LEN];

	assert_int_equal(nx_sha256_buf(d, buf, len), 0);
	nx_hex(out, d);
}

static void artifact_vector(void **state)
{
	char *man = NULL, *cfg = NULL, hex[2 * NX_SHA256_LEN + 1];
	size_t mlen, clen, i;
	nx_manifest *m = NULL;

	(void)state;
	assert_int_equal(nx_manifest_parse(&m, VECTOR, strlen(VECTOR), "v", NULL), 0);
	for (i = 0; i < 2; i++) {   /* the same input, the same bytes */
		assert_int_equal(nx_oci_artifact(&man, &mlen, &cfg, &clen, m, VECTOR,
						 strlen(VECTOR), NULL), 0);
		assert_int_equal(clen, 438);
		sha_hex(hex, cfg, clen);
		assert_string_equal(hex, "389339d23d098c2a9d50e22001971dffdcd27deea9cbd07e413a8c91e55e7349");
		assert_int_equal(mlen, 1169);
		sha_hex(hex, man, mlen);
		assert_string_equal(hex, "fc3e2deab6ad5cf682264d20cdec506a05d4e2c5f57682d25382ea2650b2e62f");
		free(man);
		free(cfg);
	}
	nx_manifest_free(m);
}

static void layer_media(void **state)
{
	(void)state;
	assert_string_equal(nx_oci_layer_media("model/student_model.onnx"),
			    "application/vnd.cncf.model.weight.v1.raw");
	assert_string_equal(nx_oci_layer_media("model/student_model.onnx.data"),
			    "application/vnd.cncf.model.weight.v1.raw");
	assert_string_equal(nx_oci_layer_media("model/tokenizer/vocab.txt"),
			    "application/vnd.cncf.model.weight.config.v1.raw");
	assert_string_equal(nx_oci_layer_media("config/runtime.yaml"),
			    "application/vnd.cncf.model.weight.config.v1.raw");
	assert_string_equal(nx_oci_layer_media("README.md"), "application/vnd.cncf.model.doc.v1.raw");
	assert_string_equal(nx_oci_layer_media("LICENSE"), "application/vnd.cncf.model.doc.v1.raw");
	assert_string_equal(nx_oci_layer_media("README.md.bak"), "application/vnd.cncf.model.code.v1.raw");
	assert_string_equal(nx_oci_layer_media("bin/nexus_cli"), "application/vnd.cncf.model.code.v1.raw");
	assert_string_equal(nx_oci_layer_media("src/inference.py"),
			    "application/vnd.cncf.model.code.v1.raw");
}

static void refs(void **state)
{
	static const struct {
		const char *in, *registry, *repo, *tag, *digest;
	} good[] = {
		{"localhost:5000/a", "localhost:5000", "a", "latest", NULL},
		{"localhost/a/b-c.d_e:v1.0", "localhost", "a/b-c.d_e", "v1.0", NULL},
		{"ghcr.io/org/model@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		 "ghcr.io", "org/model", NULL,
		 "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"127.0.0.1:5000/m:t@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		 "127.0.0.1:5000", "m", "t",
		 "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
	};
	static const char *const bad[] = {
		"", "a", "model/x", "localhost:5000/", "localhost:5000/A", "h.io/a//b", "h.io/a/",
		"h.io/-a", "h.io/a:", "h.io/a:-x", "h.io/a@sha256:E3B0", "h.io/a@md5:00",
		"h.io/a b", "h.io/a:t@", "user@h.io/a",
	};
	nx_oci_ref *r;
	nx_error err;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		assert_int_equal(nx_oci_ref_parse(&r, good[i].in, &err), 0);
		assert_string_equal(r->registry, good[i].registry);
		assert_string_equal(r->repository, good[i].repo);
		if (good[i].tag)
			assert_string_equal(r->tag, good[i].tag);
		else
			assert_null(r->tag);
		if (good[i].digest)
			assert_string_equal(r->digest, good[i].digest);
		else
			assert_null(r->digest);
		nx_oci_ref_free(r);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = NULL;
		if (nx_oci_ref_parse(&r, bad[i], &err) != NX_EUSAGE)
			fail_msg("reference '%s' was accepted", bad[i]);
		assert_null(r);
	}
}

/* A temporary file opened with flags (O_RDWR for a working sink). */
static int temp_file(char path[64], int flags)
{
	int fd;

	snprintf(path, 64, "/tmp/nx_test_sink_XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	fd = open(path, flags);
	assert_true(fd >= 0);
	return fd;
}

static char *pattern(size_t n, unsigned seed)
{
	char *b = malloc(n ? n : 1);
	size_t i;

	assert_non_null(b);
	for (i = 0; i < n; i++)
		b[i] = (char)((i * 2654435761u + seed) >> 13);
	return b;
}

/* libcurl's 16 KiB pieces (and odd ones) gathered into larger writes: the
 * file holds the bytes and the SHA-256 is theirs, for blobs hashed inline
 * (under 8 MiB) and read back by the second thread, across a restart. */
static void sink_gathers_pieces(void **state)
{
	static const size_t sizes[] = { 0, 1, 16384, (1u << 20) - 1, 1u << 20, (1u << 20) + 7,
					3000000, (9u << 20) + 12345 };
	static const size_t pieces[] = { 16384, 7, 5u << 20 };
	char path[64], want[2 * NX_SHA256_LEN + 1], got[2 * NX_SHA256_LEN + 1];
	unsigned char sha[NX_SHA256_LEN];
	struct oci_sink s;
	struct stat st;
	nx_error err;
	size_t i, j, at, k;
	int fd;

	(void)state;
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		char *data = pattern(sizes[i], (unsigned)i), *back;

		sha_hex(want, data, sizes[i]);
		for (j = 0; j < sizeof(pieces) / sizeof(pieces[0]); j++) {
			fd = temp_file(path, O_RDWR);
			assert_int_equal(nx_oci__sink_init(&s, fd, sizes[i], j == 0, NULL), 0);
			if (j == 1 && sizes[i] > 100) {
				/* other bytes first, then the server ignores Range */
				assert_int_equal(nx_oci__sink_write(&s, data + 1, 100), 0);
				assert_int_equal(nx_oci__sink_restart(&s), 0);
			}
			for (at = 0; at < sizes[i]; at += k) {
				k = sizes[i] - at < pieces[j] ? sizes[i] - at : pieces[j];
				assert_int_equal(nx_oci__sink_write(&s, data + at, k), 0);
			}
			assert_int_equal(s.written, sizes[i]);
			assert_int_equal(nx_oci__sink_final(&s, sha, "blob", &err), 0);
			nx_oci__sink_release(&s);
			nx_hex(got, sha);
			assert_string_equal(got, want);
			assert_int_equal(fstat(fd, &st), 0);
			assert_int_equal((size_t)st.st_size, sizes[i]);
			back = pattern(sizes[i], 0);
			assert_int_equal(pread(fd, back, sizes[i], 0), (ssize_t)sizes[i]);
			assert_memory_equal(back, data, sizes[i]);
			free(back);
			close(fd);
			unlink(path);
		}
		free(data);
	}
}

/* A staged file that cannot be read back or written says why (errno) and
 * what to do, naming the file. */
static void sink_errors_say_why(void **state)
{
	char path[64], *data = pattern(9u << 20, 1);
	unsigned char sha[NX_SHA256_LEN];
	struct oci_sink s;
	nx_error err;
	int fd;

	(void)state;
	/* read back (a blob over 8 MiB): the descriptor cannot read */
	fd = temp_file(path, O_WRONLY);
	assert_int_equal(nx_oci__sink_init(&s, fd, 9u << 20, false, NULL), 0);
	assert_int_equal(nx_oci__sink_write(&s, data, 9u << 20), 0);
	nx_error_clear(&err);
	assert_int_equal(nx_oci__sink_final(&s, sha, "model/m.onnx", &err), NX_EIO);
	nx_oci__sink_release(&s);
	assert_non_null(strstr(err.message, "model/m.onnx: cannot read the staged file back"));
	assert_non_null(strstr(err.message, strerror(EBADF)));
	assert_non_null(strstr(err.message, "pull again"));
	close(fd);
	unlink(path);
	/* write: what is gathered is written at the end */
	fd = temp_file(path, O_RDONLY);
	assert_int_equal(nx_oci__sink_init(&s, fd, 200, false, NULL), 0);
	assert_int_equal(nx_oci__sink_write(&s, data, 100), 0);
	nx_error_clear(&err);
	assert_int_equal(nx_oci__sink_final(&s, sha, "README.md", &err), NX_EIO);
	nx_oci__sink_release(&s);
	assert_non_null(strstr(err.message, "README.md: cannot write the staged file"));
	assert_non_null(strstr(err.message, strerror(EBADF)));
	/* write: a full buffer is written as it fills, and fails there */
	assert_int_equal(nx_oci__sink_init(&s, fd, 9u << 20, false, NULL), 0);
	assert_int_equal(nx_oci__sink_write(&s, data, 9u << 20), -1);
	assert_int_equal(s.werr, EBADF);
	nx_oci__sink_release(&s);
	close(fd);
	unlink(path);
	free(data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(artifact_vector),
		cmocka_unit_test(layer_media),
		cmocka_unit_test(refs),
		cmocka_unit_test(sink_gathers_pieces),
		cmocka_unit_test(sink_errors_say_why),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}

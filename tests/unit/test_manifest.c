/* test_manifest.c - canonical form (docs/FORMAT.md vector) and every rejection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nexus/manifest.h"

#include "format_vector.h"
#define VECTOR_SHA256 "e64f7f875aa9d749f7b53bbc97496efc006cd92bd8d6eae51cb0381769504f63"
#define SIGNED_SHA256 "b98dcbd28bf6fb50958c8caa6d9a086321326d633377c728f3bb83190e2a3a31"

static nx_manifest *make_vector(void)
{
	unsigned char md[NX_SHA256_LEN];
	nx_manifest *m;

	assert_int_equal(nx_manifest_new(&m, NULL), 0);
	assert_string_equal(m->schema_version, "1.0");
	assert_string_equal(m->signature, "");
	assert_int_equal(nx_manifest_set(m, &m->bundle_id, "nexus_bundle_v1", NULL), 0);
	assert_int_equal(nx_manifest_set(m, &m->build_timestamp, "2026-11-27T01:02:03Z", NULL), 0);
	assert_int_equal(nx_manifest_set(m, &m->architecture, "SpamStudent-2L", NULL), 0);
	assert_int_equal(nx_manifest_set(m, &m->parameters, "4.4M", NULL), 0);
	assert_int_equal(nx_manifest_set(m, &m->format, "ONNX", NULL), 0);
	assert_int_equal(nx_manifest_set(m, &m->quantization, "none", NULL), 0);
	m->teacher_free = m->training_code_excluded = true;
	nx_sha256_buf(md, "", 0);
	assert_int_equal(nx_manifest_add_file(m, "model/student_model.onnx", md, 0, NULL), 0);
	nx_sha256_buf(md, "abc", 3);
	assert_int_equal(nx_manifest_add_file(m, "README.md", md, 3, NULL), 0);
	return m;
}

/* The schema 1.1 vector of docs/FORMAT.md §5.4: policy and runtime added. */
static const char VECTOR_1_1[] =
	"{\n"
	"  \"build_timestamp\": \"2026-11-27T01:02:03Z\",\n"
	"  \"bundle_id\": \"nexus_bundle_v1\",\n"
	"  \"files\": [\n"
	"    {\n"
	"      \"path\": \"README.md\",\n"
	"      \"sha256\": \"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\",\n"
	"      \"size_bytes\": 3\n"
	"    },\n"
	"    {\n"
	"      \"path\": \"bin/nexus_cli\",\n"
	"      \"sha256\": \"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\",\n"
	"      \"size_bytes\": 0\n"
	"    },\n"
	"    {\n"
	"      \"path\": \"model/student_model.onnx\",\n"
	"      \"sha256\": \"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\",\n"
	"      \"size_bytes\": 0\n"
	"    }\n"
	"  ],\n"
	"  \"invariants\": {\n"
	"    \"teacher_free\": true,\n"
	"    \"training_code_excluded\": true\n"
	"  },\n"
	"  \"model_metadata\": {\n"
	"    \"architecture\": \"SpamStudent-2L\",\n"
	"    \"format\": \"ONNX\",\n"
	"    \"parameters\": \"4.4M\",\n"
	"    \"quantization\": \"none\"\n"
	"  },\n"
	"  \"policy\": {\n"
	"    \"allow_shared_tensors\": [\n"
	"      {\n"
	"        \"name\": \"embeddings.weight\",\n"
	"        \"reason\": \"frozen vocabulary table\"\n"
	"      }\n"
	"    ],\n"
	"    \"forbidden_imports\": [\n"
	"      \"teacher_model\",\n"
	"      \"training_modules\"\n"
	"    ],\n"
	"    \"forbidden_terms\": [\n"
	"      \"wandb\"\n"
	"    ],\n"
	"    \"max_leak_bytes\": 16384,\n"
	"    \"max_model_bytes\": 4194304,\n"
	"    \"nexus_version\": \"0.1.0\",\n"
	"    \"python_packages\": [\n"
	"      \"numpy\",\n"
	"      \"onnxruntime\"\n"
	"    ],\n"
	"    \"selftest_tolerance\": \"0.0001\",\n"
	"    \"size_slack\": \"0.05\",\n"
	"    \"teacher_files\": 1\n"
	"  },\n"
	"  \"runtime\": {\n"
	"    \"files\": [\n"
	"      {\n"
	"        \"path\": \"bin/nexus_cli\",\n"
	"        \"sha256\": \"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"\n"
	"      }\n"
	"    ],\n"
	"    \"version\": \"0.1.0\"\n"
	"  },\n"
	"  \"schema_version\": \"1.1\",\n"
	"  \"signature\": \"\"\n"
	"}\n";
#define VECTOR_1_1_SHA256 "e9984bab211f8ef63bb413093851253781cc8c47e46f4c35f58ea744e162b412"
#define SIGNED_1_1_SHA256 "4a3f114798dd919dc12c1f176d6bc33e731b632a370346050600ea4ac75f2ea2"

static char **strv(const char *a, const char *b)
{
	char **v = calloc(3, sizeof(*v));

	assert_non_null(v);
	v[0] = strdup(a);
	v[1] = b ? strdup(b) : NULL;
	return v;
}

/* The 1.0 vector's manifest plus an empty bin/nexus_cli, recorded 1.1. */
static nx_manifest *make_vector_1_1(void)
{
	unsigned char md[NX_SHA256_LEN];
	nx_manifest_policy *p = calloc(1, sizeof(*p));
	nx_manifest *m = make_vector();

	nx_sha256_buf(md, "", 0);
	assert_int_equal(nx_manifest_add_file(m, "bin/nexus_cli", md, 0, NULL), 0);
	assert_non_null(p);
	p->nexus_version = strdup("0.1.0");
	p->max_model_bytes = 4u << 20;
	p->max_leak_bytes = 16384;
	p->size_slack = 0.05;
	p->selftest_tolerance = 1e-4;
	p->teacher_files = 1;
	p->forbidden_terms = strv("wandb", NULL);
	p->nforbidden_terms = 1;
	p->forbidden_imports = strv("teacher_model", "training_modules");
	p->nforbidden_imports = 2;
	p->python_packages = strv("numpy", "onnxruntime");
	p->npython_packages = 2;
	p->allow_shared = calloc(1, sizeof(*p->allow_shared));
	assert_non_null(p->allow_shared);
	p->allow_shared[0].name = strdup("embeddings.weight");
	p->allow_shared[0].reason = strdup("frozen vocabulary table");
	p->nallow_shared = 1;
	assert_int_equal(nx_manifest_set_v11(m, p, "0.1.0", NULL), 0);
	assert_string_equal(m->schema_version, "1.1");
	return m;
}

static void vector_1_1(void **state)
{
	unsigned char md[NX_SHA256_LEN];
	char hex[2 * NX_SHA256_LEN + 1], *out = NULL;
	nx_manifest *m = make_vector_1_1(), *back = NULL;
	size_t len;

	(void)state;
	assert_int_equal(nx_manifest_serialize(&out, &len, m, NULL), 0);
	assert_string_equal(out, VECTOR_1_1);
	nx_sha256_buf(md, out, len);
	nx_hex(hex, md);
	assert_string_equal(hex, VECTOR_1_1_SHA256);
	free(out);
	assert_int_equal(nx_manifest_signed_bytes(&out, &len, m, NULL), 0);
	nx_sha256_buf(md, out, len);
	nx_hex(hex, md);
	assert_string_equal(hex, SIGNED_1_1_SHA256);
	free(out);
	/* parse: every field back */
	assert_int_equal(nx_manifest_parse(&back, VECTOR_1_1, strlen(VECTOR_1_1), NULL, NULL), 0);
	assert_non_null(back->policy);
	assert_non_null(back->runtime);
	assert_int_equal(back->policy->max_model_bytes, 4u << 20);
	assert_true(back->policy->size_slack == 0.05);
	assert_string_equal(back->policy->allow_shared[0].reason, "frozen vocabulary table");
	assert_int_equal(back->runtime->nfiles, 1);
	assert_string_equal(back->runtime->files[0].path, "bin/nexus_cli");
	nx_manifest_free(back);
	nx_manifest_free(m);
}

static void expect_reject_1_1(const char *from, const char *to, const char *msg)
{
	char *buf = malloc(sizeof(VECTOR_1_1) + 256), *at;
	nx_manifest *m = NULL;
	nx_error err;

	assert_non_null(buf);
	at = strstr(VECTOR_1_1, from);
	assert_non_null(at);
	memcpy(buf, VECTOR_1_1, (size_t)(at - VECTOR_1_1));
	strcpy(buf + (at - VECTOR_1_1), to);
	strcat(buf, at + strlen(from));
	nx_error_clear(&err);
	assert_int_not_equal(nx_manifest_parse(&m, buf, strlen(buf), NULL, &err), 0);
	assert_null(m);
	if (!strstr(err.message, msg))
		fail_msg("'%s' does not contain '%s'", err.message, msg);
	free(buf);
}

static void rejections_1_1(void **state)
{
	(void)state;
	/* 1.0 knows no policy or runtime; 1.1 needs both */
	expect_reject_1_1("\"schema_version\": \"1.1\"", "\"schema_version\": \"1.0\"",
			  "unknown key \"policy\"");
	expect_reject_1_1("\"schema_version\": \"1.1\"", "\"schema_version\": \"1.4\"",
			  "not supported");
	/* 1.2 requires a mode on every file */
	expect_reject_1_1("\"schema_version\": \"1.1\"", "\"schema_version\": \"1.2\"",
			  "missing key \"mode\"");
	expect_reject_1_1("\"max_model_bytes\": 4194304", "\"max_model_bytes\": 0", "at least 1");
	expect_reject_1_1("\"max_model_bytes\": 4194304", "\"max_model_bytes\": -1",
			  "non-negative");
	expect_reject_1_1("\"max_leak_bytes\": 16384", "\"max_leak_bytes\": 0",
			  "\"max_leak_bytes\" must be at least 1");
	expect_reject_1_1("\"size_slack\": \"0.05\"", "\"size_slack\": 0.05", "decimal string");
	expect_reject_1_1("\"size_slack\": \"0.05\"", "\"size_slack\": \"1.5\"", "decimal string");
	expect_reject_1_1("\"size_slack\": \"0.05\"", "\"size_slack\": \"0.050\"", "canonical");
	expect_reject_1_1("\"selftest_tolerance\": \"0.0001\"",
			  "\"selftest_tolerance\": \"0.5\"", "decimal string");
	expect_reject_1_1("\"teacher_files\": 1", "\"teacher_files\": 1, \"x\": 1",
			  "unknown key \"x\" in policy");
	expect_reject_1_1("\"reason\": \"frozen vocabulary table\"", "\"why\": \"x\"",
			  "allow_shared_tensors");
	expect_reject_1_1("\"wandb\"", "7", "must be a string");
	/* the runtime record cannot disagree with files */
	expect_reject_1_1("\"sha256\": \"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"\n      }\n    ],\n    \"version\"",
			  "\"sha256\": \"a3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"\n      }\n    ],\n    \"version\"",
			  "same sha256");
	expect_reject_1_1("\"files\": [\n      {\n        \"path\": \"bin/nexus_cli\",\n        \"sha256\": \"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\"\n      }\n    ]",
			  "\"files\": []", "runtime lists 0 files");
}

/* Schema 1.2: files[].mode, "0444" or "0555" and nothing else, only in 1.2. */
static void modes_1_2(void **state)
{
	nx_manifest *m = make_vector_1_1(), *back = NULL;
	char *out = NULL, *at;
	size_t len;
	nx_error err;

	(void)state;
	for (size_t i = 0; i < m->nfiles; i++)
		m->files[i].mode = strcmp(m->files[i].path, "bin/nexus_cli") ? 0444 : 0555;
	assert_int_equal(nx_manifest_set(m, &m->schema_version, NX_MANIFEST_SCHEMA_1_2, NULL), 0);
	assert_int_equal(nx_manifest_serialize(&out, &len, m, NULL), 0);
	assert_non_null(strstr(out, "\"mode\": \"0555\",\n      \"path\": \"bin/nexus_cli\""));
	assert_int_equal(nx_manifest_parse(&back, out, len, NULL, NULL), 0);
	assert_int_equal(nx_manifest_find(back, "bin/nexus_cli")->mode, 0555);
	assert_int_equal(nx_manifest_file_mode(nx_manifest_find(back, "README.md")), 0444);
	nx_manifest_free(back);
	back = NULL;
	at = strstr(out, "\"0555\"");
	memcpy(at, "\"0755\"", 6);
	nx_error_clear(&err);
	assert_int_not_equal(nx_manifest_parse(&back, out, len, NULL, &err), 0);
	assert_non_null(strstr(err.message, "mode of bin/nexus_cli must be"));
	memcpy(at, "\"0555\"", 6);
	at = strstr(out, "\"1.2\"");
	memcpy(at, "\"1.1\"", 5);
	assert_int_not_equal(nx_manifest_parse(&back, out, len, NULL, &err), 0);
	assert_non_null(strstr(err.message, "unknown key \"mode\""));
	free(out);
	nx_manifest_free(m);
}

/* Schema 1.3: platform, required there, unknown before, values checked. */
static void platform_1_3(void **state)
{
	nx_manifest *m = make_vector_1_1(), *back = NULL;
	char *out = NULL, *at;
	size_t len;
	nx_error err;

	(void)state;
	for (size_t i = 0; i < m->nfiles; i++)
		m->files[i].mode = strcmp(m->files[i].path, "bin/nexus_cli") ? 0444 : 0555;
	assert_int_equal(nx_manifest_set_platform(m, "linux", "x86 64", "2.34", NULL), NX_EFORMAT);
	assert_int_equal(nx_manifest_set_platform(m, "linux", "x86_64", "2.34.1.1", NULL), NX_EFORMAT);
	assert_int_equal(nx_manifest_set_platform(m, "darwin", "x86_64", "2.34", NULL), NX_EFORMAT);
	assert_int_equal(nx_manifest_set_platform(m, "linux", "x86_64", "2.34", NULL), 0);
	assert_string_equal(m->schema_version, NX_MANIFEST_SCHEMA_1_3);
	assert_int_equal(nx_manifest_serialize(&out, &len, m, NULL), 0);
	assert_non_null(strstr(out, "  \"platform\": {\n    \"arch\": \"x86_64\",\n"
				    "    \"min_glibc\": \"2.34\",\n    \"os\": \"linux\"\n  },\n"));
	assert_int_equal(nx_manifest_parse(&back, out, len, NULL, NULL), 0);
	assert_string_equal(back->platform->arch, "x86_64");
	assert_string_equal(back->platform->min_glibc, "2.34");
	nx_manifest_free(back);
	back = NULL;
	at = strstr(out, "\"2.34\"");
	memcpy(at, "\"2x34\"", 6);
	nx_error_clear(&err);
	assert_int_not_equal(nx_manifest_parse(&back, out, len, NULL, &err), 0);
	assert_non_null(strstr(err.message, "min_glibc"));
	memcpy(at, "\"2.34\"", 6);
	at = strstr(out, "\"1.3\"");
	memcpy(at, "\"1.2\"", 5);
	assert_int_not_equal(nx_manifest_parse(&back, out, len, NULL, &err), 0);
	assert_non_null(strstr(err.message, "unknown key \"platform\""));
	free(out);
	nx_manifest_free(m);
}

static void glibc_versions_compare_as_numbers(void **state)
{
	(void)state;
	assert_true(nx_manifest_glibc_cmp("2.34", "2.4") > 0);
	assert_true(nx_manifest_glibc_cmp("2.2.5", "2.3") < 0);
	assert_true(nx_manifest_glibc_cmp("2.3", "2.3.4") < 0);
	assert_int_equal(nx_manifest_glibc_cmp("2.36", "2.36"), 0);
	assert_true(nx_manifest_glibc_cmp("10.0", "9.99") > 0);
	assert_true(nx_manifest_glibc_cmp("", "2.0") < 0);
}

static void serialize_matches_vector(void **state)
{
	nx_manifest *m = make_vector();
	unsigned char md[NX_SHA256_LEN];
	char *s = NULL, hex[65];
	size_t n;

	assert_int_equal(nx_manifest_serialize(&s, &n, m, NULL), 0);
	assert_int_equal(n, strlen(VECTOR));
	assert_string_equal(s, VECTOR);
	nx_sha256_buf(md, s, n);
	nx_hex(hex, md);
	assert_string_equal(hex, VECTOR_SHA256);
	free(s);
	nx_manifest_free(m);
}

static void signed_bytes_drop_signature(void **state)
{
	nx_manifest *m = make_vector();
	unsigned char md[NX_SHA256_LEN];
	char *s = NULL, hex[65];
	const char *tail;
	size_t n;

	assert_int_equal(nx_manifest_set(m, &m->signature, "ed25519:x", NULL), 0);
	assert_int_equal(nx_manifest_signed_bytes(&s, &n, m, NULL), 0);
	assert_int_equal(n, strlen(s));
	assert_memory_equal(s, "nexus-manifest-v1\n{\n", 20);
	assert_null(strstr(s, "signature"));
	tail = "  \"schema_version\": \"1.0\"\n}\n";
	assert_memory_equal(s + n - strlen(tail), tail, strlen(tail));
	nx_sha256_buf(md, s, n);
	nx_hex(hex, md);
	assert_string_equal(hex, SIGNED_SHA256);
	free(s);
	nx_manifest_free(m);
}

static void parse_round_trip(void **state)
{
	nx_manifest *m = NULL;
	nx_error err;

	assert_int_equal(nx_manifest_parse(&m, VECTOR, strlen(VECTOR), "manifest.json", &err), 0);
	assert_int_equal(m->nfiles, 2);
	assert_string_equal(m->files[0].path, "README.md");
	assert_int_equal(m->files[0].size, 3);
	assert_non_null(nx_manifest_find(m, "model/student_model.onnx"));
	assert_null(nx_manifest_find(m, "model"));
	assert_null(nx_manifest_find(m, "readme.md"));
	assert_string_equal(m->architecture, "SpamStudent-2L");
	assert_true(m->teacher_free);
	nx_manifest_free(m);
}

static void big_sizes_round_trip(void **state)
{
	nx_manifest *m = make_vector(), *back = NULL;
	unsigned char md[NX_SHA256_LEN] = { 0 };
	char *s = NULL;
	size_t n;

	assert_int_equal(nx_manifest_add_file(m, "lib/big", md, (1ULL << 53) + 1, NULL), 0);
	assert_int_equal(nx_manifest_serialize(&s, &n, m, NULL), 0);
	assert_non_null(strstr(s, "9007199254740993"));
	assert_int_equal(nx_manifest_parse(&back, s, n, NULL, NULL), 0);
	assert_int_equal(nx_manifest_find(back, "lib/big")->size, (1ULL << 53) + 1);
	free(s);
	nx_manifest_free(back);
	nx_manifest_free(m);
}

/* Replace the first `from` in VECTOR with `to`, parse, expect code and text. */
static void expect_reject(const char *from, const char *to, int code, const char *msg)
{
	const char *at = strstr(VECTOR, from);
	char buf[4096];
	nx_manifest *m = NULL;
	nx_error err;

	assert_non_null(at);
	snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(at - VECTOR), VECTOR, to, at + strlen(from));
	nx_error_clear(&err);
	if (nx_manifest_parse(&m, buf, strlen(buf), "manifest.json", &err) != code || !strstr(err.message, msg)) {
		print_error("replacing '%s' by '%s': got %d '%s'\n", from, to, err.code, err.message);
		fail();
	}
	assert_null(m);
}

static void rejections(void **state)
{
	expect_reject("\"bundle_id\"", "\"bundle_id\": \"x\",\n  \"bundle_id\"", NX_EFORMAT, "duplicate");
	expect_reject("\"bundle_id\"", "\"colour\": \"x\",\n  \"bundle_id\"", NX_EFORMAT,
		      "unknown key \"colour\"");
	expect_reject("    \"format\": \"ONNX\",\n", "", NX_EFORMAT, "missing key \"format\"");
	expect_reject("      \"size_bytes\": 0\n", "      \"size_bytes\": 0,\n      \"mode\": 1\n",
		      NX_EFORMAT, "unknown key \"mode\"");
	expect_reject("\"\"\n}\n", "\"\"\n}\n{}", NX_EFORMAT, "end of file expected");
	expect_reject("\"\"\n}\n", "\"\"\n}\n\n", NX_EFORMAT, "not in canonical form");
	expect_reject("\"\"\n}\n", "\"\"\n}", NX_EFORMAT, "not in canonical form");
	expect_reject("\"signature\": \"\"", "\"signature\": \"\\u0041\"", NX_EFORMAT,
		      "not in canonical form");
	expect_reject("\"bundle_id\": ", "\"bundle_id\":", NX_EFORMAT, "not in canonical form");
	expect_reject("\"size_bytes\": 3", "\"size_bytes\": 3.0", NX_EFORMAT, "non-negative integer");
	expect_reject("\"size_bytes\": 3", "\"size_bytes\": -3", NX_EFORMAT, "non-negative integer");
	expect_reject("\"size_bytes\": 3", "\"size_bytes\": \"3\"", NX_EFORMAT, "non-negative integer");
	expect_reject("\"teacher_free\": true", "\"teacher_free\": 1", NX_EFORMAT, "true or false");
	expect_reject("ba7816bf", "BA7816BF", NX_EFORMAT, "64 lower-case hex");
	expect_reject("ba7816bf", "ba7816b", NX_EFORMAT, "64 lower-case hex");
	expect_reject("\"1.0\"", "\"2.0\"", NX_EFORMAT, "not supported");
	expect_reject("2026-11-27T01:02:03Z", "2026-11-27 01:02:03", NX_EFORMAT, "build_timestamp");
	expect_reject("2026-11-27T01:02:03Z", "2026-13-27T01:02:03Z", NX_EFORMAT, "build_timestamp");
	expect_reject("\"nexus_bundle_v1\"", "\"a/b\"", NX_EFORMAT, "bundle_id");
	expect_reject("\"SpamStudent-2L\"", "\"Spam\\u0007\"", NX_EFORMAT, "control character");
	expect_reject("\"SpamStudent-2L\"", "5", NX_EFORMAT, "must be a string");
	expect_reject("\"README.md\"", "\"zz.md\"", NX_EFORMAT, "not sorted");
	expect_reject("\"README.md\"", "\"model/student_model.onnx\"", NX_EFORMAT, "not sorted");
	expect_reject("\"README.md\"", "\"MODEL/STUDENT_MODEL.ONNX\"", NX_EFORMAT, "differ only in case");
	expect_reject("\"README.md\"", "\"../README.md\"", NX_EUNSAFE, "unsafe path");
	expect_reject("\"README.md\"", "\"\"", NX_EUNSAFE, "empty path");
	expect_reject("\"README.md\"", "\"a//b\"", NX_EUNSAFE, "empty path component");
	expect_reject("\"README.md\"", "\"/abs\"", NX_EUNSAFE, "absolute");
	expect_reject("\"README.md\"", "\"./a\"", NX_EUNSAFE, "'.' and '..'");
	expect_reject("\"README.md\"", "\"a b\"", NX_EUNSAFE, "0x20");
	expect_reject("\"README.md\"", "\"A\\tb\"", NX_EFORMAT, "control character");
	expect_reject("\"README.md\"", "\"Manifest.json\"", NX_EUNSAFE, "lists itself");
	expect_reject("\"README.md\"", "\"manifest.json\"", NX_EUNSAFE, "lists itself");
	expect_reject("\"files\": [", "\"files\": {\"a\": [", NX_EFORMAT, "");
	expect_reject("{\n", "[\n", NX_EFORMAT, "");
}

static void path_rules(void **state)
{
	static const char *const bad[] = { "", "/abs", "a//b", "a/", "..", ".", "a/../b", "a/./b",
					   "sp ace", "tab\t", "new\nline", "uni\xc3\xa9", "back\\slash",
					   "colon:x", NULL };
	static const char *const good[] = { "a", "README.md", "model/tokenizer/vocab.txt", "...",
					    ".hidden", "a-b_c.d", NULL };
	char longp[NX_MANIFEST_PATH_MAX + 2];
	nx_error err;
	int i;

	for (i = 0; bad[i]; i++) {
		nx_error_clear(&err);
		if (nx_manifest_path_check(bad[i], &err) != NX_EUNSAFE)
			fail_msg("accepted bad path '%s'", bad[i]);
	}
	for (i = 0; good[i]; i++)
		if (nx_manifest_path_check(good[i], &err) != 0)
			fail_msg("refused good path '%s': %s", good[i], err.message);
	assert_int_equal(nx_manifest_path_check("a/../b", &err), NX_EUNSAFE);
	assert_non_null(strstr(err.message, "a/../b"));
	memset(longp, 'a', sizeof(longp) - 1);
	longp[sizeof(longp) - 1] = '\0';
	assert_int_equal(nx_manifest_path_check(longp, NULL), NX_EUNSAFE);
	memset(longp, 'a', 256);
	longp[256] = '\0';
	assert_int_equal(nx_manifest_path_check(longp, NULL), NX_EUNSAFE);
}

static void add_file_refusals(void **state)
{
	nx_manifest *m = make_vector();
	unsigned char md[NX_SHA256_LEN] = { 0 };
	nx_error err;

	assert_int_equal(nx_manifest_add_file(m, "README.md", md, 1, &err), NX_EEXIST);
	assert_int_equal(nx_manifest_add_file(m, "readme.MD", md, 1, &err), NX_EEXIST);
	assert_non_null(strstr(err.message, "differ only in case"));
	assert_int_equal(nx_manifest_add_file(m, "manifest.json", md, 1, &err), NX_EUNSAFE);
	assert_int_equal(nx_manifest_add_file(m, "MANIFEST.json", md, 1, &err), NX_EUNSAFE);
	assert_int_equal(nx_manifest_add_file(m, "../x", md, 1, &err), NX_EUNSAFE);
	assert_int_equal(nx_manifest_add_file(m, "a", md, UINT64_MAX, &err), NX_ELIMIT);
	assert_int_equal(m->nfiles, 2);
	assert_int_equal(nx_manifest_add_file(m, "LICENSE", md, 1, &err), 0);
	assert_int_equal(nx_manifest_add_file(m, "bin/nexus_cli", md, 1, &err), 0);
	assert_string_equal(m->files[0].path, "LICENSE");
	assert_string_equal(m->files[1].path, "README.md");
	assert_string_equal(m->files[2].path, "bin/nexus_cli");
	nx_manifest_free(m);
	nx_manifest_free(NULL);
}

static void load_and_write_atomic(void **state)
{
	char dir[] = "/tmp/nx_mf_XXXXXX";
	nx_manifest *m = make_vector(), *back = NULL;
	nx_error err;
	struct stat st;
	int dfd;

	assert_non_null(mkdtemp(dir));
	dfd = open(dir, O_RDONLY | O_DIRECTORY);
	assert_int_equal(nx_manifest_load(&back, dfd, NULL, &err), NX_EIO);
	assert_int_equal(nx_manifest_write_atomic(dfd, m, &err), 0);
	assert_int_equal(fstatat(dfd, "manifest.json", &st, 0), 0);
	assert_int_equal(st.st_mode & 0777, 0444);
	assert_int_equal(nx_manifest_load(&back, dfd, NULL, &err), 0);
	assert_int_equal(back->nfiles, 2);
	nx_manifest_free(back);
	/* A symlinked manifest is refused, not followed. */
	assert_int_equal(symlinkat("manifest.json", dfd, "link.json"), 0);
	assert_int_equal(nx_manifest_load(&back, dfd, "link.json", &err), NX_EUNSAFE);
	unlinkat(dfd, "link.json", 0);
	unlinkat(dfd, "manifest.json", 0);
	close(dfd);
	rmdir(dir);
	nx_manifest_free(m);
}

static void size_cap(void **state)
{
	nx_manifest *m = NULL;
	nx_error err;

	assert_int_equal(nx_manifest_parse(&m, VECTOR, (size_t)NX_MANIFEST_MAX + 1, NULL, &err),
			 NX_ELIMIT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(serialize_matches_vector),
		cmocka_unit_test(signed_bytes_drop_signature),
		cmocka_unit_test(parse_round_trip),
		cmocka_unit_test(big_sizes_round_trip),
		cmocka_unit_test(rejections),
		cmocka_unit_test(path_rules),
		cmocka_unit_test(add_file_refusals),
		cmocka_unit_test(load_and_write_atomic),
		cmocka_unit_test(size_cap),
		cmocka_unit_test(vector_1_1),
		cmocka_unit_test(rejections_1_1),
		cmocka_unit_test(modes_1_2),
		cmocka_unit_test(platform_1_3),
		cmocka_unit_test(glibc_versions_compare_as_numbers),
	};
	return cmocka_run_group_tests_name("manifest", tests, NULL, NULL);
}

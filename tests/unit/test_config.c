/* test_config.c - nexus.yaml and runtime.yaml: schema, defaults, strict types. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nexus/config.h"
#include "nexus/yaml.h"

/* The reference nexus.yaml (schema: docs/man/nexus.yaml.5), verbatim. */
static const char design_example[] =
	"bundle_id: nexus_bundle_v1\n"
	"architecture: SpamStudent-2L\n"
	"student: {model: artifacts/student.onnx, outputs: [logits]}   # outputs: extract this subgraph\n"
	"teacher: [artifacts/teacher.onnx, checkpoints/teacher.pt]     # never packaged; fingerprinted\n"
	"tokenizer: artifacts/tokenizer/        # tokenizer.json and/or vocab.txt\n"
	"runtime_config: config/runtime.yaml\n"
	"source: {dir: serving/, files: [__init__.py, inference.py, utils.py]}\n"
	"forbidden_imports: [teacher_model, training_modules]\n"
	"forbidden_terms: []                    # added to teacher, distillation, soft_targets\n"
	"metadata_keep: [license]               # ONNX metadata_props keys that survive export\n"
	"allow_shared_tensors: []               # [{name: ..., reason: ...}]\n"
	"limits: {max_model_bytes: 2GiB, size_slack: 0.05}\n"
	"selftest: [\"free money, click now\", \"lunch at noon tomorrow?\"]\n"
	"readme: README.md\n"
	"license: LICENSE\n";

/* The required keys only; tests append one line to it. */
#define MINIMAL \
	"student: {model: m.onnx}\n" \
	"tokenizer: tok\n" \
	"runtime_config: config/runtime.yaml\n" \
	"source: {dir: src, files: [a.py]}\n"

static nx_workspace *ws_ok(const char *text)
{
	nx_workspace *ws = NULL;
	nx_error e;

	nx_error_clear(&e);
	if (nx_workspace_parse(&ws, text, strlen(text), "nexus.yaml", &e) != 0)
		fail_msg("unexpected error at line %ld: %s", e.line, e.message);
	assert_non_null(ws);
	return ws;
}

static void ws_fails(const char *text, int code, long line, const char *needle)
{
	nx_workspace *ws = NULL;
	nx_error e;

	nx_error_clear(&e);
	if (nx_workspace_parse(&ws, text, strlen(text), "nexus.yaml", &e) != code)
		fail_msg("expected code %d for:\n%s\ngot %d: %s", code, text, e.code, e.message);
	assert_null(ws);
	assert_string_equal(e.path, "nexus.yaml");
	if (line != e.line)
		fail_msg("expected line %ld, got %ld (%s) for:\n%s", line, e.line, e.message, text);
	if (needle && !strstr(e.message, needle))
		fail_msg("message \"%s\" lacks \"%s\"", e.message, needle);
}

static nx_runtime_config *rc_ok(const char *text)
{
	nx_runtime_config *rc = NULL;
	nx_error e;

	nx_error_clear(&e);
	if (nx_runtime_config_parse(&rc, text, strlen(text), "runtime.yaml", &e) != 0)
		fail_msg("unexpected error at line %ld: %s", e.line, e.message);
	assert_non_null(rc);
	return rc;
}

static void rc_fails(const char *text, int code, long line, const char *needle)
{
	nx_runtime_config *rc = NULL;
	nx_error e;

	nx_error_clear(&e);
	if (nx_runtime_config_parse(&rc, text, strlen(text), "runtime.yaml", &e) != code)
		fail_msg("expected code %d for:\n%s\ngot %d: %s", code, text, e.code, e.message);
	assert_null(rc);
	assert_string_equal(e.path, "runtime.yaml");
	if (line != e.line)
		fail_msg("expected line %ld, got %ld (%s) for:\n%s", line, e.line, e.message, text);
	if (needle && !strstr(e.message, needle))
		fail_msg("message \"%s\" lacks \"%s\"", e.message, needle);
}

static void design_example_parses(void **state)
{
	nx_workspace *ws = ws_ok(design_example);

	assert_string_equal(ws->bundle_id, "nexus_bundle_v1");
	assert_string_equal(ws->architecture, "SpamStudent-2L");
	assert_string_equal(ws->student.model, "artifacts/student.onnx");
	assert_int_equal(ws->student.noutputs, 1);
	assert_string_equal(ws->student.outputs[0], "logits");
	assert_int_equal(ws->nteacher, 2);
	assert_string_equal(ws->teacher[0], "artifacts/teacher.onnx");
	assert_string_equal(ws->teacher[1], "checkpoints/teacher.pt");
	assert_string_equal(ws->tokenizer, "artifacts/tokenizer");
	assert_string_equal(ws->runtime_config, "config/runtime.yaml");
	assert_string_equal(ws->source_dir, "serving");
	assert_int_equal(ws->nsource_files, 3);
	assert_string_equal(ws->source_files[0], "__init__.py");
	assert_string_equal(ws->source_files[2], "utils.py");
	assert_int_equal(ws->nforbidden_imports, 2);
	assert_string_equal(ws->forbidden_imports[0], "teacher_model");
	assert_string_equal(ws->forbidden_imports[1], "training_modules");
	assert_int_equal(ws->nforbidden_terms, 0);
	assert_int_equal(ws->nmetadata_keep, 1);
	assert_string_equal(ws->metadata_keep[0], "license");
	assert_int_equal(ws->nallow_shared, 0);
	assert_true(ws->max_model_bytes == 2ULL * 1024 * 1024 * 1024);
	assert_true(ws->size_slack == 0.05);
	assert_int_equal(ws->nselftest, 2);
	assert_string_equal(ws->selftest[0], "free money, click now");
	assert_string_equal(ws->selftest[1], "lunch at noon tomorrow?");
	assert_string_equal(ws->readme, "README.md");
	assert_string_equal(ws->license, "LICENSE");
	assert_true(ws->export_extract);
	assert_true(ws->export_strip_metadata);
	nx_workspace_free(ws);
}

static void defaults(void **state)
{
	nx_workspace *ws = ws_ok(MINIMAL);

	assert_string_equal(ws->bundle_id, "nexus_bundle_v1");
	assert_string_equal(ws->architecture, "student");
	assert_int_equal(ws->student.noutputs, 0);
	assert_null(ws->student.outputs);
	assert_int_equal(ws->nteacher, 0);
	assert_int_equal(ws->nforbidden_imports, 2);
	assert_string_equal(ws->forbidden_imports[0], "teacher_model");
	assert_string_equal(ws->forbidden_imports[1], "training_modules");
	assert_int_equal(ws->nforbidden_terms, 0);
	assert_int_equal(ws->nmetadata_keep, 0);
	assert_int_equal(ws->nallow_shared, 0);
	assert_true(ws->max_model_bytes == NX_CONFIG_DEFAULT_MAX_MODEL_BYTES);
	assert_true(ws->size_slack == 0.05);
	assert_int_equal(ws->nselftest, 0);
	assert_string_equal(ws->readme, "README.md");
	assert_string_equal(ws->license, "LICENSE");
	assert_true(ws->export_extract);
	assert_true(ws->export_strip_metadata);
	nx_workspace_free(ws);
}

static void block_style_and_options(void **state)
{
	nx_workspace *ws = ws_ok(
		"student:\n  model: m.onnx\n  outputs:\n    - logits\n    - hidden\n"
		"tokenizer: \"tok//\"\n"
		"runtime_config: rt.yaml\n"
		"source:\n  dir: serving/\n  files:\n    - pkg/a.py\n"
		"forbidden_imports: [big_model.train]\n"
		"forbidden_terms: [kd_loss, \"Lehrer\"]\n"
		"allow_shared_tensors:\n  - name: embeddings.weight\n    reason: initialised from the teacher, then trained\n"
		"limits: {max_model_bytes: \"500 MB\", size_slack: 0}\n"
		"selftest: [hi, hi]\n"
		"export: {extract: false, strip_metadata: false}\n");

	assert_int_equal(ws->student.noutputs, 2);
	assert_string_equal(ws->student.outputs[1], "hidden");
	assert_string_equal(ws->tokenizer, "tok");
	assert_string_equal(ws->source_dir, "serving");
	assert_string_equal(ws->source_files[0], "pkg/a.py");
	/* configured imports add to the spec's two, never replace them */
	assert_int_equal(ws->nforbidden_imports, 3);
	assert_string_equal(ws->forbidden_imports[0], "big_model.train");
	assert_string_equal(ws->forbidden_imports[1], "teacher_model");
	assert_string_equal(ws->forbidden_imports[2], "training_modules");
	assert_int_equal(ws->nforbidden_terms, 2);
	assert_string_equal(ws->forbidden_terms[1], "Lehrer");
	assert_int_equal(ws->nallow_shared, 1);
	assert_string_equal(ws->allow_shared[0].name, "embeddings.weight");
	assert_string_equal(ws->allow_shared[0].reason,
			    "initialised from the teacher, then trained");
	assert_true(ws->max_model_bytes == 500000000ULL);
	assert_true(ws->size_slack == 0.0);
	assert_int_equal(ws->nselftest, 2); /* duplicates are fine here */
	assert_false(ws->export_extract);
	assert_false(ws->export_strip_metadata);
	nx_workspace_free(ws);
}

static void required_keys(void **state)
{
	ws_fails("", NX_ECONFIG, 1,
		 "missing required keys student, tokenizer, runtime_config, source; add them");
	ws_fails("# nothing\n", NX_ECONFIG, 1, "missing required keys student, tokenizer");
	/* every missing key in one error, nested ones by their dotted name */
	ws_fails("student: {outputs: [a]}\nsource: {dir: s}\n", NX_ECONFIG, 1,
		 "missing required keys student.model, tokenizer, runtime_config, source.files");
	ws_fails("student: {model: m.onnx}\nruntime_config: r.yaml\nsource: {dir: s, files: [a]}\n",
		 NX_ECONFIG, 1, "missing required key tokenizer; add it");
	ws_fails("tokenizer: t\nruntime_config: r\nsource: {dir: s, files: []}\n",
		 NX_ECONFIG, 1, "student");
	ws_fails("student: {model: m}\nruntime_config: r\nsource: {dir: s, files: []}\n",
		 NX_ECONFIG, 1, "tokenizer");
	ws_fails("student: {model: m}\ntokenizer: t\nsource: {dir: s, files: []}\n",
		 NX_ECONFIG, 1, "runtime_config");
	ws_fails("student: {model: m}\ntokenizer: t\nruntime_config: r\n",
		 NX_ECONFIG, 1, "source");
	ws_fails("student:\n  outputs: [x]\ntokenizer: t\n", NX_ECONFIG, 2, "student.model");
	ws_fails("student: {model: m}\ntokenizer: t\nruntime_config: r\nsource: {files: []}\n",
		 NX_ECONFIG, 4, "source.dir");
	ws_fails("student: {model: m}\ntokenizer: t\nruntime_config: r\nsource: {dir: s}\n",
		 NX_ECONFIG, 4, "source.files");
	ws_fails("- a\n- b\n", NX_ECONFIG, 1, "top level must be a mapping");
	ws_fails("just text\n", NX_ECONFIG, 1, "top level must be a mapping");
}

static void unknown_keys(void **state)
{
	ws_fails(MINIMAL "forbiden_terms: [x]\n", NX_ECONFIG, 5,
		 "unknown key \"forbiden_terms\" (did you mean \"forbidden_terms\"?) in the top level; valid keys are: bundle_id,");
	ws_fails("student: {model: m, output: [x]}\n", NX_ECONFIG, 1,
		 "unknown key \"output\" (did you mean \"outputs\"?) in student; valid keys are: model, outputs");
	ws_fails(MINIMAL "limits:\n  max_bytes: 1\n", NX_ECONFIG, 6, "max_model_bytes, size_slack");
	ws_fails(MINIMAL "export: {extrct: true}\n", NX_ECONFIG, 5, "extract, strip_metadata");
	ws_fails(MINIMAL "allow_shared_tensors: [{name: a, reason: b, why: c}]\n",
		 NX_ECONFIG, 5, "unknown key \"why\" in allow_shared_tensors");
	ws_fails("student: {model: m}\ntokenizer: t\nruntime_config: r\n"
		 "source: {dir: s, files: [], glob: \"*\"}\n", NX_ECONFIG, 4, "glob");
}

static void strict_types(void **state)
{
	ws_fails(MINIMAL "teacher: t.onnx\n", NX_ECONFIG, 5, "teacher must be a list");
	ws_fails(MINIMAL "forbidden_terms: {a: b}\n", NX_ECONFIG, 5, "must be a list");
	ws_fails(MINIMAL "selftest: [[a]]\n", NX_ECONFIG, 5, "must be a string, not a sequence");
	ws_fails(MINIMAL "readme: [a]\n", NX_ECONFIG, 5, "readme must be a string");
	ws_fails(MINIMAL "readme:\n", NX_ECONFIG, 5, "quote it");
	ws_fails(MINIMAL "architecture: 1.0\n", NX_ECONFIG, 5, "`1.0` is not one in YAML; quote it");
	ws_fails(MINIMAL "selftest: [yes, no]\n", NX_ECONFIG, 5, "`yes`");
	ws_fails(MINIMAL "metadata_keep: [null]\n", NX_ECONFIG, 5, "quote it");
	ws_fails(MINIMAL "student: x\n", NX_ECONFIG, 5, "duplicate key");
	ws_fails("student: m.onnx\n", NX_ECONFIG, 1, "student must be a mapping");
	ws_fails(MINIMAL "limits: 2GiB\n", NX_ECONFIG, 5, "limits must be a mapping");
	ws_fails(MINIMAL "export: {extract: yes}\n", NX_ECONFIG, 5, "true or false");
	ws_fails(MINIMAL "export: {extract: \"true\"}\n", NX_ECONFIG, 5, "quoted");
	ws_fails(MINIMAL "export: {extract: True}\n", NX_ECONFIG, 5, "true or false");
	ws_fails(MINIMAL "export:\n  strip_metadata: 1\n", NX_ECONFIG, 6, "true or false");
	ws_fails(MINIMAL "allow_shared_tensors: {name: a}\n", NX_ECONFIG, 5, "must be a list");
	ws_fails(MINIMAL "allow_shared_tensors: [a]\n", NX_ECONFIG, 5, "{name, reason}");
	ws_fails(MINIMAL "allow_shared_tensors:\n  - name: a\n", NX_ECONFIG, 6, "reason");
	ws_fails(MINIMAL "allow_shared_tensors:\n  - reason: r\n", NX_ECONFIG, 6, "name");
	ws_fails(MINIMAL "allow_shared_tensors:\n  - {name: a, reason: \"\"}\n", NX_ECONFIG, 6,
		 "must not be empty");
	ws_fails(MINIMAL "forbidden_terms: [\"\"]\n", NX_ECONFIG, 5, "must not be empty");
	ws_fails(MINIMAL "forbidden_terms: [a, b, a]\n", NX_ECONFIG, 5, "twice");
	ws_fails(MINIMAL "forbidden_imports: [teacher-model]\n", NX_ECONFIG, 5, "Python module");
	ws_fails(MINIMAL "forbidden_imports: [a..b]\n", NX_ECONFIG, 5, "Python module");
	ws_fails(MINIMAL "forbidden_imports: [1abc]\n", NX_ECONFIG, 5, NULL);
	ws_fails(MINIMAL "metadata_keep: [\"a\\tb\"]\n", NX_ECONFIG, 5, "control character");
}

static void limits_validated(void **state)
{
	nx_workspace *ws = ws_ok(MINIMAL "limits: {max_model_bytes: 1234}\n");

	assert_true(ws->max_model_bytes == 1234);
	assert_true(ws->size_slack == 0.05);
	nx_workspace_free(ws);
	ws = ws_ok(MINIMAL "limits: {max_model_bytes: 1.5GB, size_slack: 1}\n");
	assert_true(ws->max_model_bytes == 1500000000ULL);
	assert_true(ws->size_slack == 1.0);
	nx_workspace_free(ws);
	ws_fails(MINIMAL "limits: {max_model_bytes: 2Gb}\n", NX_ECONFIG, 5,
		 "limits.max_model_bytes: invalid size");
	ws_fails(MINIMAL "limits: {max_model_bytes: 0}\n", NX_ECONFIG, 5, "greater than 0");
	ws_fails(MINIMAL "limits: {max_model_bytes: -1}\n", NX_ECONFIG, 5, NULL);
	ws_fails(MINIMAL "limits: {sandbox_memory: 1MiB}\n", NX_ECONFIG, 5, "at least 268435456");
	ws_fails(MINIMAL "limits: {sandbox_memory: lots}\n", NX_ECONFIG, 5, "limits.sandbox_memory");
	ws_fails(MINIMAL "limits:\n  size_slack: 1.5\n", NX_ECONFIG, 6, "between 0 and 1");
	ws_fails(MINIMAL "limits:\n  size_slack: -0.1\n", NX_ECONFIG, 6, NULL);
	ws_fails(MINIMAL "limits:\n  size_slack: \"0.1\"\n", NX_ECONFIG, 6, "quoted");
	ws_fails(MINIMAL "limits:\n  size_slack: 5%\n", NX_ECONFIG, 6, "decimal number");
	ws_fails(MINIMAL "limits:\n  size_slack: .5\n", NX_ECONFIG, 6, "decimal number");
	ws_fails(MINIMAL "limits:\n  size_slack: 1e-2\n", NX_ECONFIG, 6, "decimal number");
}

static void bundle_id_rules(void **state)
{
	nx_workspace *ws = ws_ok(MINIMAL "bundle_id: spam-2.1_rc\n");

	assert_string_equal(ws->bundle_id, "spam-2.1_rc");
	nx_workspace_free(ws);
	ws_fails(MINIMAL "bundle_id: a/b\n", NX_ECONFIG, 5, "[A-Za-z0-9._-]");
	ws_fails(MINIMAL "bundle_id: \".\"\n", NX_ECONFIG, 5, "bundle_id");
	ws_fails(MINIMAL "bundle_id: \"..\"\n", NX_ECONFIG, 5, "bundle_id");
	ws_fails(MINIMAL "bundle_id: \"\"\n", NX_ECONFIG, 5, "bundle_id");
	ws_fails(MINIMAL "bundle_id: a b\n", NX_ECONFIG, 5, "bundle_id");
	ws_fails(MINIMAL "bundle_id: \"caf\xc3\xa9\"\n", NX_ECONFIG, 5, "bundle_id");
}

static void path_rules(void **state)
{
	static const char *const bad[] = {
		"/etc/passwd", "../x", "a/../b", "a/./b", "./a", "a//b", "a\\\\b",
		"a/..", "..", ".", "a\\tb", "a/b/",
	};
	char text[512];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), MINIMAL "readme: \"%s\"\n", bad[i]);
		ws_fails(text, NX_ECONFIG, 5, "not a valid workspace path");
		snprintf(text, sizeof(text), MINIMAL "teacher: [ok.pt, \"%s\"]\n", bad[i]);
		ws_fails(text, NX_ECONFIG, 5, "not a valid workspace path");
	}
	ws_fails("student: {model: \"\"}\n", NX_ECONFIG, 1, "student.model");
	ws_fails("student: {model: /abs.onnx}\n", NX_ECONFIG, 1, "student.model");
	ws_fails("student: {model: m}\ntokenizer: /t/\n", NX_ECONFIG, 2, "tokenizer");
	ws_fails("student: {model: m}\ntokenizer: ../t\n", NX_ECONFIG, 2, "tokenizer");
	ws_fails("student: {model: m}\ntokenizer: \"/\"\n", NX_ECONFIG, 2, "tokenizer");
	ws_fails("student: {model: m}\ntokenizer: t\nruntime_config: r/\n", NX_ECONFIG, 3,
		 "runtime_config");
	ws_fails("student: {model: m}\ntokenizer: t\nruntime_config: r\n"
		 "source: {dir: s, files: [../x.py]}\n", NX_ECONFIG, 4, "source.files");
	ws_fails("student: {model: m}\ntokenizer: t\nruntime_config: r\n"
		 "source: {dir: s, files: [a.py, a.py]}\n", NX_ECONFIG, 4, "twice");
	ws_fails("student: {model: m}\ntokenizer: t\nruntime_config: r\n"
		 "source: {dir: ../s, files: []}\n", NX_ECONFIG, 4, "source.dir");

	assert_true(nx_config_path_ok("a"));
	assert_true(nx_config_path_ok("a.b/c-d/e_f.onnx"));
	assert_true(nx_config_path_ok("..a/b..")); /* only whole components count */
	assert_false(nx_config_path_ok(""));
	assert_false(nx_config_path_ok("a/"));
	assert_false(nx_config_path_ok("a\x01"));
	assert_false(nx_config_path_ok("a\x7f"));
	assert_true(nx_config_module_ok("numpy"));
	assert_true(nx_config_module_ok("_a.b2.C"));
	assert_false(nx_config_module_ok("a."));
	assert_false(nx_config_module_ok(".a"));
	assert_false(nx_config_module_ok("a.2b"));
	assert_false(nx_config_module_ok(""));
}

static void crlf_line_endings(void **state)
{
	nx_workspace *ws = ws_ok("student: {model: m.onnx}\r\ntokenizer: tok/\r\n"
				 "runtime_config: r.yaml\r\nsource: {dir: s, files: [a.py]}\r\n");

	assert_string_equal(ws->tokenizer, "tok");
	assert_string_equal(ws->runtime_config, "r.yaml");
	nx_workspace_free(ws);
	ws_fails(MINIMAL "readme: a\r\nreadme: b\r\n", NX_ECONFIG, 6, "duplicate key");
}

static void yaml_policy_reaches_config(void **state)
{
	ws_fails(MINIMAL "readme: &r README.md\n", NX_ECONFIG, 5, "anchors");
	ws_fails(MINIMAL "readme: !!str README.md\n", NX_ECONFIG, 5, "tags");
	ws_fails(MINIMAL "readme: [\n", NX_ECONFIG, 6, "syntax");
}

static void size_parsing(void **state)
{
	static const struct {
		const char *s;
		uint64_t v;
	} ok[] = {
		{ "0", 0 }, { "1234", 1234 }, { "1B", 1 }, { "2GiB", 2ULL << 30 },
		{ "500MB", 500000000ULL }, { "500 MB", 500000000ULL },
		{ "1.5GB", 1500000000ULL }, { "1.5KiB", 1536 }, { "0.5MiB", 1ULL << 19 },
		{ "1KB", 1000 }, { "1TiB", 1ULL << 40 }, { "3TB", 3000000000000ULL },
		{ "16777215TiB", 16777215ULL << 40 },
		{ "18446744073709551615", UINT64_MAX },
		{ "18446744073709551615B", UINT64_MAX },
		{ "1.000000000001TB", 1000000000001ULL },
	};
	static const char *const bad[] = {
		"", " 1", "1 ", "GiB", "1GiB ", "-1", "+1", "1.", ".5", "1..5", "1e3",
		"1gb", "1Gib", "1 G", "1K", "0x10", "1,000", "1.5B", "0.1KiB",
		"18446744073709551616", "16777216TiB", "99999999999999999999999",
		"1.0000000000001", "1_000", "1  MB", "1 B ", "1\tMB",
	};
	uint64_t v;
	size_t i;
	nx_error e;

	for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		v = 7;
		if (nx_parse_size(&v, ok[i].s, &e) != 0)
			fail_msg("\"%s\" refused: %s", ok[i].s, e.message);
		if (v != ok[i].v)
			fail_msg("\"%s\" gave %llu", ok[i].s, (unsigned long long)v);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = 7;
		nx_error_clear(&e);
		if (nx_parse_size(&v, bad[i], &e) != NX_ECONFIG)
			fail_msg("\"%s\" accepted as %llu", bad[i], (unsigned long long)v);
		assert_int_equal(e.code, NX_ECONFIG);
		assert_true(v == 7);
	}
	assert_int_equal(nx_parse_size(&v, "junk", NULL), NX_ECONFIG);
}

static void runtime_classification(void **state)
{
	nx_runtime_config *rc = rc_ok(
		"task: classification\nlabels: [ham, spam]\nmax_sequence_length: 64\n"
		"batch_size: 1\nthreads: 0\nintegrity: size\ngraph_optimization: basic\n"
		"output: logits\npython_packages: [numpy, onnxruntime, tokenizers]\n");

	assert_int_equal(rc->task, NX_TASK_CLASSIFICATION);
	assert_int_equal(rc->nlabels, 2);
	assert_string_equal(rc->labels[0], "ham");
	assert_string_equal(rc->labels[1], "spam");
	assert_int_equal(rc->max_sequence_length, 64);
	assert_int_equal(rc->batch_size, 1);
	assert_int_equal(rc->threads, 0);
	assert_int_equal(rc->integrity, NX_INTEGRITY_SIZE);
	assert_string_equal(rc->graph_optimization, "basic");
	assert_string_equal(rc->output, "logits");
	assert_int_equal(rc->npython_packages, 3);
	assert_string_equal(rc->python_packages[2], "tokenizers");
	nx_runtime_config_free(rc);
}

static void runtime_defaults(void **state)
{
	nx_runtime_config *rc = rc_ok("task: embedding\n");

	assert_int_equal(rc->task, NX_TASK_EMBEDDING);
	assert_int_equal(rc->nlabels, 0);
	assert_int_equal(rc->pooling, NX_POOL_MEAN);
	assert_true(rc->normalize);
	assert_int_equal(rc->max_sequence_length, 128);
	assert_int_equal(rc->batch_size, 8);
	assert_int_equal(rc->threads, 1);
	assert_int_equal(rc->integrity, NX_INTEGRITY_FULL);
	assert_string_equal(rc->graph_optimization, "all");
	assert_null(rc->output);
	assert_int_equal(rc->npython_packages, 0);
	nx_runtime_config_free(rc);
	rc = rc_ok("task: embedding\npooling: cls\nnormalize: false\n");
	assert_int_equal(rc->pooling, NX_POOL_CLS);
	assert_false(rc->normalize);
	assert_int_equal(rc->output_dims, 0);
	nx_runtime_config_free(rc);
	rc = rc_ok("task: embedding\npooling: last\noutput_dims: 256\n");
	assert_int_equal(rc->pooling, NX_POOL_LAST);
	assert_int_equal(rc->output_dims, 256);
	nx_runtime_config_free(rc);
	rc = rc_ok("task: classification\nlabels: [a, b]\nscores: map\n");
	assert_true(rc->scores_map);
	nx_runtime_config_free(rc);
	rc = rc_ok("task: classification\nlabels: [a, b]\nscores: list\n");
	assert_false(rc->scores_map);
	nx_runtime_config_free(rc);
	rc = rc_ok("task: rerank\n");
	assert_int_equal(rc->task, NX_TASK_RERANK);
	nx_runtime_config_free(rc);
	rc = rc_ok("task: raw\nmax_sequence_length: 8192\nbatch_size: 1024\nthreads: 256\n");
	assert_int_equal(rc->task, NX_TASK_RAW);
	assert_int_equal(rc->max_sequence_length, 8192);
	assert_int_equal(rc->batch_size, 1024);
	assert_int_equal(rc->threads, 256);
	nx_runtime_config_free(rc);
}

static void runtime_generation(void **state)
{
	nx_runtime_config *rc;

	(void)state;
	rc = rc_ok("task: generation\n");
	assert_int_equal(rc->task, NX_TASK_GENERATION);
	assert_int_equal(rc->gen.max_new_tokens, -1);
	assert_true(isnan(rc->gen.temperature));
	assert_int_equal(rc->gen.neos_token_id, 0);
	nx_runtime_config_free(rc);
	rc = rc_ok("task: generation\ngeneration:\n  max_new_tokens: 40\n  do_sample: true\n"
		   "  temperature: 0.7\n  top_k: 20\n  top_p: 0.9\n  repetition_penalty: 1.1\n"
		   "  seed: 42\n  eos_token_id: [2, 32000]\n  stop: [\"###\", \"END\"]\n");
	assert_int_equal(rc->gen.max_new_tokens, 40);
	assert_int_equal(rc->gen.do_sample, 1);
	assert_true(rc->gen.temperature == 0.7 && rc->gen.top_p == 0.9);
	assert_int_equal(rc->gen.top_k, 20);
	assert_int_equal(rc->gen.seed, 42);
	assert_int_equal(rc->gen.neos_token_id, 2);
	assert_int_equal(rc->gen.eos_token_id[1], 32000);
	assert_int_equal(rc->gen.nstop, 2);
	assert_string_equal(rc->gen.stop[0], "###");
	nx_runtime_config_free(rc);
	rc = rc_ok("task: generation\ngeneration: {eos_token_id: 50256}\n");
	assert_int_equal(rc->gen.neos_token_id, 1);
	assert_int_equal(rc->gen.eos_token_id[0], 50256);
	nx_runtime_config_free(rc);
	rc_fails("task: raw\ngeneration: {seed: 1}\n", NX_ECONFIG, 2,
		 "only valid with task: generation");
	rc_fails("task: generation\ngeneration: {max_new_tokens: 1000000000}\n", NX_ECONFIG, 2,
		 "between 1 and 65536");
	rc_fails("task: generation\ngeneration: {top_p: 1.5}\n", NX_ECONFIG, 2, "between 0 and 1");
	rc_fails("task: generation\ngeneration: {temperature: nan}\n", NX_ECONFIG, 2,
		 "decimal number");
	rc_fails("task: generation\ngeneration: {beams: 4}\n", NX_ECONFIG, 2, "beams");
	rc_fails("task: generation\ngeneration: {stop: [\"\"]}\n", NX_ECONFIG, 2, NULL);
	rc_fails("task: generation\ngeneration: {eos_token_id: []}\n", NX_ECONFIG, 2, "1 to 64");
	rc_fails("task: generation\ngeneration: 3\n", NX_ECONFIG, 2, "mapping");
}

static void runtime_errors(void **state)
{
	rc_fails("", NX_ECONFIG, 1, "missing required key task");
	rc_fails("task: regression\n", NX_ECONFIG, 1, "classification, embedding, raw, rerank");
	rc_fails("task: raw\noutput_dims: 8\n", NX_ECONFIG, 2, "only valid with task: embedding");
	rc_fails("task: embedding\noutput_dims: 0\n", NX_ECONFIG, 2, "between 1 and 65536");
	rc_fails("task: rerank\nscores: map\n", NX_ECONFIG, 2, "only valid with task: classification");
	rc_fails("task: classification\nlabels: [a]\nscores: dict\n", NX_ECONFIG, 3, "list, map");
	rc_fails("task: \"raw\"\n", NX_ECONFIG, 1, "quoted");
	rc_fails("task: classification\n", NX_ECONFIG, 1, "labels");
	rc_fails("task: classification\nlabels: []\n", NX_ECONFIG, 2, "at least one");
	rc_fails("task: classification\nlabels: spam\n", NX_ECONFIG, 2, "must be a list");
	rc_fails("task: classification\nlabels: [a, b, a]\n", NX_ECONFIG, 2, "twice");
	rc_fails("task: classification\nlabels: [0, 1]\n", NX_ECONFIG, 2, "quote it");
	rc_fails("task: embedding\nlabels: [a]\n", NX_ECONFIG, 2, "only valid with task: classification");
	rc_fails("task: raw\npooling: mean\n", NX_ECONFIG, 2, "only valid with task: embedding");
	rc_fails("task: classification\nlabels: [a]\nnormalize: true\n", NX_ECONFIG, 3,
		 "only valid with task: embedding");
	rc_fails("task: embedding\npooling: max\n", NX_ECONFIG, 2, "mean, cls, last");
	rc_fails("task: embedding\nnormalize: yes\n", NX_ECONFIG, 2, "true or false");
	rc_fails("task: raw\nthreads: \"2\"\n", NX_ECONFIG, 2, "not a quoted string");
	/* inputs: {role: name}, each name for one role */
	rc_fails("task: raw\ninputs: {ids: a, mask: a}\n", NX_ECONFIG, 2, "named for two roles");
	rc_fails("task: raw\ninputs: {idz: a}\n", NX_ECONFIG, 2, "ids, mask, type_ids, positions");
	rc_fails("task: raw\ninputs: [a]\n", NX_ECONFIG, 2, "must be a mapping");
	rc_fails("task: raw\nthreads: 257\n", NX_ECONFIG, 2, "between 0 and 256");
	rc_fails("task: raw\nthreads: -1\n", NX_ECONFIG, 2, "between 0 and 256");
	rc_fails("task: raw\nthreads: 2.0\n", NX_ECONFIG, 2, "decimal integer");
	rc_fails("task: raw\nthreads: 0x10\n", NX_ECONFIG, 2, "decimal integer");
	rc_fails("task: raw\nthreads: 010\n", NX_ECONFIG, 2, "decimal integer");
	rc_fails("task: raw\nthreads: +1\n", NX_ECONFIG, 2, "decimal integer");
	rc_fails("task: raw\nthreads: 1_0\n", NX_ECONFIG, 2, "decimal integer");
	rc_fails("task: raw\nthreads: [1]\n", NX_ECONFIG, 2, "not a sequence");
	rc_fails("task: raw\nbatch_size: 0\n", NX_ECONFIG, 2, "between 1 and 1024");
	rc_fails("task: raw\nbatch_size: 99999999999999999999999\n", NX_ECONFIG, 2, "between");
	rc_fails("task: raw\nmax_sequence_length: 8193\n", NX_ECONFIG, 2, "between 1 and 8192");
	rc_fails("task: raw\nintegrity: none\n", NX_ECONFIG, 2, "full, size");
	rc_fails("task: raw\ngraph_optimization: max\n", NX_ECONFIG, 2,
		 "disable, basic, extended, all");
	rc_fails("task: raw\noutput: \"\"\n", NX_ECONFIG, 2, "must not be empty");
	rc_fails("task: raw\npython_packages: numpy\n", NX_ECONFIG, 2, "must be a list");
	rc_fails("task: raw\npython_packages: [scikit-learn]\n", NX_ECONFIG, 2, "Python module");
	rc_fails("task: raw\ntheads: 2\n", NX_ECONFIG, 2, "unknown key \"theads\" (did you mean \"threads\"?) in the top level");
	rc_fails("task: raw\ntask: raw\n", NX_ECONFIG, 2, "duplicate key");
	rc_fails("[task]\n", NX_ECONFIG, 1, "top level must be a mapping");
}

/* Write text to dir/name and return 0, for the _load tests. */
static void write_file(int dirfd, const char *name, const char *text, size_t len)
{
	int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	close(fd);
}

static void load_from_directory(void **state)
{
	char dir[] = "/tmp/nx_test_config_XXXXXX";
	nx_workspace *ws = NULL;
	nx_runtime_config *rc = NULL;
	nx_error e;
	char *big;
	int dfd;

	assert_non_null(mkdtemp(dir));
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(dfd >= 0);
	write_file(dfd, "nexus.yaml", design_example, strlen(design_example));
	write_file(dfd, "runtime.yaml", "task: raw\n", 10);
	assert_int_equal(nx_workspace_load(&ws, dfd, "nexus.yaml", &e), 0);
	assert_string_equal(ws->architecture, "SpamStudent-2L");
	nx_workspace_free(ws);
	ws = NULL;
	assert_int_equal(nx_runtime_config_load(&rc, dfd, "runtime.yaml", &e), 0);
	assert_int_equal(rc->task, NX_TASK_RAW);
	nx_runtime_config_free(rc);

	/* Errors name the file as given. */
	write_file(dfd, "bad.yaml", "task: raw\nx: 1\n", 15);
	assert_int_equal(nx_runtime_config_load(&rc, dfd, "bad.yaml", &e), NX_ECONFIG);
	assert_string_equal(e.path, "bad.yaml");
	assert_int_equal(e.line, 2);

	assert_int_equal(nx_workspace_load(&ws, dfd, "missing.yaml", &e), NX_EIO);
	assert_string_equal(e.path, "missing.yaml");
	assert_int_equal(symlinkat("nexus.yaml", dfd, "link.yaml"), 0);
	assert_int_equal(nx_workspace_load(&ws, dfd, "link.yaml", &e), NX_EUNSAFE);
	assert_int_equal(mkdirat(dfd, "sub", 0755), 0);
	assert_int_equal(nx_workspace_load(&ws, dfd, "sub", &e), NX_EUNSAFE);
	assert_int_equal(mkfifoat(dfd, "fifo", 0644), 0);
	assert_int_equal(nx_workspace_load(&ws, dfd, "fifo", &e), NX_EUNSAFE);

	big = malloc(NX_YAML_INPUT_MAX + 1);
	assert_non_null(big);
	memset(big, '#', NX_YAML_INPUT_MAX + 1);
	write_file(dfd, "big.yaml", big, NX_YAML_INPUT_MAX + 1);
	free(big);
	assert_int_equal(nx_workspace_load(&ws, dfd, "big.yaml", &e), NX_ELIMIT);
	assert_null(ws);

	unlinkat(dfd, "nexus.yaml", 0);
	unlinkat(dfd, "runtime.yaml", 0);
	unlinkat(dfd, "bad.yaml", 0);
	unlinkat(dfd, "link.yaml", 0);
	unlinkat(dfd, "sub", AT_REMOVEDIR);
	unlinkat(dfd, "fifo", 0);
	unlinkat(dfd, "big.yaml", 0);
	close(dfd);
	rmdir(dir);
}

static void free_accepts_null(void **state)
{
	nx_workspace_free(NULL);
	nx_runtime_config_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(design_example_parses),
		cmocka_unit_test(defaults),
		cmocka_unit_test(block_style_and_options),
		cmocka_unit_test(required_keys),
		cmocka_unit_test(unknown_keys),
		cmocka_unit_test(strict_types),
		cmocka_unit_test(limits_validated),
		cmocka_unit_test(bundle_id_rules),
		cmocka_unit_test(path_rules),
		cmocka_unit_test(crlf_line_endings),
		cmocka_unit_test(yaml_policy_reaches_config),
		cmocka_unit_test(size_parsing),
		cmocka_unit_test(runtime_classification),
		cmocka_unit_test(runtime_defaults),
		cmocka_unit_test(runtime_errors),
		cmocka_unit_test(runtime_generation),
		cmocka_unit_test(load_from_directory),
		cmocka_unit_test(free_accepts_null),
	};
	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}

/*
 * build_assemble.c - the assemble step: tokenizer files, runtime settings,
 * README/LICENSE and the runtime (bin/nexus_cli + lib/) into the SPEC §1
 * layout.  Only the inputs opened by the load step are written, so nothing
 * unnamed (a teacher checkpoint beside the tokenizer, say) can slip in.
 */
#include "build_int.h"
#include "nexus/bundle.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nexus/chat_template.h"
#include "nexus/fs.h"
#include "nexus/tokenizer.h"

#include <jansson.h>

/*
 * The staged tokenizer must load in the runtime's engine: what it cannot
 * reproduce exactly is an error here, naming the workspace file and the
 * JSON path, not a bundle that answers wrongly.  Its truncation and
 * runtime.yaml's max_sequence_length are both limits (the smaller wins);
 * when they differ the user hears it.
 */
static int check_tokenizer(struct build *b)
{
	nx_tokenizer *t = NULL;
	char msg[512], **w;
	size_t tmax;
	int fd, rc;

	fd = openat(nx_stage_dirfd(b->stage), NX_BUNDLE_TOKENIZER_DIR,
		    O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return nx_error_set(b->err, NX_EIO, NULL, 0, -1, "cannot open the staged tokenizer");
	rc = nx_tokenizer_load(&t, fd, b->ws->tokenizer, b->err);
	close(fd);
	if (rc)
		return rc;
	tmax = nx_tokenizer_max_length(t);
	nx_tokenizer_free(t);
	if (!tmax || !b->rtcfg || tmax == (size_t)b->rtcfg->max_sequence_length)
		return 0;
	snprintf(msg, sizeof(msg),
		 "%s/tokenizer.json truncates at %zu tokens (truncation.max_length) but %s says "
		 "max_sequence_length: %lld; the runtime uses the smaller, %lld",
		 b->ws->tokenizer, tmax, b->ws->runtime_config,
		 (long long)b->rtcfg->max_sequence_length,
		 (long long)(tmax < (size_t)b->rtcfg->max_sequence_length
				     ? (long long)tmax : (long long)b->rtcfg->max_sequence_length));
	if (NX_ARRAY_PUSH_EXACT(b->res->warnings, b->res->nwarnings))
		return nx_error_oom(b->err, NULL);
	w = b->res->warnings;
	if (!(w[b->res->nwarnings] = strdup(msg)))
		return nx_error_oom(b->err, NULL);
	b->res->nwarnings++;
	return 0;
}

/*
 * nexus.yaml's student.inputs, for the runtime: appended to the bundle's
 * config/runtime.yaml as its `inputs:` key (the runtime reads no other
 * file), so the model's own input names need no rewriting.
 */
static int add_inputs(struct build *b, struct build_input *in)
{
	char *const *names = b->ws->student.inputs;
	const char *sep = "";
	char *text = NULL, *buf;
	size_t i, n = 0;
	FILE *f;
	int rc;

	for (i = 0; i < NX_INPUT_ROLES; i++)
		n += names[i] != NULL;
	if (!n)
		return 0;
	for (i = 0; i < NX_INPUT_ROLES; i++)
		if (b->rtcfg->inputs[i])
			return nx_error_set(b->err, NX_ECONFIG, in->src, 0, -1,
					    "%s has inputs: and nexus.yaml has student.inputs; name "
					    "the model's inputs in one of them", in->src);
	if (!(f = open_memstream(&text, &n)))
		return nx_error_oom(b->err, NULL);
	fprintf(f, "%.*s%s# student.inputs of nexus.yaml, added by nexus build\ninputs: {",
		(int)in->len, in->buf, in->len && in->buf[in->len - 1] != '\n' ? "\n" : "");
	for (i = 0; i < NX_INPUT_ROLES; i++) {
		json_t *j = names[i] ? json_string(names[i]) : NULL;
		char *q = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;

		if (names[i]) {
			fprintf(f, "%s%s: %s", sep, nx_input_role_keys[i], q ? q : "\"\"");
			sep = ", ";
		}
		free(q);
		json_decref(j);
	}
	fputs("}\n", f);
	if (fclose(f) || !text)
		return free(text), nx_error_oom(b->err, NULL);
	buf = text;
	nx_runtime_config_free(b->rtcfg);
	b->rtcfg = NULL;
	rc = nx_runtime_config_parse(&b->rtcfg, buf, n, in->src, b->err);
	free(in->buf);
	in->buf = buf;
	in->len = n;
	return rc;
}

/* The initializer `name` of the exported student's main graph, or NULL. */
static const struct nx_onnx_tensor *main_tensor(const nx_onnx_summary *sum, const char *name)
{
	size_t i;

	for (i = 0; name && i < sum->ntensors; i++)
		if (!sum->tensors[i].attribute && !strcmp(sum->tensors[i].scope, "graph") &&
		    !strcmp(sum->tensors[i].name, name))
			return &sum->tensors[i];
	return NULL;
}

/*
 * runtime.yaml's max_sequence_length against the positions the graph shows
 * (issue #17): an ids input declared with a fixed length, or the rows of
 * the position-embedding table the export found (export_positions.c; a
 * Slice of a constant buffer bounds them by the buffer's length).  Above
 * either, a long text is sure to fail: refused here, naming both numbers.
 */
static int check_positions(struct build *b)
{
	const nx_onnx_summary *sum = b->model ? nx_onnx_summary_get(b->model) : NULL;
	const struct nx_export_result *x = b->res->exported;
	const char *ids = b->rtcfg->inputs[NX_INPUT_IDS] ? b->rtcfg->inputs[NX_INPUT_IDS]
			: nx_input_default_names[NX_INPUT_IDS];
	long long max = b->rtcfg->max_sequence_length, rows, cols = 0;
	const struct nx_onnx_tensor *t, *buf;
	size_t i;

	if (!sum)
		return 0;
	for (i = 0; i < sum->ninputs; i++)
		if (!strcmp(sum->inputs[i].name, ids) && sum->inputs[i].ndims == 2 &&
		    sum->inputs[i].dims[1] > 0 && max > sum->inputs[i].dims[1])
			return nx_error_set(b->err, NX_ECONFIG, b->ws->runtime_config, 0, -1,
					    "%s: max_sequence_length %lld is more than the model takes: "
					    "its input '%s' is declared with %lld positions, so it runs "
					    "inputs of up to %lld tokens; set max_sequence_length: %lld "
					    "or less", b->ws->runtime_config, max, ids,
					    (long long)sum->inputs[i].dims[1],
					    (long long)sum->inputs[i].dims[1],
					    (long long)sum->inputs[i].dims[1]);
	for (i = 0; x && i < x->npos; i++) {
		if (!(t = main_tensor(sum, x->pos_table[i])) || t->ndims != 2 || t->dims[0] <= 0)
			continue;
		rows = t->dims[0];
		/* a slice has at most the buffer's length; a buffer longer than
		 * the table is not claimed (transformers' token_type_ids buffer
		 * of 512 zeros indexes a table of 2 rows) */
		if (x->pos_buffer[i] &&
		    (!(buf = main_tensor(sum, x->pos_buffer[i])) || !buf->ndims ||
		     (cols = buf->dims[buf->ndims - 1]) <= 0 || cols > rows))
			continue;
		if (x->pos_buffer[i])
			rows = cols;
		if (max <= rows)
			continue;
		return nx_error_set(b->err, NX_ECONFIG, b->ws->runtime_config, 0, -1,
				    "%s: max_sequence_length %lld is more than the model takes: its "
				    "position-embedding table '%s' (a Gather at the token positions%s%s) "
				    "holds %lld positions, so it runs inputs of up to %lld tokens; set "
				    "max_sequence_length: %lld or less", b->ws->runtime_config, max,
				    x->pos_table[i], x->pos_buffer[i] ? ", sliced from " : "",
				    x->pos_buffer[i] ? x->pos_buffer[i] : "", rows, rows, rows);
	}
	return 0;
}

/*
 * A tokenizer_config.json chat_template must compile in the runtime's
 * renderer: a template it cannot render exactly is refused here, naming the
 * construct and its line, not rendered wrong on the production host.
 */
static int check_chat_template(struct build *b)
{
	nx_chat_template *t = NULL;
	char *buf = NULL, path[4200];
	size_t len;
	int rc;

	if (faccessat(nx_stage_dirfd(b->stage), NX_BUNDLE_TOKENIZER_CONFIG, F_OK,
		      AT_SYMLINK_NOFOLLOW) != 0)
		return 0;
	snprintf(path, sizeof(path), "%s/tokenizer_config.json", b->ws->tokenizer);
	rc = nx_fs_read_all(&buf, &len, nx_stage_dirfd(b->stage), NX_BUNDLE_TOKENIZER_CONFIG,
			    BUILD_CHAT_CONFIG_MAX, b->err);
	if (!rc)
		rc = nx_chat_template_from_config(&t, buf, len, path, b->err);
	nx_chat_template_free(t);
	free(buf);
	return rc;
}

/* The selftest step: golden outputs (build_selftest.c), then the
 * quantization gate and the dead-weight check, which run the bundle again. */
static int selftest(struct build *b)
{
	struct nx_sandbox_result r = {0};
	int rc = nx_build__selftest_run(b, &r);

	/* export.quantize: the float student on the same inputs, compared */
	if (!rc && b->float_staged)
		rc = nx_build__quant_gate(b, r.out, r.out_len);
	if (!rc)
		rc = nx_build__put(b, NX_BUNDLE_SELFTEST, r.out, r.out_len, false);
	/* the golden file is what the liveness check runs */
	if (!rc)
		rc = nx_build__zero_dead(b, r.out, r.out_len);
	nx_sandbox_result_release(&r);
	return rc;
}

int nx_build__assemble(struct build *b)
{
	size_t i;
	int rc = 0;

	for (i = 0; i < b->nin && !rc; i++) {
		struct build_input *in = &b->in[i];

		switch (in->kind) {
		case BUILD_COPY:
			rc = nx_build__copy(b, in->dst, in->fd, (uint64_t)in->st.st_size, in->src, in->exec);
			break;
		case BUILD_RUNTIME: {
			/* A bundle must not ship settings its runtime would reject;
			 * its python_packages go into the manifest's policy. */
			nx_runtime_config_free(b->rtcfg);
			b->rtcfg = NULL;
			rc = nx_runtime_config_parse(&b->rtcfg, in->buf, in->len, in->src, b->err);
			if (!rc)
				rc = add_inputs(b, in);
			if (!rc)
				rc = nx_build__put(b, in->dst, in->buf, in->len, false);
			break;
		}
		case BUILD_TEXT:
			if (strncmp(in->dst, "src/", 4) != 0) /* sources went through filter */
				rc = nx_build__put(b, in->dst, in->buf, in->len, false);
			break;
		case BUILD_PYTHON:
			break;
		}
	}
	if (!rc && b->rtcfg)
		rc = check_positions(b);
	if (!rc)
		rc = check_tokenizer(b);
	if (!rc)
		rc = check_chat_template(b);
	/* Last: it runs the staged runtime on the staged model and tokenizer. */
	if (!rc)
		rc = selftest(b);
	return rc;
}

/*
 * main.c - bin/nexus_cli: the verb table, option parsing (one table per
 * verb, which also prints --help) and exit codes: 0 ok, 1 a check failed
 * (integrity, selftest), 2 usage or configuration, 3 input or environment.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "onnxruntime_c_api.h"
#include "nexus/tokdecode.h"
#include "rt.h"
#include "serve.h"

int rt_fail(const char *verb, const nx_error *err)
{
	fprintf(stderr, "nexus_cli %s: error: ", verb);
	if (err->path[0] && !strstr(err->message, err->path))
		fprintf(stderr, "%s: ", err->path);
	fprintf(stderr, "%s\n", err->message);
	return nx_error_exit_status(err->code);
}

/* Open the bundle and its session; prints the error and gives the status. */
int rt_start(struct rt_bundle *b, struct rt_session **s, const char *verb,
	     const struct rt_args *a, bool check)
{
	nx_error err;

	nx_error_clear(&err);
	if (rt_bundle_open(b, a->bundle, check, &err) ||
	    (a->threads >= 0 && (b->set.threads = (int)a->threads) < 0) ||
	    (s && rt_session_open(s, b, a->verbose, &err)) || rt_bundle_verified(b, &err)) {
		nx_error herr;

		/* a modified file is the verdict even when the load failed on it */
		nx_error_clear(&herr);
		if (err.code != NX_ECHECK && rt_bundle_verified(b, &herr))
			err = herr;
		if (s) {
			rt_session_free(*s);
			*s = NULL;
		}
		rt_bundle_release(b);
		return rt_fail(verb, &err);
	}
	return 0;
}

struct printer {
	FILE *f;
	size_t n, errors;
	size_t flags;           /* rt_session_json_flags */
};

static int print_result(void *ctx, json_t *r)
{
	struct printer *p = ctx;

	if (!r)
		return fflush(p->f) ? NX_EIO : 0;
	p->n++;
	if (json_object_get(r, "error"))
		p->errors++;
	if (json_dumpf(r, p->f, JSON_COMPACT | JSON_ENSURE_ASCII | p->flags) || fputc('\n', p->f) == EOF)
		return NX_EIO;
	return 0;
}

/* Feed --text values, then the --input lines, to `add`. */
static int feed(const struct rt_args *a, int (*add)(void *, const struct rt_input *, nx_error *),
		void *ctx, nx_error *err)
{
	struct rt_reader *r = NULL;
	struct rt_input in;
	size_t i;
	int rc = 0;

	for (i = 0; i < a->ntexts; i++) {
		memset(&in, 0, sizeof(in));
		in.text = a->texts[i];
		in.len = strlen(a->texts[i]);
		if (i < a->npairs) {
			in.pair = a->pairs[i];
			in.pair_len = strlen(a->pairs[i]);
		}
		if ((rc = add(ctx, &in, err)))
			return rc;
	}
	if (!a->input)
		return 0;
	if ((rc = rt_reader_open(&r, a->input, err)))
		return rc;
	while ((rc = rt_reader_next(r, &in, err)) == 1) {
		rc = add(ctx, &in, err);
		rt_input_release(&in);
		if (rc)
			break;
	}
	if (rc == NX_ENOMEM)
		nx_error_set(err, rc, NULL, 0, -1, "out of memory reading the input");
	rt_reader_free(r);
	return rc;
}

static int batch_add(void *q, const struct rt_input *in, nx_error *err)
{
	return rt_batcher_add(q, in, err);
}

static int cmd_run(const struct rt_verb *v, int argc, char **argv)
{
	struct printer p = { stdout, 0, 0, 0 };
	struct rt_batcher *q = NULL;
	struct rt_session *s = NULL;
	struct rt_bundle b;
	struct rt_args a;
	nx_error err;
	int rc;

	if ((rc = rt_parse(&a, v, argc, argv)))
		return free(a.texts), free(a.pairs), rc < 0 ? 0 : rc;
	if (a.npairs > a.ntexts)
		return free(a.texts), free(a.pairs),
		       rt_usage(v, "each --pair goes with a --text before it");
	if (!a.ntexts && !a.input)
		return free(a.texts), free(a.pairs),
		       rt_usage(v, "give --text TEXT or --input FILE (- for stdin)");
	if ((rc = rt_start(&b, &s, v->name, &a, true)))
		return free(a.texts), free(a.pairs), rc;
	if (b.set.task == RT_TASK_GENERATION) {   /* a decoder: its continuations, as JSONL */
		rc = rt_gen_main(&b, s, &a, true);
		rt_session_free(s);
		rt_bundle_release(&b);
		return free(a.texts), free(a.pairs), rc;
	}
	b.set.raw = a.raw;
	p.flags = rt_session_json_flags(s);
	nx_error_clear(&err);
	rc = rt_batcher_new(&q, s, &b, print_result, &p, &err);
	if (!rc)
		rc = feed(&a, batch_add, q, &err);
	if (!rc)
		rc = rt_batcher_flush(q, &err);
	rt_batcher_free(q);
	rt_session_free(s);
	rt_bundle_release(&b);
	free(a.texts);
	free(a.pairs);
	if (rc)
		return rt_fail(v->name, &err);
	if (p.errors) {
		fprintf(stderr, "nexus_cli run: %zu of %zu inputs failed (see their \"error\")\n",
			p.errors, p.n);
		return 3;
	}
	return 0;
}

static int cmd_info(const struct rt_verb *v, int argc, char **argv)
{
	struct rt_session *s = NULL;
	struct rt_bundle b;
	struct rt_args a;
	json_t *files, *doc, *model;
	size_t i;
	int rc;

	if ((rc = rt_parse(&a, v, argc, argv)))
		return free(a.texts), rc < 0 ? 0 : rc;
	if ((rc = rt_start(&b, &s, v->name, &a, true)))
		return rc;
	files = json_array();
	for (i = 0; i < b.manifest->nfiles; i++)
		json_array_append_new(files, json_pack("{s:s,s:I}", "path", b.manifest->files[i].path,
						       "size_bytes", (json_int_t)b.manifest->files[i].size));
	model = rt_session_describe(s);
	doc = json_pack("{s:s,s:s,s:s,s:s,s:{s:s,s:s,s:s,s:s},s:b,s:o,s:O,s:O,s:{s:s,s:I},s:s,s:s}",
			"schema", "nexus.info.v1",
			"bundle_id", b.manifest->bundle_id,
			"build_timestamp", b.manifest->build_timestamp,
			"root", b.root,
			"model_metadata", "architecture", b.manifest->architecture,
			"parameters", b.manifest->parameters, "format", b.manifest->format,
			"quantization", b.manifest->quantization,
			"signed", b.manifest->signature[0] != '\0',
			"files", files,
			"inputs", json_object_get(model, "inputs"),
			"outputs", json_object_get(model, "outputs"),
			"tokenizer", "source", nx_tokenizer_source(b.tok),
			"vocab_size", (json_int_t)nx_tokenizer_vocab_size(b.tok),
			"onnxruntime", OrtGetApiBase()->GetVersionString(),
			"nexus_cli", NX_VERSION);
	if (!doc) {
		rc = 3;
		fprintf(stderr, "nexus_cli info: error: out of memory\n");
	} else if (a.json) {
		json_dumpf(doc, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
		putchar('\n');
	} else {
		json_t *io;
		size_t k;

		printf("bundle      %s (built %s, %s)\n", b.manifest->bundle_id,
		       b.manifest->build_timestamp, b.manifest->signature[0] ? "signed" : "unsigned");
		printf("model       %s, %s parameters, %s, quantization %s\n", b.manifest->architecture,
		       b.manifest->parameters, b.manifest->format, b.manifest->quantization);
		printf("runtime     onnx runtime %s, nexus_cli %s\n",
		       OrtGetApiBase()->GetVersionString(), NX_VERSION);
		printf("tokenizer   %s, %zu entries\n", nx_tokenizer_source(b.tok),
		       nx_tokenizer_vocab_size(b.tok));
		json_array_foreach(json_object_get(model, "inputs"), k, io)
			printf("input       %s %s\n", json_string_value(json_object_get(io, "name")),
			       json_string_value(json_object_get(io, "type")));
		json_array_foreach(json_object_get(model, "outputs"), k, io)
			printf("output      %s %s\n", json_string_value(json_object_get(io, "name")),
			       json_string_value(json_object_get(io, "type")));
		for (i = 0; i < b.manifest->nfiles; i++)
			printf("file        %s (%llu bytes)\n", b.manifest->files[i].path,
			       (unsigned long long)b.manifest->files[i].size);
		printf("integrity   %s check passed\n", b.set.integrity_full ? "full" : "size");
	}
	json_decref(doc);
	rt_session_free(s);
	rt_bundle_release(&b);
	return rc;
}

static int collect(void *ctx, const struct rt_input *in, nx_error *err)
{
	struct rt_args *a = ctx;
	char **t;

	if (!in->text)
		return nx_error_set(err, NX_EFORMAT, a->input, 0, -1, "%s", in->error);
	/* a->texts takes the moved array before strndup can fail: the caller
	 * frees a->texts, and the old pointer is already freed by realloc */
	if (!(t = realloc(a->texts, (a->ntexts + 1) * sizeof(*t))))
		return nx_error_oom(err, NULL);
	a->texts = t;
	if (!(t[a->ntexts] = strndup(in->text, in->len)))
		return nx_error_oom(err, NULL);
	a->ntexts++;
	return 0;
}

static int cmd_selftest(const struct rt_verb *v, int argc, char **argv)
{
	struct rt_session *s = NULL;
	struct rt_bundle b;
	struct rt_args a;
	nx_error err;
	size_t given;
	int rc;

	if ((rc = rt_parse(&a, v, argc, argv)))
		return free(a.texts), rc < 0 ? 0 : rc;
	if (a.write && !a.output)
		return free(a.texts), rt_usage(v, "--write needs --output FILE");
	if (!a.write && (a.output || a.ntexts || a.input || a.long_case))
		return free(a.texts), rt_usage(v, "--output, --text, --input and --long-case go "
					       "with --write");
	given = a.ntexts;
	nx_error_clear(&err);
	if (a.write && a.input && (rc = feed(&(struct rt_args){ .input = a.input }, collect, &a, &err))) {
		rc = rt_fail(v->name, &err);
		goto out;
	}
	if ((rc = rt_start(&b, &s, v->name, &a, !a.write)))
		goto out;
	b.set.raw = true;       /* the golden file holds every output */
	if (a.write)
		rc = rt_selftest_write(s, &b, a.texts, a.ntexts, a.long_case, a.output, a.tol, &err);
	else
		rc = rt_selftest_check(s, &b, stdout, &err);
	rt_session_free(s);
	rt_bundle_release(&b);
	rc = rc ? rt_fail(v->name, &err) : 0;
out:
	while (a.ntexts > given)
		free(a.texts[--a.ntexts]);
	free(a.texts);
	return rc;
}

static int cmd_liveness(const struct rt_verb *v, int argc, char **argv)
{
	struct rt_bundle b;
	struct rt_args a;
	nx_error err;
	int rc;

	if ((rc = rt_parse(&a, v, argc, argv)))
		return free(a.texts), rc < 0 ? 0 : rc;
	free(a.texts);
	if ((rc = rt_start(&b, NULL, v->name, &a, true)))
		return rc;
	nx_error_clear(&err);
	rc = rt_liveness(&b, stdout, a.min_bytes ? a.min_bytes : RT_LIVE_MIN_BYTES,
			 a.budget_ms ? a.budget_ms : RT_LIVE_BUDGET_MS, &err);
	fflush(stdout);
	rt_bundle_release(&b);
	return rc ? rt_fail(v->name, &err) : 0;
}

struct tok_ctx {
	nx_tokenizer *tok;
	nx_tokdecoder *dec;
	size_t max_len;
	int64_t *ids, *type_ids, *mask, *special;
	bool json, skip_special;
	struct printer *p;
};

json_t *rt_int_list(const int64_t *v, size_t n)
{
	json_t *r = json_array();
	size_t i;

	for (i = 0; r && i < n; i++)
		if (json_array_append_new(r, json_integer(v[i]))) {
			json_decref(r);
			return NULL;
		}
	return r;
}

/* {"ids", "tokens", "type_ids", "attention_mask", "special_tokens_mask"} */
static json_t *tok_object(const struct tok_ctx *c, size_t n)
{
	json_t *toks = json_array();
	size_t i, len;

	for (i = 0; toks && i < n; i++) {
		const char *s = nx_tokenizer_id_to_token(c->tok, c->ids[i], &len);

		if (json_array_append_new(toks, s ? json_stringn(s, len) : json_null())) {
			json_decref(toks);
			return NULL;
		}
	}
	return json_pack("{s:o,s:o,s:o,s:o,s:o}", "ids", rt_int_list(c->ids, n), "tokens", toks,
			 "type_ids", rt_int_list(c->type_ids, n), "attention_mask", rt_int_list(c->mask, n),
			 "special_tokens_mask", rt_int_list(c->special, n));
}

static int emit(struct printer *p, json_t *r, nx_error *err)
{
	int rc;

	if (!r)
		return nx_error_oom(err, NULL);
	rc = print_result(p, r);
	json_decref(r);
	return rc ? nx_error_set(err, NX_EIO, NULL, 0, -1, "cannot write the output") : 0;
}

static int tok_one(void *ctx, const struct rt_input *in, nx_error *err)
{
	struct tok_ctx *c = ctx;
	nx_error e;
	size_t n = 0;

	if (!in->text)
		return emit(c->p, json_pack("{s:s}", "error", in->error), err);
	if (nx_tokenizer_encode_pair(c->tok, in->text, in->len, in->pair, in->pair_len, c->max_len,
				     c->ids, c->type_ids, c->mask, c->special, &n, &e))
		return emit(c->p, json_pack("{s:s}", "error", e.message), err);
	return emit(c->p, c->json ? tok_object(c, n) : rt_int_list(c->ids, n), err);
}

/* ids of a detokenize input: a JSON list or "5, 6 7" (a line starting with
 * '{' is taken by the input reader as {"text": ...}, so there is no object form) */
static int parse_ids(const char *s, size_t len, int64_t **ids, size_t *n, const char **why)
{
	json_t *j = NULL, *list, *v;
	size_t i, cap = 0;
	int rc = 0;

	*n = 0;
	while (len && (*s == ' ' || *s == '\t'))
		s++, len--;
	if (len && *s == '[') {
		j = json_loadb(s, len, 0, NULL);
		list = j;
		if (!json_is_array(list)) {
			*why = "not a JSON list of ids";
			rc = 1;
			goto out;
		}
		if (!(*ids = realloc(*ids, (json_array_size(list) + 1) * sizeof(**ids))))
			return NX_ENOMEM;
		json_array_foreach(list, i, v) {
			if (!json_is_integer(v)) {
				*why = "an id is not an integer";
				rc = 1;
				goto out;
			}
			(*ids)[(*n)++] = json_integer_value(v);
		}
		goto out;
	}
	while (len) {
		char buf[32], *end;
		size_t k = 0;

		while (len && (*s == ' ' || *s == ',' || *s == '\t' || *s == '\r'))
			s++, len--;
		while (len && k < sizeof(buf) - 1 && *s != ' ' && *s != ',' && *s != '\t' && *s != '\r')
			buf[k++] = *s++, len--;
		if (!k)
			break;
		buf[k] = '\0';
		if (*n == cap) {
			cap = cap ? cap * 2 : 64;
			if (!(*ids = realloc(*ids, cap * sizeof(**ids))))
				return NX_ENOMEM;
		}
		(*ids)[(*n)++] = strtoll(buf, &end, 10);
		if (*end) {
			*why = "ids must be integers separated by commas or spaces, or a JSON list";
			return 1;
		}
	}
out:
	json_decref(j);
	return rc;
}

static int detok_one(void *ctx, const struct rt_input *in, nx_error *err)
{
	struct tok_ctx *c = ctx;
	const char *why = NULL;
	int64_t *ids = NULL;
	size_t n = 0, len;
	char *text = NULL;
	json_t *r;
	int rc;

	if (!in->text)
		return emit(c->p, json_pack("{s:s}", "error", in->error), err);
	rc = parse_ids(in->text, in->len, &ids, &n, &why);
	if (rc == NX_ENOMEM)
		r = NULL;
	else if (rc)
		r = json_pack("{s:s}", "error", why);
	else if (nx_tokdecoder_decode(c->dec, ids, n, c->skip_special, &text, &len, err))
		r = NULL;
	else if (!c->json) {
		/* plain: the text and a newline */
		rc = fwrite(text, 1, len, c->p->f) != len || fputc('\n', c->p->f) == EOF;
		free(text);
		free(ids);
		return rc ? nx_error_set(err, NX_EIO, NULL, 0, -1, "cannot write the output") : 0;
	} else
		r = json_pack("{s:s%}", "text", text, len);
	free(text);
	free(ids);
	return emit(c->p, r, err);
}

/* The tokenizer of --tokenizer DIR, else of the bundle (b keeps it). */
static int open_tokenizer(struct tok_ctx *c, struct rt_bundle *b, const struct rt_args *a,
			  nx_error *err)
{
	int rc, fd;

	memset(b, 0, sizeof(*b));
	b->rootfd = b->model_fd = -1;
	if (a->tokdir) {
		fd = open(a->tokdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		rc = fd < 0 ? nx_error_errno(err, NX_EIO, errno, a->tokdir, "cannot open %s", a->tokdir)
			    : nx_tokenizer_load(&c->tok, fd, a->tokdir, err);
		if (fd >= 0)
			close(fd);
		c->max_len = a->maxlen ? (size_t)a->maxlen : 512;
	} else if (!(rc = rt_bundle_open(b, a->bundle, false, err))) {
		c->tok = b->tok;
		c->max_len = a->maxlen ? (size_t)a->maxlen : b->set.max_len;
	}
	return rc;
}

static int tok_verb(const struct rt_verb *v, int argc, char **argv, bool detok)
{
	struct printer p = { stdout, 0, 0, 0 };
	struct tok_ctx c = { 0 };
	struct rt_bundle b;
	struct rt_args a;
	nx_error err;
	int rc;

	if ((rc = rt_parse(&a, v, argc, argv)))
		return free(a.texts), free(a.pairs), rc < 0 ? 0 : rc;
	if (a.npairs > a.ntexts)
		rc = rt_usage(v, "each --pair goes with a --text before it");
	else if (!a.ntexts && !a.input)
		rc = rt_usage(v, detok ? "give --ids IDS or --input FILE (- for stdin)"
			      : "give --text TEXT or --input FILE (- for stdin)");
	if (rc)
		return free(a.texts), free(a.pairs), rc;
	nx_error_clear(&err);
	c.p = &p;
	c.json = a.json;
	c.skip_special = a.skip_special;
	rc = open_tokenizer(&c, &b, &a, &err);
	if (!rc && detok)
		rc = nx_tokdecoder_new(&c.dec, c.tok, a.tokdir ? a.tokdir : "model/tokenizer", &err);
	if (!rc && (!(c.ids = calloc(c.max_len, sizeof(*c.ids))) ||
		    !(c.type_ids = calloc(c.max_len, sizeof(*c.ids))) ||
		    !(c.mask = calloc(c.max_len, sizeof(*c.ids))) ||
		    !(c.special = calloc(c.max_len, sizeof(*c.ids)))))
		rc = nx_error_oom(&err, NULL);
	if (!rc)
		rc = feed(&a, detok ? detok_one : tok_one, &c, &err);
	fflush(stdout);
	free(c.ids);
	free(c.type_ids);
	free(c.mask);
	free(c.special);
	free(a.pairs);
	nx_tokdecoder_free(c.dec);
	if (a.tokdir)
		nx_tokenizer_free(c.tok);
	rt_bundle_release(&b);
	free(a.texts);
	return rc ? rt_fail(v->name, &err) : 0;
}

static int cmd_tokenize(const struct rt_verb *v, int argc, char **argv)
{
	return tok_verb(v, argc, argv, false);
}

static int cmd_detokenize(const struct rt_verb *v, int argc, char **argv)
{
	return tok_verb(v, argc, argv, true);
}

static const struct rt_opt run_opts[] = {
	{ "text", "TEXT", "classify/embed TEXT (repeatable)", RT_OPT_TEXT },
	{ "pair", "TEXT", "the second text of the previous --text (cross-encoders, rerankers)",
	  RT_OPT_PAIR },
	{ "input", "FILE", "one text or {\"text\": ..., \"text_pair\"?: ...} per line; - for stdin",
	  RT_OPT_INPUT },
	{ "raw", NULL, "also print every model output (\"outputs\") for embedding and rerank", RT_OPT_RAW },
	RT_OPT_BUNDLE_ENTRY,
	{ 0 },
};
static const struct rt_opt info_opts[] = {
	{ "json", NULL, "one JSON document on stdout", RT_OPT_JSON },
	RT_OPT_BUNDLE_ENTRY,
	{ 0 },
};
static const struct rt_opt selftest_opts[] = {
	{ "write", NULL, "write the golden file instead of checking it (no integrity check)", RT_OPT_WRITE },
	{ "output", "FILE", "with --write: where to write it", RT_OPT_OUTPUT },
	{ "text", "TEXT", "with --write: a golden input (repeatable)", RT_OPT_TEXT },
	{ "input", "FILE", "with --write: golden inputs, one per line like run", RT_OPT_INPUT },
	{ "tolerance", "X", "with --write: absolute tolerance recorded (default 1e-4)", RT_OPT_TOL },
	{ "long-case", NULL, "with --write: add a text of max_sequence_length tokens", RT_OPT_LONG },
	RT_OPT_BUNDLE_ENTRY,
	{ 0 },
};
static const struct rt_opt liveness_opts[] = {
	{ "min-bytes", "N", "initializers of at least N bytes are checked (default 64)", RT_OPT_MINBYTES },
	{ "budget-ms", "MS", "stop checking after MS milliseconds (default 60000)", RT_OPT_BUDGET },
	RT_OPT_BUNDLE_ENTRY,
	{ 0 },
};
static const struct rt_opt tokenize_opts[] = {
	{ "text", "TEXT", "tokenize TEXT (repeatable)", RT_OPT_TEXT },
	{ "input", "FILE", "one text or {\"text\": ..., \"text_pair\"?: ...} per line; - for stdin",
	  RT_OPT_INPUT },
	{ "pair", "TEXT", "the second text of the previous --text (sentence pairs)", RT_OPT_PAIR },
	{ "json", NULL, "one object per input: ids, tokens, type_ids, attention_mask, "
	  "special_tokens_mask", RT_OPT_JSON },
	{ "tokenizer", "DIR", "a tokenizer directory instead of the bundle's", RT_OPT_TOKDIR },
	{ "max-length", "N", "max_sequence_length (default: runtime.yaml, or 512)", RT_OPT_MAXLEN },
	RT_OPT_BUNDLE_ENTRY,
	{ 0 },
};
static const struct rt_opt detokenize_opts[] = {
	{ "ids", "IDS", "decode IDS: \"5,6,7\" or a JSON list (repeatable)", RT_OPT_TEXT },
	{ "input", "FILE", "one JSON list of ids (or \"5,6,7\") per line; - for stdin", RT_OPT_INPUT },
	{ "skip-special-tokens", NULL, "leave out the special added tokens ([CLS], <s>, ...)",
	  RT_OPT_SKIP_SPECIAL },
	{ "json", NULL, "one {\"text\": ...} object per input instead of the text", RT_OPT_JSON },
	{ "tokenizer", "DIR", "a tokenizer directory instead of the bundle's", RT_OPT_TOKDIR },
	RT_OPT_BUNDLE_ENTRY,
	{ 0 },
};

static const struct rt_opt serve_opts[] = {
	{ "listen", "ADDR", "numeric address to listen on (default 127.0.0.1)", RT_OPT_LISTEN },
	{ "port", "N", "TCP port (default 8080; 0 picks a free one)", RT_OPT_PORT },
	{ "ready-file", "FILE", "write the bound port there once listening", RT_OPT_READY },
	{ "queue", "N", "texts waiting at most; beyond: 503 (default 1024)", RT_OPT_QUEUE },
	{ "max-batch", "N", "texts per inference (default: runtime.yaml batch_size)", RT_OPT_MAXBATCH },
	{ "max-wait-ms", "MS", "how long a text waits for others to batch with (default 5)", RT_OPT_MAXWAIT },
	{ "max-body", "BYTES", "request body cap; beyond: 413 (default 1048576)", RT_OPT_MAXBODY },
	{ "timeout", "S", "drop a connection idle that long (default 30)", RT_OPT_TIMEOUT },
	{ "max-connections", "N", "open connections at most (default 256)", RT_OPT_MAXCONN },
	RT_OPT_BUNDLE_ENTRY,
	{ 0 },
};

static const struct rt_opt generate_opts[] = {
	{ "prompt", "TEXT", "continue TEXT (repeatable)", RT_OPT_TEXT },
	{ "input", "FILE", "one prompt or {\"prompt\": ..., settings...} per line; - for stdin",
	  RT_OPT_INPUT },
	{ "json", NULL, "one object per prompt: ids, text, finish_reason, ttft_ms, tokens_per_s",
	  RT_OPT_JSON },
	{ "max-new-tokens", "N", "new tokens at most (1..65536; default 64)", RT_OPT_GEN_MAXNEW },
	{ "temperature", "X", "sample at temperature X (0: greedy)", RT_OPT_GEN_TEMP },
	{ "top-k", "N", "sample among the N most likely tokens (0: all; default 50)", RT_OPT_GEN_TOPK },
	{ "top-p", "X", "sample among the most likely tokens reaching probability X", RT_OPT_GEN_TOPP },
	{ "repetition-penalty", "X", "divide the logits of tokens already seen by X", RT_OPT_GEN_REP },
	{ "seed", "N", "the sampling seed (same seed, same tokens)", RT_OPT_GEN_SEED },
	{ "stop", "TEXT", "stop before TEXT (repeatable, up to 16)", RT_OPT_GEN_STOP },
	{ "do-sample", NULL, "sample (temperature, top-k, top-p)", RT_OPT_GEN_SAMPLE },
	{ "greedy", NULL, "take the most likely token each step", RT_OPT_GEN_GREEDY },
	{ "threads", "N", "ONNX Runtime threads (0: all cores; default runtime.yaml)", RT_OPT_THREADS },
	RT_OPT_BUNDLE_ENTRY,
	{ 0 },
};

static const struct rt_verb verbs[] = {
	{ "info", "show the bundle, its model and runtime after checking its integrity", NULL,
	  info_opts, cmd_info, false },
	{ "run", "run the model: one JSON object per input on stdout (JSONL)",
	  "classification: \"label\", \"scores\" (softmax, a list in label order or with\n"
	  "scores: map a {label: score} object) and \"outputs\" ({output name: flat list of\n"
	  "numbers}); embedding: \"embedding\" (pooled); rerank: \"score\"; raw: \"outputs\".\n"
	  "--raw adds \"outputs\" everywhere.  float32 numbers print in the shortest form\n"
	  "that reads back as the same float32.  A bad input gives\n"
	  "{\"error\": ...} in its place and exit status 3 after all inputs ran; so does an\n"
	  "input whose outputs are NaN or infinite (\"code\": \"non-finite-output\").",
	  run_opts, cmd_run, false },
	{ "selftest", "compare the model's outputs with config/selftest.json",
	  "exit 1 and the case and its max abs diff when they differ.  --write (used by\n"
	  "`nexus build`) runs the texts and writes the golden file without checking the\n"
	  "bundle's manifest, which does not exist yet at that point.",
	  selftest_opts, cmd_selftest, false },
	{ "liveness", "check that every initializer influences the outputs (verify runs it)",
	  "each initializer of at least --min-bytes is replaced by a copy plus noise of its\n"
	  "own scale and the selftest texts run again; one JSON line per initializer\n"
	  "(\"live\", \"dead\" or \"unchecked\" once the budget is spent); exit 1 when one\n"
	  "changes the outputs by less than 1e-6 (relative).",
	  liveness_opts, cmd_liveness, true },
	{ "tokenize", "print the ids of each input as a JSON list (one line per input)",
	  "with --json, one object per input with the ids, their tokens, type_ids,\n"
	  "attention_mask and special_tokens_mask (as Hugging Face's encode gives them);\n"
	  "a bad input gives {\"error\": ...} in its place.",
	  tokenize_opts, cmd_tokenize, false },
	{ "detokenize", "turn ids back into text (the tokenizer.json's decoder, as Hugging Face)",
	  "one line of text per input (or {\"text\": ...} with --json); ids the vocabulary\n"
	  "does not have are left out, as Hugging Face's decode does.",
	  detokenize_opts, cmd_detokenize, false },
	{ "generate", "continue text with a decoder (task: generation), printing it as produced",
	  "defaults: built in (greedy, 64 new tokens), config/generation_config.json,\n"
	  "runtime.yaml's generation:, then these flags, then a JSONL line's own keys\n"
	  "(max_new_tokens, temperature, top_k, top_p, repetition_penalty, seed,\n"
	  "do_sample, stop).  --temperature above 0 samples.  One prompt at a time.  A bad\n"
	  "prompt (empty, longer than max_sequence_length, NaN logits) is an error in its\n"
	  "place ({\"error\", \"code\"} with --json) and exit status 3 after all ran.",
	  generate_opts, rt_cmd_generate, false },
	{ "serve", "answer HTTP requests: /v1/embeddings, /predict, /health, /metrics",
	  "one inference thread batches the texts of concurrent requests (--max-batch,\n"
	  "--max-wait-ms); a full --queue answers 503 with Retry-After.  GET /health is\n"
	  "200 only after the integrity check and one warm-up inference.  SIGTERM or\n"
	  "SIGINT stop accepting, answer what is in flight and exit 0.  Needs\n"
	  "libmicrohttpd.so.12 (Debian: libmicrohttpd12).  See nexus_cli(1).",
	  serve_opts, rt_cmd_serve, false },
};

static void top_usage(FILE *f)
{
	size_t i;

	fprintf(f, "usage: nexus_cli VERB [OPTIONS]   (nexus_cli VERB --help)\n\n"
		   "the runtime of a nexus bundle.\n\nverbs:\n");
	for (i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (!verbs[i].hidden)
			fprintf(f, "  %-10s %s\n", verbs[i].name, verbs[i].summary);
	fprintf(f, "\n  --version  print the versions\n");
}

int main(int argc, char **argv)
{
	size_t i;

	if (argc < 2) {
		top_usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("nexus_cli %s (onnx runtime %s)\n", NX_VERSION, OrtGetApiBase()->GetVersionString());
		return 0;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		top_usage(stdout);
		return 0;
	}
	for (i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (!strcmp(argv[1], verbs[i].name))
			return verbs[i].fn(&verbs[i], argc - 1, argv + 1);
	fprintf(stderr, "nexus_cli: unknown verb '%s'\n", argv[1]);
	top_usage(stderr);
	return 2;
}

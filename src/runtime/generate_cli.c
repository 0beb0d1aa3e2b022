/*
 * generate_cli.c - `nexus_cli generate` (and `run` on a generation
 * bundle): the settings of each request, the prompts, the printing.
 *
 * A setting comes from, last one winning: the built-in defaults (Hugging
 * Face's: greedy, temperature 1, top_k 50, top_p 1), the bundle's
 * config/generation_config.json, runtime.yaml's generation:, the flags,
 * and a JSONL line's own keys.  A temperature given by a flag or a line
 * turns sampling on (0: greedy), as OpenAI's API reads it.
 *
 * With --chat each prompt goes through the tokenizer's chat template first
 * (add_generation_prompt true): a {"messages": [...]} line as it is, a
 * plain text as one user message.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nexus/chat_template.h"
#include "rt.h"

#define GENCONFIG_MAX (64u << 10)     /* bytes of generation_config.json read */
#define GEN_DEFAULT_NEW_TOKENS 64

static int add_eos(struct rt_gen_params *p, json_t *v)
{
	size_t i;
	json_t *x;

	if (json_is_integer(v)) {
		p->neos = 1;
		p->eos[0] = json_integer_value(v);
		return 0;
	}
	if (!json_is_array(v) || json_array_size(v) > RT_GEN_EOS_MAX)
		return -1;
	p->neos = 0;
	json_array_foreach(v, i, x) {
		if (!json_is_integer(x))
			return -1;
		p->eos[p->neos++] = json_integer_value(x);
	}
	return 0;
}

/*
 * One setting by name from a number (or bool for do_sample); 0, or -1 with
 * *why.  Used for generation_config.json, flags and JSONL lines alike.
 */
int rt_gen_set(struct rt_gen_params *p, const char *key, double v, bool explicit_sampling,
	       const char **why)
{
	if (!strcmp(key, "max_new_tokens")) {
		if (!(v >= 1 && v <= NX_GEN_NEW_TOKENS_MAX) || v != floor(v))
			return *why = "max_new_tokens must be a whole number from 1 to 65536", -1;
		p->max_new_tokens = (size_t)v;
	} else if (!strcmp(key, "temperature")) {
		if (!(v >= 0 && v <= 100))
			return *why = "temperature must be a number from 0 to 100", -1;
		p->temperature = v;
		if (explicit_sampling)
			p->do_sample = v > 0;
	} else if (!strcmp(key, "top_k")) {
		if (!(v >= 0 && v <= (1 << 24)) || v != floor(v))
			return *why = "top_k must be a whole number >= 0", -1;
		p->top_k = (size_t)v;
	} else if (!strcmp(key, "top_p")) {
		if (!(v > 0 && v <= 1))
			return *why = "top_p must be a number in (0, 1]", -1;
		p->top_p = v;
	} else if (!strcmp(key, "repetition_penalty")) {
		if (!(v >= 0.01 && v <= 100))
			return *why = "repetition_penalty must be a number from 0.01 to 100", -1;
		p->repetition_penalty = v;
	} else if (!strcmp(key, "seed")) {
		if (!(v >= 0 && v <= 9007199254740992.0) || v != floor(v))
			return *why = "seed must be a whole number from 0 to 2^53", -1;
		p->seed = (uint64_t)v;
	} else if (!strcmp(key, "do_sample")) {
		p->do_sample = v != 0;
	} else {
		return *why = "unknown setting", -1;
	}
	return 0;
}

/* config/generation_config.json, when the bundle has one (checked against
 * the manifest like every file); keys it has that we do not use are left. */
static int from_genconfig(struct rt_gen_params *p, struct rt_bundle *b, nx_error *err)
{
	static const char *const keys[] = { "max_new_tokens", "temperature", "top_k", "top_p",
					    "repetition_penalty", "do_sample", NULL };
	json_error_t je;
	struct stat st;
	const char *why = NULL;
	json_t *j, *v;
	FILE *f;
	size_t i;
	int fd, rc = 0;

	fd = openat(b->rootfd, RT_GENCONFIG, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == ENOENT ? 0 : nx_error_errno(err, NX_EIO, errno, RT_GENCONFIG,
							    "cannot open %s", RT_GENCONFIG);
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_size > GENCONFIG_MAX) {
		close(fd);
		return nx_error_set(err, NX_ECONFIG, RT_GENCONFIG, 0, -1,
				    "%s is not a regular file of at most 64 KiB", RT_GENCONFIG);
	}
	if (!(f = fdopen(fd, "rb"))) {
		close(fd);
		return nx_error_oom(err, NULL);
	}
	j = json_loadf(f, JSON_REJECT_DUPLICATES, &je);
	fclose(f);
	if (!json_is_object(j)) {
		json_decref(j);
		return nx_error_set(err, NX_ECONFIG, RT_GENCONFIG, 0, -1, "%s: not a JSON object%s%s",
				    RT_GENCONFIG, j ? "" : ": ", j ? "" : je.text);
	}
	for (i = 0; keys[i] && !rc; i++) {
		v = json_object_get(j, keys[i]);
		if (!v || json_is_null(v))
			continue;
		if (!json_is_number(v) && !json_is_boolean(v))
			why = "not a number";
		else if (rt_gen_set(p, keys[i], json_is_boolean(v) ? json_is_true(v) : json_number_value(v),
				 false, &why) == 0)
			continue;
		rc = nx_error_set(err, NX_ECONFIG, RT_GENCONFIG, 0, -1, "%s: %s: %s", RT_GENCONFIG,
				  keys[i], why);
	}
	if (!rc && (v = json_object_get(j, "eos_token_id")) && !json_is_null(v) && add_eos(p, v))
		rc = nx_error_set(err, NX_ECONFIG, RT_GENCONFIG, 0, -1,
				  "%s: eos_token_id must be an id or a list of at most %d ids",
				  RT_GENCONFIG, RT_GEN_EOS_MAX);
	json_decref(j);
	return rc;
}

int rt_gen_defaults(struct rt_gen_params *p, struct rt_bundle *b, nx_error *err)
{
	const struct nx_generation_defaults *g = &b->rc->gen;
	size_t i;
	int rc;

	memset(p, 0, sizeof(*p));
	p->max_new_tokens = GEN_DEFAULT_NEW_TOKENS;
	p->temperature = 1;
	p->top_k = 50;
	p->top_p = 1;
	p->repetition_penalty = 1;
	if ((rc = from_genconfig(p, b, err)))
		return rc;
	if (g->max_new_tokens > 0)
		p->max_new_tokens = (size_t)g->max_new_tokens;
	if (g->do_sample >= 0)
		p->do_sample = g->do_sample;
	if (!isnan(g->temperature))
		p->temperature = g->temperature;
	if (g->top_k >= 0)
		p->top_k = (size_t)g->top_k;
	if (!isnan(g->top_p))
		p->top_p = g->top_p;
	if (!isnan(g->repetition_penalty))
		p->repetition_penalty = g->repetition_penalty;
	if (g->seed >= 0)
		p->seed = (uint64_t)g->seed;
	if (g->neos_token_id) {
		p->neos = g->neos_token_id < RT_GEN_EOS_MAX ? g->neos_token_id : RT_GEN_EOS_MAX;
		memcpy(p->eos, g->eos_token_id, p->neos * sizeof(*p->eos));
	}
	for (i = 0; i < g->nstop && i < RT_GEN_STOP_MAX; i++)
		p->stop[p->nstop++] = g->stop[i];
	return 0;
}

static const char *const flag_keys[] = {
	"max_new_tokens", "temperature", "top_k", "top_p", "repetition_penalty", "seed"
};

/* The flags over the defaults; a usage message in *why. */
static int from_flags(struct rt_gen_params *p, const struct rt_args *a, char *why, size_t n)
{
	const char *w = NULL;
	size_t i;

	for (i = 0; i < sizeof(flag_keys) / sizeof(flag_keys[0]); i++) {
		char *end;
		double v;

		if (!a->gen[i])
			continue;
		errno = 0;
		v = strtod(a->gen[i], &end);
		if (!*a->gen[i] || *end || errno || !isfinite(v)) {
			snprintf(why, n, "--%s needs a number, not '%s'", flag_keys[i], a->gen[i]);
			return -1;
		}
		if (rt_gen_set(p, flag_keys[i], v, true, &w)) {
			snprintf(why, n, "%s (--%s %s)", w, flag_keys[i], a->gen[i]);
			return -1;
		}
	}
	if (a->sample >= 0)
		p->do_sample = a->sample;
	if (a->nstops) {
		if (a->nstops > RT_GEN_STOP_MAX) {
			snprintf(why, n, "at most %d --stop strings", RT_GEN_STOP_MAX);
			return -1;
		}
		p->nstop = 0;
		for (i = 0; i < a->nstops; i++) {
			if (!a->stops[i][0]) {
				snprintf(why, n, "a --stop string must not be empty");
				return -1;
			}
			p->stop[p->nstop++] = a->stops[i];
		}
	}
	return 0;
}

/* A JSONL line's own settings over p; -1 with *why. */
static int from_line(struct rt_gen_params *p, json_t *obj, const char **why)
{
	const char *key;
	json_t *v, *x;
	size_t i;

	json_object_foreach(obj, key, v) {
		if (!strcmp(key, "text") || !strcmp(key, "prompt") || !strcmp(key, "messages"))
			continue;
		if (!strcmp(key, "stop")) {
			if (json_is_string(v)) {
				p->nstop = 1;
				p->stop[0] = json_string_value(v);
				if (!p->stop[0][0])
					return *why = "a stop string must not be empty", -1;
				continue;
			}
			if (!json_is_array(v) || json_array_size(v) > RT_GEN_STOP_MAX)
				return *why = "stop must be a string or a list of at most 16 strings", -1;
			p->nstop = 0;
			json_array_foreach(v, i, x) {
				if (!json_is_string(x) || !json_string_length(x))
					return *why = "stop must list non-empty strings", -1;
				p->stop[p->nstop++] = json_string_value(x);
			}
			continue;
		}
		if (!strcmp(key, "do_sample") && json_is_boolean(v)) {
			p->do_sample = json_is_true(v);
			continue;
		}
		if (!json_is_number(v)) {
			static char msg[160];

			snprintf(msg, sizeof(msg), "\"%.60s\" must be a number", key);
			return *why = msg, -1;
		}
		if (rt_gen_set(p, key, json_number_value(v), true, why))
			return -1;
	}
	return 0;
}

struct gen_out {
	bool json, stream;
	size_t n, errors;
};

static int put_piece(void *ctx, const char *piece, size_t len)
{
	(void)ctx;
	return fwrite(piece, 1, len, stdout) != len || fflush(stdout) ? -1 : 0;
}

static int print_json(json_t *r)
{
	int rc;

	if (!r)
		return NX_ENOMEM;
	rc = json_dumpf(r, stdout, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(6)) ||
	     fputc('\n', stdout) == EOF || fflush(stdout) ? NX_EIO : 0;
	json_decref(r);
	return rc;
}

struct gen_ctx {
	struct rt_bundle *b;
	struct rt_session *s;
	nx_tokdecoder *dec;
	nx_chat_template *chat;         /* --chat */
	const struct rt_gen_params *base;
	struct gen_out out;
};

/* A {"messages": [...]} line (its text is the list as JSON). */
static bool is_messages(const struct rt_input *in)
{
	return in->obj && !json_object_get(in->obj, "text") && !json_object_get(in->obj, "prompt") &&
	       json_is_array(json_object_get(in->obj, "messages"));
}

/* The chat prompt of an input (*out for free()); 0, NX_ENOMEM, or another
 * code with the template's complaint in err (this prompt's problem). */
static int chat_prompt(char **out, size_t *len, const struct gen_ctx *c,
		       const struct rt_input *in, nx_error *err)
{
	json_t *one = NULL;
	char *msgs = NULL;
	int rc;

	if (!is_messages(in)) {
		one = json_pack("[{s:s,s:s%}]", "role", "user", "content", in->text, in->len);
		if (!one || !(msgs = json_dumps(one, JSON_COMPACT))) {
			json_decref(one);
			return NX_ENOMEM;
		}
		json_decref(one);
	}
	rc = nx_chat_template_render(c->chat, msgs ? msgs : in->text, msgs ? strlen(msgs) : in->len,
				     true, out, len, err);
	free(msgs);
	return rc;
}

/* One prompt: generate and print; a per-request problem is printed in its
 * place and counted. */
static int one(void *vctx, const struct rt_input *in, nx_error *err)
{
	struct gen_ctx *c = vctx;
	struct rt_gen_params p = *c->base;
	struct rt_gen_result res;
	const char *why = NULL;
	char *prompt = NULL, msg[NX_ERROR_MSG_MAX + 64];
	size_t plen = 0;
	int rc;

	memset(&res, 0, sizeof(res));
	c->out.n++;
	if (!in->text)
		why = in->error;
	else if (is_messages(in) && !c->chat)
		why = "a \"messages\" line needs --chat";
	else if (in->obj)
		from_line(&p, in->obj, &why);
	if (!why && c->chat && (rc = chat_prompt(&prompt, &plen, c, in, err))) {
		if (rc == NX_ENOMEM)
			return rc;
		snprintf(msg, sizeof(msg), "the chat template cannot render these messages: %s",
			 err->message);
		why = msg;
	}
	p.rendered = prompt != NULL;
	if (why) {
		c->out.errors++;
		if (c->out.json)
			return print_json(json_pack("{s:s,s:s}", "error", why, "code", "bad-request")) ?
			       nx_error_set(err, NX_EIO, NULL, 0, -1, "cannot write the output") : 0;
		fprintf(stderr, "nexus_cli generate: prompt %zu: error: %s\n", c->out.n, why);
		return 0;
	}
	rc = rt_generate(c->s, c->b, c->dec, prompt ? prompt : in->text, prompt ? plen : in->len, &p,
			 c->out.json ? NULL : put_piece, NULL, &res, err);
	if (rc)
		goto out;
	if (res.error) {
		c->out.errors++;
		if (c->out.json)
			rc = print_json(json_pack("{s:s,s:s}", "error", res.error, "code", res.code));
		else
			fprintf(stderr, "nexus_cli generate: prompt %zu: error: %s: %s\n", c->out.n,
				res.code, res.error);
	} else if (c->out.json) {
		rc = print_json(json_pack("{s:o,s:s%,s:s,s:I,s:I,s:f,s:f}",
					  "ids", rt_int_list(res.ids, res.nids), "text", res.text, res.len,
					  "finish_reason", res.finish,
					  "prompt_tokens", (json_int_t)res.prompt_tokens,
					  "completion_tokens", (json_int_t)res.nids,
					  "ttft_ms", res.ttft_ms, "tokens_per_s", res.tokens_per_s));
	} else {
		rc = fputc('\n', stdout) == EOF || fflush(stdout) ? NX_EIO : 0;
	}
	if (rc)
		rc = rc == NX_ENOMEM ? nx_error_oom(err, NULL)
		     : nx_error_set(err, NX_EIO, NULL, 0, -1, "cannot write the output");
out:
	free(prompt);
	rt_gen_result_release(&res);
	return rc;
}

int rt_gen_main(struct rt_bundle *b, struct rt_session *s, const struct rt_args *a, bool json)
{
	struct gen_ctx c = { b, s, NULL, NULL, NULL, { json, !json, 0, 0 } };
	struct rt_gen_params p;
	struct rt_reader *r = NULL;
	struct rt_input in;
	char why[300];
	nx_error err;
	size_t i;
	int rc;

	nx_error_clear(&err);
	if ((rc = rt_gen_defaults(&p, b, &err)))
		return rt_fail("generate", &err);
	if (from_flags(&p, a, why, sizeof(why))) {
		fprintf(stderr, "nexus_cli generate: %s\ntry 'nexus_cli generate --help'\n", why);
		return 2;
	}
	c.base = &p;
	if (a->chat && (rc = rt_chat_load(&c.chat, b, true, &err)))
		return rt_fail("generate", &err);
	if ((rc = nx_tokdecoder_new(&c.dec, b->tok, RT_TOKENIZER, &err))) {
		nx_chat_template_free(c.chat);
		return rt_fail("generate", &err);
	}
	for (i = 0; !rc && i < a->ntexts; i++) {
		memset(&in, 0, sizeof(in));
		in.text = a->texts[i];
		in.len = strlen(a->texts[i]);
		rc = one(&c, &in, &err);
	}
	if (!rc && a->input && !(rc = rt_reader_open(&r, a->input, &err))) {
		while ((rc = rt_reader_next(r, &in, &err)) == 1) {
			rc = one(&c, &in, &err);
			rt_input_release(&in);
			if (rc)
				break;
		}
		if (rc == NX_ENOMEM)
			nx_error_oom(&err, NULL);
		rt_reader_free(r);
	}
	nx_tokdecoder_free(c.dec);
	nx_chat_template_free(c.chat);
	if (rc)
		return rt_fail("generate", &err);
	if (c.out.errors) {
		fprintf(stderr, "nexus_cli generate: %zu of %zu prompts failed\n", c.out.errors,
			c.out.n);
		return 3;
	}
	return 0;
}

int rt_cmd_generate(const struct rt_verb *v, int argc, char **argv)
{
	struct rt_session *s = NULL;
	struct rt_bundle b;
	struct rt_args a;
	int rc;

	if ((rc = rt_parse(&a, v, argc, argv)))
		goto out;
	if (!a.ntexts && !a.input) {
		rc = rt_usage(v, "give --prompt TEXT or --input FILE (- for stdin)");
		goto out;
	}
	if ((rc = rt_start(&b, &s, v->name, &a, true)))
		goto out;
	if (b.set.task != RT_TASK_GENERATION) {
		fprintf(stderr, "nexus_cli generate: error: %s: the bundle's task is not generation; "
			"use nexus_cli run\n", RT_CONFIG);
		rc = 2;
	} else
		rc = rt_gen_main(&b, s, &a, a.json);
	rt_session_free(s);
	rt_bundle_release(&b);
out:
	free(a.texts);
	free(a.pairs);
	free(a.stops);
	return rc < 0 ? 0 : rc;
}

int rt_gen_selftest_ids(json_t **out, struct rt_session *s, struct rt_bundle *b, const char *text,
			size_t len, nx_error *err)
{
	struct rt_gen_params p;
	struct rt_gen_result res;
	nx_tokdecoder *dec = NULL;
	int rc;

	if ((rc = rt_gen_defaults(&p, b, err)))
		return rc;
	p.do_sample = false;
	p.max_new_tokens = RT_SELFTEST_GEN_TOKENS;
	p.repetition_penalty = 1;
	p.nstop = 0;
	if ((rc = nx_tokdecoder_new(&dec, b->tok, RT_TOKENIZER, err)))
		return rc;
	rc = rt_generate(s, b, dec, text, len, &p, NULL, NULL, &res, err);
	if (!rc && res.error)
		rc = nx_error_set(err, NX_ECHECK, NULL, 0, -1, "selftest text \"%.60s\": %s: %s", text,
				  res.code, res.error);
	if (!rc && !(*out = rt_int_list(res.ids, res.nids)))
		rc = nx_error_oom(err, NULL);
	rt_gen_result_release(&res);
	nx_tokdecoder_free(dec);
	return rc;
}

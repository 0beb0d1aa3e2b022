/*
 * verify_tokjson.c - tokenizer.json for the leak budget: the file must
 * follow the schema of the tokenizer types the runtime reads (Hugging Face
 * tokenizers' WordPiece family), so every string in it is either a token
 * (judged as one) or a short setting.  An unknown key or type, or a long
 * string where a setting belongs, is a FAIL: extra keys are where a
 * tensor's encoding would otherwise sit unread by the runtime.
 */
#include "verify_internal.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "nexus/budget.h"

#define CHECK NX_CHECK_BUDGET
#define SETTING_MAX 32     /* bytes of a string that is a setting, not a token */
#define CTX_MAX 160
#define DEPTH_MAX 16

/*
 * Allowed keys per context.  A context is the JSON path with array indices
 * as "*" and, for an object with a "type", ":Type" appended; "#" marks a
 * key whose value is a token (judged as one), "@" a map whose keys are
 * tokens (model.vocab, special_tokens).
 */
static const struct {
	const char *ctx, *keys;
} schema[] = {
	{"", "version truncation padding added_tokens normalizer pre_tokenizer post_processor "
	     "decoder model"},
	{"/truncation", "direction max_length strategy stride"},
	{"/padding", "strategy direction pad_to_multiple_of pad_id pad_type_id #pad_token"},
	{"/padding/strategy", "Fixed BatchLongest"},
	{"/added_tokens/*", "id #content single_word lstrip rstrip normalized special"},
	{"/normalizer:BertNormalizer", "type clean_text handle_chinese_chars strip_accents lowercase"},
	{"/normalizer:Lowercase", "type"},
	{"/normalizer:NFC", "type"},
	{"/normalizer:NFD", "type"},
	{"/normalizer:NFKC", "type"},
	{"/normalizer:NFKD", "type"},
	{"/normalizer:StripAccents", "type"},
	{"/normalizer:Sequence", "type normalizers"},
	{"/normalizer/normalizers/*:Lowercase", "type"},
	{"/normalizer/normalizers/*:NFC", "type"},
	{"/normalizer/normalizers/*:NFD", "type"},
	{"/normalizer/normalizers/*:NFKC", "type"},
	{"/normalizer/normalizers/*:NFKD", "type"},
	{"/normalizer/normalizers/*:StripAccents", "type"},
	{"/pre_tokenizer:BertPreTokenizer", "type"},
	{"/pre_tokenizer:Whitespace", "type"},
	{"/pre_tokenizer:WhitespaceSplit", "type"},
	{"/post_processor:BertProcessing", "type sep cls"},
	{"/post_processor:TemplateProcessing", "type single pair @special_tokens"},
	{"/post_processor/single/*", "SpecialToken Sequence"},
	{"/post_processor/pair/*", "SpecialToken Sequence"},
	{"/post_processor/single/*/SpecialToken", "#id type_id"},
	{"/post_processor/pair/*/SpecialToken", "#id type_id"},
	{"/post_processor/single/*/Sequence", "id type_id"},
	{"/post_processor/pair/*/Sequence", "id type_id"},
	{"/post_processor/special_tokens/*", "#id ids #tokens"},
	{"/decoder:WordPiece", "type #prefix cleanup"},
	{"/model:WordPiece", "type #unk_token #continuing_subword_prefix max_input_chars_per_word "
			     "@vocab"},
};

struct walk {
	struct vfy_ctx *c;
	const char *path;
	nx_budget_buf *b;
	nx_error *err;
	bool failed;
};

static const char *keys_of(const char *ctx)
{
	size_t i;

	for (i = 0; i < sizeof(schema) / sizeof(*schema); i++)
		if (!strcmp(schema[i].ctx, ctx))
			return schema[i].keys;
	return NULL;
}

/* The mark ('#', '@' or ' ') of key k in keys, or 0 when k is not there. */
static char key_mark(const char *keys, const char *k)
{
	size_t kl = strlen(k);
	const char *p = keys;

	while (*p) {
		char mark = *p == '#' || *p == '@' ? *p++ : ' ';
		size_t n = strcspn(p, " ");

		if (n == kl && !memcmp(p, k, n))
			return mark;
		p += n;
		p += *p == ' ';
	}
	return 0;
}

__attribute__((format(printf, 2, 3)))
static int fail(struct walk *w, const char *fmt, ...)
{
	const char *code = "tokenizer-schema";
	va_list ap;
	int rc;

	w->failed = true;
	va_start(ap, fmt);
	rc = nx_report_vadd(w->c->r, CHECK, NX_SEV_FAIL, code, w->path, 0, fmt, ap);
	va_end(ap);
	return rc;
}

static int token(struct walk *w, const char *s, size_t len)
{
	return nx_budget_add_token(w->b, s, len, NULL, w->err);
}

static int walk(struct walk *w, json_t *v, const char *ctx, const char *ptr, char mark,
		int depth);

/* A map whose keys are tokens: model.vocab (ids: position or charged). */
static int walk_map(struct walk *w, json_t *v, const char *ctx, const char *ptr, int depth)
{
	char sub[CTX_MAX];
	const char *k;
	json_t *x;
	long long pos = 0;
	int rc = 0;
	bool vocab = !strcmp(ptr, "/model/vocab");

	if (!json_is_object(v))
		return fail(w, "%s: %s must be an object", w->path, ptr);
	json_object_foreach(v, k, x) {
		if ((rc = token(w, k, strlen(k))))
			return rc;
		if (vocab) {
			char num[32];
			int n;

			if (!json_is_integer(x))
				return fail(w, "%s: an id of %s is not an integer", w->path, ptr);
			/* an id equal to its token's position is explained */
			if (json_integer_value(x) != pos++) {
				n = snprintf(num, sizeof(num), "%lld ", (long long)json_integer_value(x));
				if ((rc = nx_budget_add(w->b, num, (size_t)n, w->err)))
					return rc;
			}
			continue;
		}
		snprintf(sub, sizeof(sub), "%s/*", ctx);
		if ((rc = walk(w, x, sub, ptr, ' ', depth + 1)))
			return rc;
	}
	return 0;
}

static int walk_scalar(struct walk *w, json_t *v, const char *ptr, char mark)
{
	char num[64];
	int n;

	if (json_is_string(v)) {
		if (mark == '#')
			return token(w, json_string_value(v), json_string_length(v));
		if (json_string_length(v) > SETTING_MAX)
			return fail(w, "%s: a string of over 32 bytes at %s, where a setting belongs: "
				    "a tokenizer holds no free text", w->path, ptr);
		n = nx_budget_add(w->b, json_string_value(v), json_string_length(v), w->err);
		return n ? n : nx_budget_add(w->b, "\n", 1, w->err);
	}
	if (json_is_integer(v))
		n = snprintf(num, sizeof(num), "%lld\n", (long long)json_integer_value(v));
	else if (json_is_real(v))
		n = snprintf(num, sizeof(num), "%.17g\n", json_real_value(v));
	else
		return 0;   /* true, false, null: structure */
	return nx_budget_add(w->b, num, (size_t)n, w->err);
}

static int walk(struct walk *w, json_t *v, const char *ctx, const char *ptr, char mark,
		int depth)
{
	char sub[CTX_MAX], subptr[CTX_MAX], tctx[CTX_MAX];
	const char *keys, *k, *type;
	json_t *x;
	size_t i;
	int rc = 0;

	if (depth > DEPTH_MAX)
		return fail(w, "%s: nested too deep at %s", w->path, ptr);
	if (mark == '@')
		return walk_map(w, v, ctx, ptr, depth);
	if (json_is_array(v)) {
		snprintf(sub, sizeof(sub), "%s/*", ctx);
		json_array_foreach(v, i, x) {
			snprintf(subptr, sizeof(subptr), "%s/%zu", ptr, i);
			if ((rc = walk(w, x, sub, subptr, mark, depth + 1)))
				return rc;
		}
		return 0;
	}
	if (!json_is_object(v))
		return walk_scalar(w, v, ptr, mark);
	type = json_string_value(json_object_get(v, "type"));
	snprintf(tctx, sizeof(tctx), "%s%s%s", ctx, type ? ":" : "", type ? type : "");
	if (!(keys = keys_of(tctx)))
		return fail(w, "%s: %s is not a tokenizer part nexus_cli reads; unknown parts "
			    "are where data hides", w->path, type ? type : ptr);
	json_object_foreach(v, k, x) {
		char km = key_mark(keys, k);

		snprintf(subptr, sizeof(subptr), "%s/%s", ptr, k);
		if (!km)
			return fail(w, "%s: unknown key %s: a tokenizer.json holds only the keys "
				    "of the types nexus_cli reads", w->path, subptr);
		snprintf(sub, sizeof(sub), "%s/%s", ctx, k);
		if ((rc = walk(w, x, sub, subptr, km, depth + 1)))
			return rc;
	}
	return 0;
}

int nx_vfy__tokjson_residual(struct vfy_ctx *c, const char *path, const char *buf, size_t len,
			 nx_budget_buf *b, bool *failed, nx_error *err)
{
	struct walk w = {.c = c, .path = path, .b = b, .err = err};
	json_error_t je;
	json_t *root;
	int rc;

	*failed = true;
	if (nx_vfy__json_over_budget(buf, len))
		return 0;   /* json-over-budget, from check code */
	if (!(root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je)))
		return 0;   /* config-unparsable, from check code */
	if (!json_is_object(root))
		rc = fail(&w, "%s: %s is not a JSON object", path, "the document");
	else
		rc = walk(&w, root, "", "", ' ', 0);
	json_decref(root);
	*failed = w.failed;
	return rc;
}

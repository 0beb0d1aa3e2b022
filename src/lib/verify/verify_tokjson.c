/*
 * verify_tokjson.c - tokenizer.json for the leak budget: the file must
 * follow the schema of the tokenizer types the runtime reads (Hugging Face
 * tokenizers' models, normalizers, pre-tokenizers, post-processors and
 * decoders), so every string in it is either a vocabulary token (judged
 * as one), a token elsewhere (charged as its vocabulary id), a short
 * setting, a BPE merge the vocabulary explains, a Unigram score (a
 * parameter: bounded, in order, see walk_unigram) or a SentencePiece charsmap (explained
 * when it is one of spm_train's built-in rules, else charged in full).  An unknown key or type, or a long
 * string where a setting belongs, is a FAIL: extra keys are where a
 * tensor's encoding would otherwise sit unread by the runtime.
 */
#include "verify_internal.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "nexus/budget.h"
#include "util/strset_int.h"

#define CHECK NX_CHECK_BUDGET
#define SETTING_MAX 32     /* bytes of a string that is a setting, not a token */
#define CTX_MAX 160
#define DEPTH_MAX 40
#define CHARSMAP_MAX (8u << 20)  /* base64 bytes of a Precompiled charsmap */

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
	{"/normalizer:Nmt", "type"},
	{"/normalizer:ByteLevel", "type"},
	{"/normalizer:StripAccents", "type"},
	{"/normalizer:Strip", "type strip_left strip_right"},
	{"/normalizer:Replace", "type pattern #content"},
	{"/normalizer:Prepend", "type #prepend"},
	{"/normalizer:Precompiled", "type %precompiled_charsmap"},
	{"/normalizer:Sequence", "type normalizers"},
	{"/normalizer/pattern", "#String #Regex"},
	{"/pre_tokenizer:BertPreTokenizer", "type"},
	{"/pre_tokenizer:Whitespace", "type"},
	{"/pre_tokenizer:WhitespaceSplit", "type"},
	{"/pre_tokenizer:ByteLevel", "type add_prefix_space trim_offsets use_regex"},
	{"/pre_tokenizer:Metaspace", "type #replacement #str_rep prepend_scheme split "
				     "add_prefix_space"},
	{"/pre_tokenizer:Split", "type pattern behavior invert"},
	{"/pre_tokenizer:Punctuation", "type behavior"},
	{"/pre_tokenizer:Digits", "type individual_digits"},
	{"/pre_tokenizer:CharDelimiterSplit", "type #delimiter"},
	{"/pre_tokenizer:Sequence", "type pretokenizers"},
	{"/pre_tokenizer/pattern", "#String #Regex"},
	{"/post_processor:BertProcessing", "type #sep #cls"},
	{"/post_processor:RobertaProcessing", "type #sep #cls trim_offsets add_prefix_space"},
	{"/post_processor:ByteLevel", "type add_prefix_space trim_offsets use_regex"},
	{"/post_processor:Sequence", "type processors"},
	{"/post_processor:TemplateProcessing", "type single pair @special_tokens"},
	{"/post_processor/single/*", "SpecialToken Sequence"},
	{"/post_processor/pair/*", "SpecialToken Sequence"},
	{"/post_processor/single/*/SpecialToken", "#id type_id"},
	{"/post_processor/pair/*/SpecialToken", "#id type_id"},
	{"/post_processor/single/*/Sequence", "id type_id"},
	{"/post_processor/pair/*/Sequence", "id type_id"},
	{"/post_processor/special_tokens/*", "#id ids #tokens"},
	{"/decoder:WordPiece", "type #prefix cleanup"},
	{"/decoder:ByteLevel", "type add_prefix_space trim_offsets use_regex"},
	{"/decoder:Metaspace", "type #replacement #str_rep prepend_scheme split add_prefix_space"},
	{"/decoder:BPEDecoder", "type #suffix"},
	{"/decoder:ByteFallback", "type"},
	{"/decoder:Fuse", "type"},
	{"/decoder:Strip", "type #content start stop"},
	{"/decoder:Replace", "type pattern #content"},
	{"/decoder:CTC", "type #pad_token #word_delimiter_token cleanup"},
	{"/decoder:Sequence", "type decoders"},
	{"/decoder/pattern", "#String #Regex"},
	{"/model:WordPiece", "type #unk_token #continuing_subword_prefix max_input_chars_per_word "
			     "@vocab"},
	{"/model:WordLevel", "type #unk_token @vocab"},
	{"/model:BPE", "type dropout #unk_token #continuing_subword_prefix #end_of_word_suffix "
		       "fuse_unk byte_fallback ignore_merges @vocab $merges"},
	{"/model:Unigram", "type unk_id byte_fallback ~vocab"},
};

/*
 * The component lists whose members share their parent's schema: a
 * Sequence's children are normalizers (pre-tokenizers, ...) like the top one.
 */
static const struct {
	const char *key, *ctx;
} roots[] = {
	{"normalizer", "/normalizer"}, {"normalizers", "/normalizer"},
	{"pre_tokenizer", "/pre_tokenizer"}, {"pretokenizers", "/pre_tokenizer"},
	{"post_processor", "/post_processor"}, {"processors", "/post_processor"},
	{"decoder", "/decoder"}, {"decoders", "/decoder"},
};

/* SHA-256 of the charsmaps spm_train writes for its built-in rules
 * (sentencepiece 0.1.97): nmt_nfkc, nfkc, nmt_nfkc_cf, nfkc_cf. */
static const char *const known_charsmaps[] = {
	"51d3684747b35ef99cd4802f37cc1ee0c6bec4d060814f774efb1066d3c167f2",
	"557b5397b1133d8abb62f7923e5b53ee496d3e36b9f63fd42625077c33688a14",
	"6cec34e8016fd0d0a2da28b60b00e36b19a275df83786bf6b494bd033c708f83",
	"b30e4085ba1fad56d2401f4612419b6b3b42c5adc1e04f3aa1806399895d6bdd",
};

struct walk {
	struct vfy_ctx *c;
	const char *path;
	nx_budget_buf *b;
	json_t *vocab;      /* model.vocab when it is a map, else NULL */
	struct vfy_vocab_stream *vs;  /* the vocabulary stream (tier 2) */
	nx_budget_buf *merges;        /* its merge section, appended after the tokens */
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

/* The mark of key k in keys ('#' a token, '@' a map of tokens, '%' a
 * charsmap, '$' BPE merges, '~' a Unigram vocabulary, ' ' a setting), or
 * 0 when k is not there. */
static char key_mark(const char *keys, const char *k)
{
	size_t kl = strlen(k);
	const char *p = keys;

	while (*p) {
		char mark = strchr("#@%$~", *p) ? *p++ : ' ';
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
	enum nx_finding_code code = NX_F_TOKENIZER_SCHEMA;
	va_list ap;
	int rc;

	w->failed = true;
	va_start(ap, fmt);
	rc = nx_report_vadd(w->c->r, CHECK, NX_SEV_FAIL, code, w->path, 0, fmt, ap);
	va_end(ap);
	return rc;
}

/* A vocabulary entry (model.vocab's keys, Unigram pieces): judged as a
 * token, free when plausible (tier 1); a map or the loader keeps each one
 * once.  Whole, in the vocabulary stream (tier 2), in file order: an id
 * that is not its token's position is charged in the residual, so the two
 * together give the map back. */
static int token(struct walk *w, const char *s, size_t len)
{
	int rc = nx_budget_add_token(w->b, s, len, NULL, w->err);

	if (!rc)
		rc = nx_budget_add(w->vs->b, s, len, w->err);
	if (!rc)
		rc = nx_budget_add(w->vs->b, "\n", 1, w->err);
	w->vs->n += !rc;
	return rc;
}

/*
 * A token anywhere else (unk_token, sep, cls, added tokens, special tokens,
 * patterns): a reference to the vocabulary, charged as the id it names, or
 * in full when the vocabulary does not hold it.  Judging these as tokens
 * made every one free, and nothing stops such a position from repeating a
 * token or holding a list the runtime never reads (sep's [token, id] with
 * 30,000 more tokens after it: red team 5).
 */
static int setting_token(struct walk *w, const char *s, size_t len)
{
	char num[32];
	json_t *id = w->vocab && !memchr(s, 0, len) ? json_object_getn(w->vocab, s, len) : NULL;
	int n, rc;

	if (json_is_integer(id)) {
		n = snprintf(num, sizeof(num), "#%lld\n", (long long)json_integer_value(id));
		return nx_budget_add(w->b, num, (size_t)n, w->err);
	}
	rc = nx_budget_add(w->b, s, len, w->err);
	return rc ? rc : nx_budget_add(w->b, "\n", 1, w->err);
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
		if ((rc = vocab ? token(w, k, strlen(k)) : setting_token(w, k, strlen(k))))
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

/* A charsmap is explained when it is one of spm_train's; else by its
 * grammar (verify_charsmap.c): only what Unicode does not explain is charged. */
static int walk_charsmap(struct walk *w, json_t *v, const char *ptr)
{
	unsigned char md[32], *raw;
	char hex[65];
	size_t len = json_string_length(v), i;
	int n, rc;

	if (!json_is_string(v) || len > CHARSMAP_MAX || len % 4)
		return fail(w, "%s: %s is not a base64 charsmap", w->path, ptr);
	if (!(raw = malloc(len / 4 * 3 + 1)))
		return nx_error_oom(w->err, NULL);
	n = EVP_DecodeBlock(raw, (const unsigned char *)json_string_value(v), (int)len);
	if (n < 0) {
		free(raw);
		return fail(w, "%s: %s is not a base64 charsmap", w->path, ptr);
	}
	if (len && json_string_value(v)[len - 1] == '=')
		n--;
	if (len > 1 && json_string_value(v)[len - 2] == '=')
		n--;
	EVP_Digest(raw, (size_t)n, md, NULL, EVP_sha256(), NULL);
	for (i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	for (i = 0; i < sizeof(known_charsmaps) / sizeof(*known_charsmaps); i++)
		if (!strcmp(hex, known_charsmaps[i])) {
			free(raw);
			return 0;
		}
	{
		struct nx_vfy_charsmap_stats st;

		rc = nx_vfy__charsmap_residual(w->b, raw, (size_t)n, &st, w->err);
		if (!rc)
			rc = nx_report_add(w->c->r, CHECK, NX_SEV_INFO, NX_F_CHARSMAP_EXPLAINED, w->path,
					   0, "%s: %s maps %zu keys, %zu not as Unicode normalizes "
					   "them (charged), %zu stray bytes%s", w->path, ptr,
					   st.entries, st.unexplained, st.stray_bytes,
					   st.whole ? "; not a walkable trie: charged whole" : "");
	}
	free(raw);
	return rc;
}

/*
 * BPE merges: explained when both halves and their concatenation are in
 * the vocabulary and the merged tokens' ids rise with the rank (as trainers
 * write them); any other merge is charged verbatim, so that the order of
 * the list carries no free information.  What an explained merge still
 * chooses - which token it makes (the step from the last one's id) and
 * where it splits it - goes to the vocabulary stream's merge section as
 * two varints, an unexplained one as a 0 (its text is in the residual),
 * so the stream and the residual give the whole list back.
 */
static int walk_merges(struct walk *w, json_t *v, json_t *vocab, const char *ptr)
{
	json_int_t last = -1;
	json_t *m;
	size_t i;
	int rc;

	if (!json_is_array(v))
		return fail(w, "%s: %s must be a list", w->path, ptr);
	json_array_foreach(v, i, m) {
		const char *a = NULL, *b = NULL, *sp;
		char buf[1024];
		json_t *id;

		if (json_is_string(m) && (sp = strchr(json_string_value(m), ' ')) &&
		    (size_t)(sp - json_string_value(m)) < sizeof(buf)) {
			memcpy(buf, json_string_value(m), (size_t)(sp - json_string_value(m)));
			buf[sp - json_string_value(m)] = 0;
			a = buf;
			b = sp + 1;
		} else if (json_is_array(m) && json_array_size(m) == 2) {
			a = json_string_value(json_array_get(m, 0));
			b = json_string_value(json_array_get(m, 1));
		}
		if (!a || !b)
			return fail(w, "%s: %s/%zu is not a merge", w->path, ptr, i);
		{
			char cat[2048];

			snprintf(cat, sizeof(cat), "%s%s", a, b);
			id = json_object_get(vocab, cat);
		}
		if (json_object_get(vocab, a) && json_object_get(vocab, b) && json_is_integer(id) &&
		    json_integer_value(id) > last) {
			if ((rc = nx_budget_add_varint(w->merges,
						       (uint64_t)(json_integer_value(id) - last),
						       w->err)) ||
			    (rc = nx_budget_add_varint(w->merges, strlen(a), w->err)))
				return rc;
			last = json_integer_value(id);
			continue;
		}
		if ((rc = nx_budget_add(w->merges, "", 1, w->err)) ||
		    (rc = nx_budget_add(w->b, a, strlen(a), w->err)) ||
		    (rc = nx_budget_add(w->b, " ", 1, w->err)) ||
		    (rc = nx_budget_add(w->b, b, strlen(b), w->err)) ||
		    (rc = nx_budget_add(w->b, "\n", 1, w->err)))
			return rc;
	}
	return 0;
}

/*
 * A Unigram vocabulary: [piece, score] pairs.  The scores are the model's
 * parameters (SentencePiece's log-probabilities), not text: their values
 * are not charged, but their grammar is enforced and what it leaves free
 * is a stated capacity (docs/TRV.md, "Unigram scores"):
 *   - a score is finite and within [UNIGRAM_SCORE_MIN, 0], else FAIL;
 *   - a score that is not a float32 (SentencePiece stores float32;
 *     Hugging Face's own trainer keeps doubles) is charged its extra 4 bytes;
 *   - the pieces come in SentencePiece's order, score descending and, for
 *     equal scores, piece ascending (bytewise); a piece out of that order
 *     is charged its score's 4 bytes, so the order carries no free
 *     information (about log2(N) bits per misplaced piece).
 */
#define UNIGRAM_SCORE_MIN (-64.0)

static int piece_cmp(json_t *a, json_t *b)
{
	size_t la = json_string_length(a), lb = json_string_length(b);
	int c = memcmp(json_string_value(a), json_string_value(b), la < lb ? la : lb);

	return c ? c : (la > lb) - (la < lb);
}

/*
 * Each piece once: the loader keeps one of a repeated piece, but each copy
 * would count toward the vocabulary's N, whose 6 bytes a token of
 * allowance a repeated list brings for a few bytes of stream (review: the
 * list repeated at lower scores doubled N for 32 bytes).  SentencePiece
 * never writes a piece twice.
 */
static int walk_unigram(struct walk *w, json_t *v, const char *ptr)
{
	json_t *e, *prev_piece = NULL;
	struct strset seen = {0};
	double prev = 0;
	size_t i;
	int rc = 0;

	if (!json_is_array(v))
		return fail(w, "%s: %s must be a list", w->path, ptr);
	json_array_foreach(v, i, e) {
		json_t *p = json_array_get(e, 0), *sc = json_array_get(e, 1);
		bool added = true;
		double d;
		float f;

		if (!json_is_array(e) || json_array_size(e) != 2 || !json_is_string(p) ||
		    !json_is_number(sc)) {
			rc = fail(w, "%s: %s/%zu is not [piece, score]", w->path, ptr, i);
			break;
		}
		if (!memchr(json_string_value(p), 0, json_string_length(p)) &&
		    (rc = nx_strset_add(&seen, json_string_value(p), &added)))
			break;
		if (!added) {
			rc = fail(w, "%s: %s/%zu: a piece of %zu bytes listed twice; a Unigram "
				  "vocabulary lists each piece once", w->path, ptr, i,
				  json_string_length(p));
			break;
		}
		if ((rc = token(w, json_string_value(p), json_string_length(p))))
			break;
		d = json_number_value(sc);
		if (!(d <= 0 && d >= UNIGRAM_SCORE_MIN)) {
			rc = fail(w, "%s: %s/%zu: a Unigram score is a log-probability, from %g "
				  "to 0, not %g", w->path, ptr, i, UNIGRAM_SCORE_MIN, d);
			break;
		}
		f = (float)d;
		if ((double)f != d && (rc = nx_budget_add(w->b, (const char *)&d, 4, w->err)))
			break;
		if (prev_piece && !(d < prev || (d == prev && piece_cmp(prev_piece, p) < 0)) &&
		    (rc = nx_budget_add(w->b, (const char *)&f, sizeof(f), w->err)))
			break;
		prev = d;
		prev_piece = p;
	}
	nx_strset_release(&seen);
	return rc;
}

static int walk_scalar(struct walk *w, json_t *v, const char *ptr, char mark)
{
	char num[64];
	int n;

	if (json_is_string(v)) {
		if (mark == '#')
			return setting_token(w, json_string_value(v), json_string_length(v));
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
	if (mark == '%')
		return walk_charsmap(w, v, ptr);
	if (mark == '~')
		return walk_unigram(w, v, ptr);
	if (json_is_array(v)) {
		/* the members of a Sequence's list share the list's schema */
		for (i = 0; i < sizeof(roots) / sizeof(*roots); i++)
			if (!strcmp(ctx, roots[i].ctx))
				break;
		snprintf(sub, sizeof(sub), "%s%s", ctx, i < sizeof(roots) / sizeof(*roots) ? "" : "/*");
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
		if (km == '$') {
			if ((rc = walk_merges(w, x, json_object_get(v, "vocab"), subptr)))
				return rc;
			continue;
		}
		snprintf(sub, sizeof(sub), "%s/%s", ctx, k);
		for (i = 0; i < sizeof(roots) / sizeof(*roots); i++)
			if (!strcmp(k, roots[i].key) && (!*ctx || !strncmp(ctx, roots[i].ctx,
									   strlen(roots[i].ctx))))
				snprintf(sub, sizeof(sub), "%s", roots[i].ctx);
		if ((rc = walk(w, x, sub, subptr, km, depth + 1)))
			return rc;
	}
	return 0;
}

int nx_vfy__tokjson_residual(struct vfy_ctx *c, const char *path, const char *buf, size_t len,
			 nx_budget_buf *b, struct vfy_vocab_stream *vs, bool *failed,
			 nx_error *err)
{
	struct walk w = {.c = c, .path = path, .b = b, .vs = vs, .err = err};
	json_t *vocab;
	json_error_t je;
	json_t *root;
	int rc;

	*failed = true;
	if (nx_vfy__json_over_budget(buf, len))
		return 0;   /* json-over-budget, from check code */
	if (!(root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je)))
		return 0;   /* config-unparsable, from check code */
	if ((rc = nx_budget_buf_new(&w.merges, err)))
		goto out;
	if (!json_is_object(root)) {
		rc = fail(&w, "%s: %s is not a JSON object", path, "the document");
	} else {
		vocab = json_object_get(json_object_get(root, "model"), "vocab");
		w.vocab = json_is_object(vocab) ? vocab : NULL;
		rc = walk(&w, root, "", "", ' ', 0);
	}
	nx_budget_data(vs->b, &vs->tokjson_len);
	vs->tokjson_n = vs->n;
	if (!rc)
		rc = nx_budget_append(vs->b, w.merges, err);
out:
	nx_budget_buf_free(w.merges);
	json_decref(root);
	*failed = w.failed;
	return rc;
}

/*
 * load_steps.c - reading the normalizer, the pre-tokenizer and the
 * post-processor of a tokenizer.json.  Nesting of Sequences is capped
 * (NX_TOK_DEPTH_MAX); every regex is compiled here, so a pattern that does
 * not compile is a build-time error naming its JSON path.
 */
#include <jansson.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok_int.h"

/* The config error and the typed getter that load.c shares with the steps
 * (declared in tok_int.h). */
int nx_tok__cfg(nx_error *err, const char *path, const char *jpath, const char *fmt, ...)
{
	char msg[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return nx_error_set(err, NX_ECONFIG, path, 0, -1,
			    "%s: %s: %s (this is the tokenizer, not the model: the bundle's runtime "
			    "cannot reproduce it exactly)", path, jpath, msg);
}

int nx_tok__get_bool(bool *out, void *o, const char *key, const char *jpath, const char *path,
		     nx_error *err)
{
	json_t *obj = o;
	json_t *v = json_object_get(obj, key);

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_boolean(v))
		return nx_tok__cfg(err, path, jpath, "%s must be true or false", key);
	*out = json_is_true(v);
	return 0;
}

static int nomem(nx_error *err, const char *path)
{
	return nx_error_set(err, NX_ENOMEM, path, 0, -1, "out of memory loading %s", path);
}

/* {"String": s} or {"Regex": r} -> compiled */
static int pattern(struct tre *re, json_t *p, const char *jpath, const char *path, nx_error *err)
{
	json_t *s = json_object_get(p, "String"), *r = json_object_get(p, "Regex"), *v = s ? s : r;
	char why[300];

	if (!json_is_object(p) || !json_is_string(v) || (s && r))
		return nx_tok__cfg(err, path, jpath, "pattern must be {\"String\": ...} or {\"Regex\": ...}");
	if (json_string_length(v) > NX_TOK_REGEX_MAX)
		return nx_tok__cfg(err, path, jpath, "pattern is over %d bytes", NX_TOK_REGEX_MAX);
	if (s && !json_string_length(v))
		return nx_tok__cfg(err, path, jpath, "an empty String pattern is not supported");
	if (nx_tok__re_compile(re, json_string_value(v), json_string_length(v), s != NULL, why,
			       sizeof(why)))
		return nx_tok__cfg(err, path, jpath, "the regex does not compile: %s", why);
	return 0;
}

static int behavior(enum split_behavior *out, json_t *o, const char *jpath, const char *path,
		    nx_error *err)
{
	static const char *const names[] = { "Removed", "Isolated", "MergedWithPrevious",
					     "MergedWithNext", "Contiguous" };
	const char *b = json_string_value(json_object_get(o, "behavior"));
	size_t i;

	if (!b)
		return nx_tok__cfg(err, path, jpath, "behavior is missing");
	for (i = 0; i < 5; i++)
		if (!strcmp(b, names[i])) {
			*out = (enum split_behavior)i;
			return 0;
		}
	return nx_tok__cfg(err, path, jpath, "behavior '%.40s' is not one of Removed, Isolated, "
			   "MergedWithPrevious, MergedWithNext, Contiguous", b);
}

static int charsmap(struct tnorm *n, json_t *o, const char *jpath, const char *path, nx_error *err)
{
	json_t *v = json_object_get(o, "precompiled_charsmap");
	size_t len = json_string_length(v), blen, trie_bytes;
	unsigned char *raw;
	int got;

	if (!json_is_string(v))
		return nx_tok__cfg(err, path, jpath, "precompiled_charsmap must be a base64 string");
	if (len > NX_TOK_CHARSMAP_MAX / 3 * 4 + 4)
		return nx_tok__cfg(err, path, jpath, "precompiled_charsmap is over %u bytes",
				   NX_TOK_CHARSMAP_MAX);
	if (!(raw = malloc(len / 4 * 3 + 4)))
		return nomem(err, path);
	got = len ? EVP_DecodeBlock(raw, (const unsigned char *)json_string_value(v), (int)len) : 0;
	if (got < 0 || len % 4) {
		free(raw);
		return nx_tok__cfg(err, path, jpath, "precompiled_charsmap is not base64");
	}
	blen = (size_t)got;
	/* EVP_DecodeBlock counts the padding as zero bytes */
	if (len >= 1 && json_string_value(v)[len - 1] == '=')
		blen--;
	if (len >= 2 && json_string_value(v)[len - 2] == '=')
		blen--;
	if (blen < 4) {
		free(raw);
		return nx_tok__cfg(err, path, jpath, "precompiled_charsmap is too short");
	}
	trie_bytes = raw[0] | (size_t)raw[1] << 8 | (size_t)raw[2] << 16 | (size_t)raw[3] << 24;
	if (trie_bytes % 4 || trie_bytes > blen - 4) {
		free(raw);
		return nx_tok__cfg(err, path, jpath, "precompiled_charsmap has a bad trie size");
	}
	n->trie_n = trie_bytes / 4;
	n->blob_len = blen - 4 - trie_bytes;
	if (!(n->trie = malloc(trie_bytes + 4)) || !(n->blob = malloc(n->blob_len + 1))) {
		free(raw);
		return nomem(err, path);
	}
	for (size_t i = 0; i < n->trie_n; i++) {
		const unsigned char *q = raw + 4 + 4 * i;

		n->trie[i] = q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24;
	}
	memcpy(n->blob, raw + 4 + trie_bytes, n->blob_len);
	free(raw);
	return 0;
}

int nx_tok__load_normalizer(nx_tokenizer *t, struct tnorm *n, void *json, const char *jpath,
			    int depth, const char *path, nx_error *err)
{
	static const struct { const char *name; enum norm_type type; } simple[] = {
		{ "NFC", N_NFC }, { "NFD", N_NFD }, { "NFKC", N_NFKC }, { "NFKD", N_NFKD },
		{ "Lowercase", N_LOWER }, { "StripAccents", N_STRIP_ACCENTS }, { "Nmt", N_NMT },
		{ "ByteLevel", N_BYTELEVEL },
	};
	json_t *o = json, *v;
	const char *type = json_string_value(json_object_get(o, "type"));
	char jp[256];
	size_t i;
	int rc;

	if (depth > NX_TOK_DEPTH_MAX)
		return nx_tok__cfg(err, path, jpath, "Sequences nested over %d deep", NX_TOK_DEPTH_MAX);
	if (!json_is_object(o) || !type)
		return nx_tok__cfg(err, path, jpath, "must be an object with a type");
	for (i = 0; i < sizeof(simple) / sizeof(simple[0]); i++)
		if (!strcmp(type, simple[i].name)) {
			n->type = simple[i].type;
			return 0;
		}
	if (!strcmp(type, "BertNormalizer")) {
		n->type = N_BERT;
		n->clean_text = n->chinese = n->lowercase = true;
		snprintf(jp, sizeof(jp), "%s", jpath);
		if ((rc = nx_tok__get_bool(&n->clean_text, o, "clean_text", jp, path, err)) ||
		    (rc = nx_tok__get_bool(&n->chinese, o, "handle_chinese_chars", jp, path, err)) ||
		    (rc = nx_tok__get_bool(&n->lowercase, o, "lowercase", jp, path, err)))
			return rc;
		v = json_object_get(o, "strip_accents");
		if (!v || json_is_null(v))
			n->strip_accents = n->lowercase;
		else if (json_is_boolean(v))
			n->strip_accents = json_is_true(v);
		else
			return nx_tok__cfg(err, path, jp, "strip_accents must be true, false or null");
		return 0;
	}
	if (!strcmp(type, "Strip")) {
		n->type = N_STRIP;
		n->left = n->right = true;
		return nx_tok__get_bool(&n->left, o, "strip_left", jpath, path, err) ||
		       nx_tok__get_bool(&n->right, o, "strip_right", jpath, path, err) ? NX_ECONFIG : 0;
	}
	if (!strcmp(type, "Replace") || !strcmp(type, "Prepend")) {
		const char *key = type[0] == 'R' ? "content" : "prepend";

		n->type = type[0] == 'R' ? N_REPLACE : N_PREPEND;
		v = json_object_get(o, key);
		if (!json_is_string(v) || json_string_length(v) > NX_TOK_REGEX_MAX)
			return nx_tok__cfg(err, path, jpath, "%s must be a string", key);
		n->str_len = json_string_length(v);
		if (!(n->str = malloc(n->str_len + 1)))
			return nomem(err, path);
		memcpy(n->str, json_string_value(v), n->str_len + 1);
		if (n->type == N_REPLACE) {
			snprintf(jp, sizeof(jp), "%s.pattern", jpath);
			return pattern(&n->re, json_object_get(o, "pattern"), jp, path, err);
		}
		return 0;
	}
	if (!strcmp(type, "Precompiled")) {
		n->type = N_PRECOMPILED;
		snprintf(jp, sizeof(jp), "%s.precompiled_charsmap", jpath);
		return charsmap(n, o, jp, path, err);
	}
	if (!strcmp(type, "Sequence")) {
		json_t *kids = json_object_get(o, "normalizers"), *k;

		n->type = N_SEQ;
		if (!json_is_array(kids) || json_array_size(kids) > NX_TOK_STEPS_MAX)
			return nx_tok__cfg(err, path, jpath, "normalizers must be a list of at most %d",
					   NX_TOK_STEPS_MAX);
		if (!(n->kids = calloc(json_array_size(kids) + 1, sizeof(*n->kids))))
			return nomem(err, path);
		json_array_foreach(kids, i, k) {
			snprintf(jp, sizeof(jp), "%s.normalizers[%zu]", jpath, i);
			n->nkids = i + 1;
			if ((rc = nx_tok__load_normalizer(t, &n->kids[i], k, jp, depth + 1, path, err)))
				return rc;
		}
		return 0;
	}
	snprintf(jp, sizeof(jp), "%s.type", jpath);
	return nx_tok__cfg(err, path, jp, "'%.40s' is not supported", type);
}

/* GPT-2's pattern, which ByteLevel(use_regex) splits with. */
static const char GPT2_RE[] =
	"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

int nx_tok__load_pre(nx_tokenizer *t, struct tpre *p, void *json, const char *jpath,
		     int depth, const char *path, nx_error *err)
{
	json_t *o = json, *v;
	const char *type = json_string_value(json_object_get(o, "type"));
	char jp[256], why[300];
	size_t i;
	int rc;

	if (depth > NX_TOK_DEPTH_MAX)
		return nx_tok__cfg(err, path, jpath, "Sequences nested over %d deep", NX_TOK_DEPTH_MAX);
	if (!json_is_object(o) || !type)
		return nx_tok__cfg(err, path, jpath, "must be an object with a type");
	if (!strcmp(type, "BertPreTokenizer")) {
		p->type = P_BERT;
		return 0;
	}
	if (!strcmp(type, "Whitespace")) {
		p->type = P_WHITESPACE;
		return 0;
	}
	if (!strcmp(type, "WhitespaceSplit")) {
		p->type = P_WHITESPACE_SPLIT;
		return 0;
	}
	if (!strcmp(type, "ByteLevel")) {
		p->type = P_BYTELEVEL;
		p->add_prefix_space = p->use_regex = true;
		if ((rc = nx_tok__get_bool(&p->add_prefix_space, o, "add_prefix_space", jpath, path, err)) ||
		    (rc = nx_tok__get_bool(&p->use_regex, o, "use_regex", jpath, path, err)))
			return rc;
		if (nx_tok__re_compile(&p->re, GPT2_RE, sizeof(GPT2_RE) - 1, false, why, sizeof(why)))
			return nx_tok__cfg(err, path, jpath, "GPT-2 regex: %s", why);
		return 0;
	}
	if (!strcmp(type, "Metaspace")) {
		const char *rep, *scheme;
		size_t k = 0;
		bool aps = true;

		p->type = P_METASPACE;
		p->split = true;
		p->prepend = PREPEND_ALWAYS;
		v = json_object_get(o, "replacement");
		rep = json_string_value(v);
		if (!rep || !json_string_length(v) || json_string_length(v) > 4)
			return nx_tok__cfg(err, path, jpath, "replacement must be one character");
		p->delim = nx_tok__next(rep, json_string_length(v), &k);
		if (k != json_string_length(v))
			return nx_tok__cfg(err, path, jpath, "replacement must be one character");
		memcpy(p->rep, rep, k);
		p->rep_len = k;
		if ((rc = nx_tok__get_bool(&p->split, o, "split", jpath, path, err)))
			return rc;
		scheme = json_string_value(json_object_get(o, "prepend_scheme"));
		if (scheme) {
			if (!strcmp(scheme, "always"))
				p->prepend = PREPEND_ALWAYS;
			else if (!strcmp(scheme, "first"))
				p->prepend = PREPEND_FIRST;
			else if (!strcmp(scheme, "never"))
				p->prepend = PREPEND_NEVER;
			else
				return nx_tok__cfg(err, path, jpath, "prepend_scheme '%.40s' is not always, "
						   "first or never", scheme);
		} else {
			if ((rc = nx_tok__get_bool(&aps, o, "add_prefix_space", jpath, path, err)))
				return rc;
			p->prepend = aps ? PREPEND_ALWAYS : PREPEND_NEVER;
		}
		return 0;
	}
	if (!strcmp(type, "Split")) {
		p->type = P_SPLIT;
		snprintf(jp, sizeof(jp), "%s.pattern", jpath);
		if ((rc = nx_tok__get_bool(&p->invert, o, "invert", jpath, path, err)) ||
		    (rc = behavior(&p->behavior, o, jpath, path, err)) ||
		    (rc = pattern(&p->re, json_object_get(o, "pattern"), jp, path, err)))
			return rc;
		return 0;
	}
	if (!strcmp(type, "Punctuation")) {
		p->type = P_PUNCT;
		p->behavior = B_ISOLATED;
		if (json_object_get(o, "behavior"))
			return behavior(&p->behavior, o, jpath, path, err);
		return 0;
	}
	if (!strcmp(type, "Digits")) {
		p->type = P_DIGITS;
		return nx_tok__get_bool(&p->individual_digits, o, "individual_digits", jpath, path, err);
	}
	if (!strcmp(type, "CharDelimiterSplit")) {
		const char *d;
		size_t k = 0;

		p->type = P_CHARDELIM;
		v = json_object_get(o, "delimiter");
		d = json_string_value(v);
		if (!d || !json_string_length(v))
			return nx_tok__cfg(err, path, jpath, "delimiter must be one character");
		p->delim = nx_tok__next(d, json_string_length(v), &k);
		if (k != json_string_length(v))
			return nx_tok__cfg(err, path, jpath, "delimiter must be one character");
		return 0;
	}
	if (!strcmp(type, "Sequence")) {
		json_t *kids = json_object_get(o, "pretokenizers"), *k;

		p->type = P_SEQ;
		if (!json_is_array(kids) || json_array_size(kids) > NX_TOK_STEPS_MAX)
			return nx_tok__cfg(err, path, jpath, "pretokenizers must be a list of at most %d",
					   NX_TOK_STEPS_MAX);
		if (!(p->kids = calloc(json_array_size(kids) + 1, sizeof(*p->kids))))
			return nomem(err, path);
		json_array_foreach(kids, i, k) {
			snprintf(jp, sizeof(jp), "%s.pretokenizers[%zu]", jpath, i);
			p->nkids = i + 1;
			if ((rc = nx_tok__load_pre(t, &p->kids[i], k, jp, depth + 1, path, err)))
				return rc;
		}
		return 0;
	}
	snprintf(jp, sizeof(jp), "%s.type", jpath);
	return nx_tok__cfg(err, path, jp, "'%.40s' is not supported", type);
}

static int tmpl_add(struct ttemplate *tp, int seq, uint32_t type_id, const int64_t *ids,
		    size_t nids)
{
	struct titem *it;

	if (NX_ARRAY_PUSH(tp->items, tp->cap, tp->n))
		return NX_ENOMEM;
	it = &tp->items[tp->n++];
	it->seq = seq;
	it->type_id = type_id;
	it->ids = NULL;
	it->nids = nids;
	if (nids) {
		if (!(it->ids = malloc(nids * sizeof(*ids))))
			return NX_ENOMEM;
		memcpy(it->ids, ids, nids * sizeof(*ids));
		tp->nspecial += nids;
	}
	return 0;
}

int nx_tok__bert_template(nx_tokenizer *t, int64_t cls, int64_t sep, bool roberta);
int nx_tok__bert_template(nx_tokenizer *t, int64_t cls, int64_t sep, bool roberta)
{
	uint32_t b = roberta ? 0 : 1;

	t->has_post = true;
	if (tmpl_add(&t->single, -1, 0, &cls, 1) || tmpl_add(&t->single, 0, 0, NULL, 0) ||
	    tmpl_add(&t->single, -1, 0, &sep, 1) ||
	    tmpl_add(&t->pair, -1, 0, &cls, 1) || tmpl_add(&t->pair, 0, 0, NULL, 0) ||
	    tmpl_add(&t->pair, -1, 0, &sep, 1) ||
	    (roberta && tmpl_add(&t->pair, -1, 0, &sep, 1)) ||
	    tmpl_add(&t->pair, 1, b, NULL, 0) || tmpl_add(&t->pair, -1, b, &sep, 1))
		return NX_ENOMEM;
	return 0;
}

static int template(nx_tokenizer *t, struct ttemplate *tp, json_t *list, json_t *specials,
		    const char *jpath, const char *path, nx_error *err)
{
	json_t *item;
	size_t i, k;
	char jp[128];

	if (!json_is_array(list))
		return nx_tok__cfg(err, path, jpath, "must be a list");
	json_array_foreach(list, i, item) {
		json_t *st = json_object_get(item, "SpecialToken"), *sq = json_object_get(item, "Sequence");
		json_t *obj = st ? st : sq, *ty = json_object_get(obj, "type_id"), *ids, *id;
		const char *name = json_string_value(json_object_get(obj, "id"));
		uint32_t type_id = 0;
		int64_t buf[NX_TOKENIZER_SPECIAL_MAX];

		snprintf(jp, sizeof(jp), "%s[%zu]", jpath, i);
		if (!json_is_object(obj) || (st && sq) || !name)
			return nx_tok__cfg(err, path, jp, "must be {\"SpecialToken\": ...} or "
					   "{\"Sequence\": ...} with an id");
		if (ty && !json_is_null(ty)) {
			if (!json_is_integer(ty) || json_integer_value(ty) < 0 ||
			    json_integer_value(ty) > 255)
				return nx_tok__cfg(err, path, jp, "type_id must be a small integer");
			type_id = (uint32_t)json_integer_value(ty);
		}
		if (sq) {
			if (strcmp(name, "A") && strcmp(name, "B"))
				return nx_tok__cfg(err, path, jp, "Sequence id must be A or B");
			if (tmpl_add(tp, name[0] == 'A' ? 0 : 1, type_id, NULL, 0))
				return nomem(err, path);
			continue;
		}
		ids = json_object_get(json_object_get(specials, name), "ids");
		if (!json_is_array(ids) || json_array_size(ids) > NX_TOKENIZER_SPECIAL_MAX)
			return nx_tok__cfg(err, path, "post_processor.special_tokens",
					   "has no ids for '%.40s'", name);
		json_array_foreach(ids, k, id) {
			if (!json_is_integer(id) || json_integer_value(id) < 0 ||
			    json_integer_value(id) > INT32_MAX)
				return nx_tok__cfg(err, path, "post_processor.special_tokens",
						   "'%.40s' ids must be integers", name);
			buf[k] = json_integer_value(id);
		}
		if (tp->nspecial + json_array_size(ids) > NX_TOKENIZER_SPECIAL_MAX * 2)
			return nx_error_set(err, NX_ELIMIT, path, 0, -1,
					    "%s: %s: more than %d special tokens (tokenizer)", path,
					    jpath, NX_TOKENIZER_SPECIAL_MAX * 2);
		if (tmpl_add(tp, -1, type_id, buf, json_array_size(ids)))
			return nomem(err, path);
	}
	return 0;
}

static int token_id_of(json_t *pair, int64_t *out)
{
	json_t *id = json_array_get(pair, 1);

	if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) > INT32_MAX)
		return -1;
	*out = json_integer_value(id);
	return 0;
}

static int post_one(nx_tokenizer *t, json_t *p, const char *jpath, const char *path,
		    nx_error *err)
{
	const char *type = json_string_value(json_object_get(p, "type"));
	char jp[128];
	int rc;

	if (!type)
		return nx_tok__cfg(err, path, jpath, "must be an object with a type");
	if (!strcmp(type, "ByteLevel"))
		return 0;  /* offsets only */
	if (t->has_post)
		return nx_tok__cfg(err, path, jpath, "a second processor that adds tokens is not "
				   "supported");
	if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) {
		int64_t cls, sep;

		if (token_id_of(json_object_get(p, "cls"), &cls) ||
		    token_id_of(json_object_get(p, "sep"), &sep))
			return nx_tok__cfg(err, path, jpath, "needs cls and sep as [token, id]");
		t->roberta_types = type[0] == 'R';
		return nx_tok__bert_template(t, cls, sep, type[0] == 'R') ? nomem(err, path) : 0;
	}
	if (!strcmp(type, "TemplateProcessing")) {
		json_t *sp = json_object_get(p, "special_tokens");

		t->has_post = true;
		snprintf(jp, sizeof(jp), "%s.single", jpath);
		if ((rc = template(t, &t->single, json_object_get(p, "single"), sp, jp, path, err)))
			return rc;
		snprintf(jp, sizeof(jp), "%s.pair", jpath);
		if (json_object_get(p, "pair") && !json_is_null(json_object_get(p, "pair")))
			return template(t, &t->pair, json_object_get(p, "pair"), sp, jp, path, err);
		return 0;  /* no pair template: a pair is refused at encode */
	}
	snprintf(jp, sizeof(jp), "%s.type", jpath);
	return nx_tok__cfg(err, path, jp, "'%.40s' is not supported", type);
}

int nx_tok__load_post(nx_tokenizer *t, void *json, const char *path, nx_error *err)
{
	json_t *p = json, *kids, *k;
	size_t i;
	char jp[128];
	int rc;

	if (!p || json_is_null(p))
		return 0;
	if (!json_is_object(p))
		return nx_tok__cfg(err, path, "post_processor", "must be an object");
	if (!strcmp(json_string_value(json_object_get(p, "type")) ?: "", "Sequence")) {
		kids = json_object_get(p, "processors");
		if (!json_is_array(kids) || json_array_size(kids) > NX_TOK_STEPS_MAX)
			return nx_tok__cfg(err, path, "post_processor.processors", "must be a list");
		json_array_foreach(kids, i, k) {
			snprintf(jp, sizeof(jp), "post_processor.processors[%zu]", i);
			if (json_is_object(k) &&
			    !strcmp(json_string_value(json_object_get(k, "type")) ?: "", "Sequence"))
				return nx_tok__cfg(err, path, jp, "a nested Sequence is not supported");
			if ((rc = post_one(t, k, jp, path, err)))
				return rc;
		}
		return 0;
	}
	return post_one(t, p, "post_processor", path, err);
}

/*
 * load.c - reading a Hugging Face tokenizer.json or a plain vocab.txt into
 * an nx_tokenizer: the top level, the model, added tokens, truncation and
 * padding (load_steps.c reads normalizers, pre-tokenizers and the
 * post-processor).  Every field that changes the ids is implemented or
 * refused by name: a tokenizer that encodes differently from the one the
 * model was trained with gives wrong answers without any other sign.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tok_int.h"

#define ID_MAX (1u << 23)  /* largest token id */

static int nomem(nx_error *err, const char *path)
{
	return nx_error_set(err, NX_ENOMEM, path, 0, -1, "out of memory loading %s", path);
}

/* A string setting: NULL when absent or null; error when not a string or too long. */
static int get_str(const char **out, json_t *obj, const char *key, size_t max,
		   const char *jpath, const char *path, nx_error *err)
{
	json_t *v = json_object_get(obj, key);

	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v))
		return nx_tok__cfg(err, path, jpath, "%s must be a string", key);
	if (json_string_length(v) >= max)
		return nx_tok__cfg(err, path, jpath, "%s is over %zu bytes", key, max - 1);
	*out = json_string_value(v);
	return 0;
}

/* Record id -> token for id_to_token; duplicate ids are refused. */
static int map_id(nx_tokenizer *t, int64_t id, const char *tok, size_t len, const char *jpath,
		  const char *path, nx_error *err)
{
	if (id < 0 || id >= (int64_t)ID_MAX)
		return nx_tok__cfg(err, path, jpath, "id %lld is out of range (0 to %u)",
				   (long long)id, ID_MAX - 1);
	if ((size_t)id >= t->id_n) {
		/* two arrays of one length, t->id_n, zeroed past what was set */
		size_t na = t->id_n, nl = t->id_n;

		if (nx_array_grow(&t->id_tok, &na, (size_t)id + 1, sizeof(*t->id_tok), ID_MAX) ||
		    nx_array_grow(&t->id_len, &nl, na, sizeof(*t->id_len), na))
			return nomem(err, path);
		memset(t->id_tok + t->id_n, 0, (na - t->id_n) * sizeof(*t->id_tok));
		memset(t->id_len + t->id_n, 0, (na - t->id_n) * sizeof(*t->id_len));
		t->id_n = na;
	}
	if (t->id_tok[id])
		return nx_tok__cfg(err, path, jpath, "id %lld is given to two tokens", (long long)id);
	t->id_tok[id] = tok;
	t->id_len[id] = (uint32_t)len;
	return 0;
}

/*
 * jansson cannot hold a NUL in an object key, and a vocabulary trained on
 * text with NUL characters has the token "\u0000".  parse_json writes such
 * escapes as U+10FFFF (a noncharacter, refused if the file has one itself)
 * and tokens get their NUL back here.
 */
#define NUL_SUB "\xf4\x8f\xbf\xbf"

static const char *nul_back_in(nx_tokenizer *t, struct tb *b, const char *tok, size_t *len)
{
	size_t i;

	if (!t->nul_sub || !memmem(tok, *len, NUL_SUB, 4))
		return tok;
	b->n = 0;
	for (i = 0; i < *len; i++) {
		if (i + 4 <= *len && !memcmp(tok + i, NUL_SUB, 4)) {
			nx_tok__tb_put(b, "", 1);
			i += 3;
		} else {
			nx_tok__tb_put(b, tok + i, 1);
		}
	}
	*len = b->n;
	return b->p ? b->p : tok;
}

static const char *nul_back(nx_tokenizer *t, const char *tok, size_t *len)
{
	return nul_back_in(t, &t->word, tok, len);
}

static int put_token(nx_tokenizer *t, const char *tok, size_t len, int64_t id,
		     const char *jpath, const char *path, nx_error *err)
{
	tok = nul_back(t, tok, &len);
	if (len > NX_TOKENIZER_TOKEN_MAX)
		return nx_error_set(err, NX_ELIMIT, path, 0, -1,
				    "%s: %s: a vocabulary entry is over %d bytes (tokenizer)", path,
				    jpath, NX_TOKENIZER_TOKEN_MAX);
	if (nx_vocab_find(&t->v, tok, len, NULL, 0) >= 0)
		return nx_tok__cfg(err, path, jpath, "the token '%.40s' is listed twice", tok);
	if (nx_vocab_put(&t->v, tok, len, id))
		return nomem(err, path);
	return 0;
}

/* After the vocabulary is final: id -> token from the arena. */
static int map_vocab_ids(nx_tokenizer *t, const char *jpath, const char *path, nx_error *err)
{
	size_t i;
	int rc;

	for (i = 0; i < t->v.n; i++)
		if ((rc = map_id(t, t->v.ent[i].id, t->v.arena + t->v.ent[i].off, t->v.ent[i].len,
				 jpath, path, err)))
			return rc;
	return 0;
}

static int vocab_object(nx_tokenizer *t, json_t *vocab, const char *path, nx_error *err)
{
	const char *key;
	json_t *val;
	int rc;

	if (!json_is_object(vocab))
		return nx_tok__cfg(err, path, "model.vocab", "must be an object of token: id");
	if (json_object_size(vocab) > NX_TOKENIZER_VOCAB_MAX)
		return nx_error_set(err, NX_ELIMIT, path, 0, -1,
				    "%s: model.vocab: over %u entries (tokenizer)", path,
				    NX_TOKENIZER_VOCAB_MAX);
	json_object_foreach(vocab, key, val) {
		if (!json_is_integer(val) || json_integer_value(val) < 0 ||
		    json_integer_value(val) >= (json_int_t)ID_MAX)
			return nx_tok__cfg(err, path, "model.vocab", "'%.40s' must have an id from 0 to %u",
					   key, ID_MAX - 1);
		if ((rc = put_token(t, key, strlen(key), json_integer_value(val), "model.vocab",
				    path, err)))
			return rc;
	}
	return map_vocab_ids(t, "model.vocab", path, err);
}

static int merge_parts(json_t *mg, const char **a, size_t *alen, const char **b, size_t *blen)
{
	if (json_is_string(mg)) {
		const char *s = json_string_value(mg), *sp = strchr(s, ' ');

		if (!sp || strchr(sp + 1, ' '))
			return -1;
		*a = s;
		*alen = (size_t)(sp - s);
		*b = sp + 1;
		*blen = strlen(sp + 1);
		return 0;
	}
	if (json_is_array(mg) && json_array_size(mg) == 2 && json_is_string(json_array_get(mg, 0)) &&
	    json_is_string(json_array_get(mg, 1))) {
		*a = json_string_value(json_array_get(mg, 0));
		*alen = json_string_length(json_array_get(mg, 0));
		*b = json_string_value(json_array_get(mg, 1));
		*blen = json_string_length(json_array_get(mg, 1));
		return 0;
	}
	return -1;
}

static int bpe_merges(nx_tokenizer *t, json_t *merges, const char *path, nx_error *err)
{
	struct tmodel *m = &t->m;
	size_t i, slots = 1024, plen = m->has_prefix ? m->prefix_len : 0;
	json_t *mg;
	char jp[64];

	if (!merges || json_is_null(merges))
		merges = json_array();
	else
		json_incref(merges);
	if (!json_is_array(merges)) {
		json_decref(merges);
		return nx_tok__cfg(err, path, "model.merges", "must be a list");
	}
	if (json_array_size(merges) > NX_TOK_MERGES_MAX) {
		json_decref(merges);
		return nx_error_set(err, NX_ELIMIT, path, 0, -1,
				    "%s: model.merges: over %u merges (tokenizer)", path,
				    NX_TOK_MERGES_MAX);
	}
	while (slots < json_array_size(merges) * 2)
		slots *= 2;
	if (!(m->merges = calloc(slots, sizeof(*m->merges)))) {
		json_decref(merges);
		return nomem(err, path);
	}
	m->merges_mask = slots - 1;
	/* 16 filter bits per merge slot pair: about 1 in 10 pairs that do not
	 * merge gets past it */
	if (!(m->merge_bits = calloc(slots / 4 + 1, sizeof(uint64_t)))) {
		json_decref(merges);
		return nomem(err, path);
	}
	m->merge_bits_mask = slots / 4 - 1;
	json_array_foreach(merges, i, mg) {
		const char *a, *b;
		size_t alen, blen;
		int64_t ia, ib, in;

		snprintf(jp, sizeof(jp), "model.merges[%zu]", i);
		if (merge_parts(mg, &a, &alen, &b, &blen)) {
			json_decref(merges);
			return nx_tok__cfg(err, path, jp, "must be \"left right\" or [left, right]");
		}
		a = nul_back_in(t, &t->word, a, &alen);
		b = nul_back_in(t, &t->word2, b, &blen);
		ia = nx_vocab_get2(&t->v, a, alen, NULL, 0);
		ib = nx_vocab_get2(&t->v, b, blen, NULL, 0);
		if (ia < 0 || ib < 0 || blen < plen) {
			json_decref(merges);
			return nx_tok__cfg(err, path, jp, "names a token missing from model.vocab");
		}
		in = nx_vocab_get2(&t->v, a, alen, b + plen, blen - plen);
		if (in < 0) {
			json_decref(merges);
			return nx_tok__cfg(err, path, jp, "merges into a token missing from model.vocab");
		}
		nx_tok__merge_put(m, (uint32_t)ia, (uint32_t)ib, (uint32_t)i, (uint32_t)in);
	}
	json_decref(merges);
	if (!(m->cache = calloc(NX_TOK_CACHE_SLOTS, sizeof(*m->cache))))
		return nomem(err, path);
	return 0;
}

static int unigram_vocab(nx_tokenizer *t, json_t *vocab, const char *path, nx_error *err)
{
	struct tmodel *m = &t->m;
	json_t *e;
	size_t i;
	char jp[64];
	int rc;

	if (!json_is_array(vocab))
		return nx_tok__cfg(err, path, "model.vocab", "must be a list of [piece, score]");
	if (json_array_size(vocab) > NX_TOKENIZER_VOCAB_MAX)
		return nx_error_set(err, NX_ELIMIT, path, 0, -1,
				    "%s: model.vocab: over %u entries (tokenizer)", path,
				    NX_TOKENIZER_VOCAB_MAX);
	if (!(m->scores = calloc(json_array_size(vocab) + 1, sizeof(*m->scores))))
		return nomem(err, path);
	m->min_score = 0;
	json_array_foreach(vocab, i, e) {
		json_t *p = json_array_get(e, 0), *sc = json_array_get(e, 1);

		snprintf(jp, sizeof(jp), "model.vocab[%zu]", i);
		if (!json_is_array(e) || json_array_size(e) != 2 || !json_is_string(p) ||
		    !json_is_number(sc))
			return nx_tok__cfg(err, path, jp, "must be [piece, score]");
		if ((rc = put_token(t, json_string_value(p), json_string_length(p), (int64_t)i, jp,
				    path, err)))
			return rc;
		m->scores[i] = json_number_value(sc);
		if (!i || m->scores[i] < m->min_score)
			m->min_score = m->scores[i];
	}
	return map_vocab_ids(t, "model.vocab", path, err);
}

static int parse_model(nx_tokenizer *t, json_t *m, const char *path, nx_error *err)
{
	const char *type = json_string_value(json_object_get(m, "type")), *unk = NULL, *s;
	struct tmodel *md = &t->m;
	json_t *v;
	int rc;

	if (!json_is_object(m))
		return nx_tok__cfg(err, path, "model", "is missing");
	if (!type) {
		/* serde's untagged model: guess as Hugging Face does */
		if (json_object_get(m, "merges"))
			type = "BPE";
		else if (json_is_array(json_object_get(m, "vocab")))
			type = "Unigram";
		else if (json_object_get(m, "continuing_subword_prefix") ||
			 json_object_get(m, "max_input_chars_per_word"))
			type = "WordPiece";
		else
			type = "WordLevel";
	}
	md->unk_id = -1;
	if (!strcmp(type, "WordPiece")) {
		md->type = M_WORDPIECE;
		if ((rc = vocab_object(t, json_object_get(m, "vocab"), path, err)) ||
		    (rc = get_str(&unk, m, "unk_token", NX_TOKENIZER_TOKEN_MAX, "model", path, err)) ||
		    (rc = get_str(&s, m, "continuing_subword_prefix", NX_TOK_PREFIX_MAX, "model",
				  path, err)))
			return rc;
		unk = unk ? unk : "[UNK]";
		md->unk_id = nx_vocab_get2(&t->v, unk, strlen(unk), NULL, 0);
		if (md->unk_id < 0)
			return nx_tok__cfg(err, path, "model.unk_token",
					   "the unknown token '%.40s' is not in the vocabulary", unk);
		s = s ? s : "##";
		md->prefix_len = strlen(s);
		memcpy(md->prefix, s, md->prefix_len);
		v = json_object_get(m, "max_input_chars_per_word");
		if (v && !json_is_null(v)) {
			if (!json_is_integer(v) || json_integer_value(v) < 1 ||
			    json_integer_value(v) > NX_TOKENIZER_WORD_CHARS_MAX)
				return nx_tok__cfg(err, path, "model.max_input_chars_per_word",
						   "must be an integer from 1 to %d",
						   NX_TOKENIZER_WORD_CHARS_MAX);
			md->max_chars = (size_t)json_integer_value(v);
		}
		return 0;
	}
	if (!strcmp(type, "WordLevel")) {
		md->type = M_WORDLEVEL;
		if ((rc = vocab_object(t, json_object_get(m, "vocab"), path, err)) ||
		    (rc = get_str(&unk, m, "unk_token", NX_TOKENIZER_TOKEN_MAX, "model", path, err)))
			return rc;
		if (unk)
			md->unk_id = nx_vocab_get2(&t->v, unk, strlen(unk), NULL, 0);
		return 0;
	}
	if (!strcmp(type, "BPE")) {
		md->type = M_BPE;
		v = json_object_get(m, "dropout");
		if (v && !json_is_null(v) && !(json_is_number(v) && json_number_value(v) == 0.0))
			return nx_tok__cfg(err, path, "model.dropout",
					   "is %g: dropout is a training feature, its ids are random; "
					   "set it to null", json_number_value(v));
		if ((rc = vocab_object(t, json_object_get(m, "vocab"), path, err)) ||
		    (rc = get_str(&unk, m, "unk_token", NX_TOKENIZER_TOKEN_MAX, "model", path, err)) ||
		    (rc = nx_tok__get_bool(&md->fuse_unk, m, "fuse_unk", "model.fuse_unk", path, err)) ||
		    (rc = nx_tok__get_bool(&md->byte_fallback, m, "byte_fallback", "model.byte_fallback", path,
				   err)) ||
		    (rc = nx_tok__get_bool(&md->ignore_merges, m, "ignore_merges", "model.ignore_merges", path,
				   err)))
			return rc;
		if (unk) {
			md->unk_set = true;
			md->unk_id = nx_vocab_get2(&t->v, unk, strlen(unk), NULL, 0);
		}
		if ((rc = get_str(&s, m, "continuing_subword_prefix", NX_TOK_PREFIX_MAX, "model", path,
				  err)))
			return rc;
		if (s) {
			md->has_prefix = true;
			md->prefix_len = strlen(s);
			memcpy(md->prefix, s, md->prefix_len);
		}
		if ((rc = get_str(&s, m, "end_of_word_suffix", NX_TOK_PREFIX_MAX, "model", path, err)))
			return rc;
		if (s && *s) {
			md->has_suffix = true;
			md->suffix_len = strlen(s);
			memcpy(md->suffix, s, md->suffix_len);
		}
		return bpe_merges(t, json_object_get(m, "merges"), path, err);
	}
	if (!strcmp(type, "Unigram")) {
		md->type = M_UNIGRAM;
		md->fuse_unk = true;
		if ((rc = unigram_vocab(t, json_object_get(m, "vocab"), path, err)) ||
		    (rc = nx_tok__get_bool(&md->byte_fallback, m, "byte_fallback", "model.byte_fallback", path,
				   err)))
			return rc;
		v = json_object_get(m, "unk_id");
		if (v && !json_is_null(v)) {
			if (!json_is_integer(v) || json_integer_value(v) < 0 ||
			    (size_t)json_integer_value(v) >= json_array_size(json_object_get(m, "vocab")))
				return nx_tok__cfg(err, path, "model.unk_id", "must be an index of model.vocab");
			md->unk_id = json_integer_value(v);
		}
		return nx_tok__unigram_index(t) ? nomem(err, path) : 0;
	}
	return nx_tok__cfg(err, path, "model.type", "'%.40s' is not supported (WordPiece, BPE, "
			   "Unigram, WordLevel)", type);
}

static int added_index(nx_tokenizer *t, const char *path, nx_error *err)
{
	size_t i, w, b;

	for (i = 0; i < t->nadded; i++) {
		const struct nx_added_token *a = &t->added[i];

		w = a->normalized && t->norm;
		b = (unsigned char)a->content[0];
		t->added_by_byte_n[w][b]++;
	}
	for (w = 0; w < 2; w++)
		for (b = 0; b < 256; b++) {
			if (!t->added_by_byte_n[w][b])
				continue;
			if (!(t->added_by_byte[w][b] = calloc(t->added_by_byte_n[w][b], sizeof(uint32_t))))
				return nomem(err, path);
			t->added_by_byte_n[w][b] = 0;
		}
	for (i = 0; i < t->nadded; i++) {
		const struct nx_added_token *a = &t->added[i];
		uint32_t *list, n;

		w = a->normalized && t->norm;
		b = (unsigned char)a->content[0];
		list = t->added_by_byte[w][b];
		n = t->added_by_byte_n[w][b]++;
		/* insertion sort, longest first: the first match is the longest */
		while (n > 0 && t->added[list[n - 1]].len < a->len) {
			list[n] = list[n - 1];
			n--;
		}
		list[n] = (uint32_t)i;
	}
	return 0;
}

static int64_t added_find(const nx_tokenizer *t, const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < t->nadded; i++)
		if (t->added[i].raw_len == len && !memcmp(t->added[i].raw, s, len))
			return (int64_t)i;
	return -1;
}

/* HF AddedVocabulary::add_tokens: the id is the model's for a token it
 * knows, else the next one after the vocabulary; the file's "id" is only
 * checked by HF (a warning), so it is not used here either. */
static int parse_added(nx_tokenizer *t, json_t *added, const char *path, nx_error *err)
{
	int64_t next_id = (int64_t)t->v.n;
	json_t *a;
	size_t i;
	char jp[64];
	int rc;

	if (!added || json_is_null(added))
		return 0;
	if (!json_is_array(added))
		return nx_tok__cfg(err, path, "added_tokens", "must be a list");
	if (json_array_size(added) > NX_TOK_ADDED_MAX)
		return nx_error_set(err, NX_ELIMIT, path, 0, -1,
				    "%s: added_tokens: more than %d (tokenizer)", path, NX_TOK_ADDED_MAX);
	if (!(t->added = calloc(json_array_size(added) + 1, sizeof(*t->added))))
		return nomem(err, path);
	json_array_foreach(added, i, a) {
		json_t *c = json_object_get(a, "content");
		struct nx_added_token tok = { 0 }, *dst;
		int64_t k, id;

		snprintf(jp, sizeof(jp), "added_tokens[%zu]", i);
		if (!json_is_object(a) || !json_is_string(c))
			return nx_tok__cfg(err, path, jp, "needs a content string");
		if (!json_string_length(c))
			continue;
		if (json_string_length(c) > NX_TOKENIZER_TOKEN_MAX)
			return nx_error_set(err, NX_ELIMIT, path, 0, -1, "%s: %s: over %d bytes (tokenizer)",
					    path, jp, NX_TOKENIZER_TOKEN_MAX);
		tok.special = json_is_true(json_object_get(a, "special"));
		tok.normalized = !tok.special;
		if ((rc = nx_tok__get_bool(&tok.special, a, "special", jp, path, err)) ||
		    (rc = nx_tok__get_bool(&tok.single_word, a, "single_word", jp, path, err)) ||
		    (rc = nx_tok__get_bool(&tok.lstrip, a, "lstrip", jp, path, err)) ||
		    (rc = nx_tok__get_bool(&tok.rstrip, a, "rstrip", jp, path, err)) ||
		    (rc = nx_tok__get_bool(&tok.normalized, a, "normalized", jp, path, err)))
			return rc;
		{
			size_t rl = json_string_length(c);
			const char *rs = nul_back(t, json_string_value(c), &rl);

			tok.raw_len = rl;
			if (!(tok.raw = malloc(rl + 1)))
				return nomem(err, path);
			memcpy(tok.raw, rs, rl);
			tok.raw[rl] = 0;
		}
		k = added_find(t, tok.raw, tok.raw_len);
		if (k >= 0) {
			id = t->added[k].id;
			dst = &t->added[k];
			free(dst->raw);
			free(dst->content);
		} else {
			id = nx_vocab_get2(&t->v, tok.raw, tok.raw_len, NULL, 0);
			if (id < 0)
				id = next_id++;
			dst = &t->added[t->nadded++];
		}
		tok.id = id;
		*dst = tok;
	}
	/* the matched form: the normalized content for normalized tokens */
	for (i = 0; i < t->nadded; i++) {
		struct nx_added_token *d = &t->added[i];

		if (d->normalized && t->norm) {
			if ((rc = nx_tok__normalize(t, t->norm, d->raw, d->raw_len, &t->normed, err)))
				return rc;
		} else {
			t->normed.n = 0;
			if (nx_tok__tb_put(&t->normed, d->raw, d->raw_len))
				return nomem(err, path);
		}
		if (!(d->content = malloc(t->normed.n + 1)))
			return nomem(err, path);
		memcpy(d->content, t->normed.p, t->normed.n);
		d->content[t->normed.n] = 0;
		d->len = t->normed.n;
		if (!d->len) {  /* normalized away: never matched */
			d->normalized = false;
			free(d->content);
			if (!(d->content = strdup(d->raw)))
				return nomem(err, path);
			d->len = d->raw_len;
		}
		if ((size_t)d->id >= t->id_n || !t->id_tok[d->id]) {
			if ((rc = map_id(t, d->id, d->raw, d->raw_len, "added_tokens", path, err)))
				return rc;
		} else {
			t->id_tok[d->id] = d->raw;
			t->id_len[d->id] = (uint32_t)d->raw_len;
		}
	}
	return added_index(t, path, err);
}

static int parse_truncation(nx_tokenizer *t, json_t *tr, const char *path, nx_error *err)
{
	json_t *v;
	const char *s;

	if (!tr || json_is_null(tr))
		return 0;
	if (!json_is_object(tr))
		return nx_tok__cfg(err, path, "truncation", "must be an object or null");
	t->has_trunc = true;
	v = json_object_get(tr, "max_length");
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1 << 24)
		return nx_tok__cfg(err, path, "truncation.max_length", "must be an integer >= 0");
	t->trunc_max = (size_t)json_integer_value(v);
	v = json_object_get(tr, "stride");
	if (v && !json_is_null(v)) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > 1 << 24)
			return nx_tok__cfg(err, path, "truncation.stride", "must be an integer >= 0");
		t->trunc_stride = (size_t)json_integer_value(v);
	}
	s = json_string_value(json_object_get(tr, "strategy"));
	if (!s || !strcmp(s, "LongestFirst"))
		t->trunc_strategy = TRUNC_LONGEST;
	else if (!strcmp(s, "OnlyFirst"))
		t->trunc_strategy = TRUNC_ONLY_FIRST;
	else if (!strcmp(s, "OnlySecond"))
		t->trunc_strategy = TRUNC_ONLY_SECOND;
	else
		return nx_tok__cfg(err, path, "truncation.strategy", "'%.40s' is not LongestFirst, "
				   "OnlyFirst or OnlySecond", s);
	s = json_string_value(json_object_get(tr, "direction"));
	if (s && strcmp(s, "Right") && strcmp(s, "Left"))
		return nx_tok__cfg(err, path, "truncation.direction", "'%.40s' is not Right or Left", s);
	t->trunc_left = s && !strcmp(s, "Left");
	return 0;
}

static int parse_padding(nx_tokenizer *t, json_t *p, const char *path, nx_error *err)
{
	json_t *st, *v;
	const char *s;

	if (!p || json_is_null(p))
		return 0;
	if (!json_is_object(p))
		return nx_tok__cfg(err, path, "padding", "must be an object or null");
	t->has_pad = true;
	st = json_object_get(p, "strategy");
	if (json_is_object(st) && json_is_integer(json_object_get(st, "Fixed"))) {
		json_int_t n = json_integer_value(json_object_get(st, "Fixed"));

		if (n < 0 || n > 1 << 24)
			return nx_tok__cfg(err, path, "padding.strategy.Fixed", "must be >= 0");
		t->pad_fixed = true;
		t->pad_len = (size_t)n;
	} else if (st && !(json_is_string(st) && !strcmp(json_string_value(st), "BatchLongest"))) {
		return nx_tok__cfg(err, path, "padding.strategy", "must be \"BatchLongest\" or "
				   "{\"Fixed\": N}");
	}
	v = json_object_get(p, "pad_to_multiple_of");
	if (v && !json_is_null(v)) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1 << 16)
			return nx_tok__cfg(err, path, "padding.pad_to_multiple_of",
					   "must be null or an integer");
		t->pad_multiple = (size_t)json_integer_value(v);
	}
	s = json_string_value(json_object_get(p, "direction"));
	if (s && strcmp(s, "Right") && strcmp(s, "Left"))
		return nx_tok__cfg(err, path, "padding.direction", "'%.40s' is not Right or Left", s);
	t->pad_left = s && !strcmp(s, "Left");
	v = json_object_get(p, "pad_id");
	if (json_is_integer(v) && json_integer_value(v) >= 0)
		t->pad_id = json_integer_value(v);
	v = json_object_get(p, "pad_type_id");
	if (json_is_integer(v) && json_integer_value(v) >= 0)
		t->pad_type_id = json_integer_value(v);
	return 0;
}

static int strcasestr_n(const char *buf, size_t len, const char *needle)
{
	size_t n = strlen(needle), i;

	for (i = 0; i + n <= len; i++)
		if (!strncasecmp(buf + i, needle, n))
			return 1;
	return 0;
}

/* A copy with every \u0000 escape (not an escaped backslash) as \udbff\udfff. */
static char *sub_nul(const char *buf, size_t len)
{
	char *o = malloc(len * 2 + 1);
	size_t i, n = 0, bs = 0;

	if (!o)
		return NULL;
	for (i = 0; i < len; i++) {
		if (buf[i] == '\\' && !(bs & 1) && i + 6 <= len && !memcmp(buf + i, "\\u0000", 6)) {
			memcpy(o + n, "\\udbff\\udfff", 12);
			n += 12;
			i += 5;
			bs = 0;
			continue;
		}
		bs = buf[i] == '\\' ? bs + 1 : 0;
		o[n++] = buf[i];
	}
	o[n] = 0;
	return o;
}

int nx_tokenizer_parse_json(nx_tokenizer **out, const char *buf, size_t len,
			    const char *path, nx_error *err)
{
	nx_tokenizer *t = NULL;
	json_t *root = NULL, *dec;
	json_error_t jerr;
	char *sub = NULL;
	int rc;

	if (len > NX_TOKENIZER_FILE_MAX)
		return nx_error_set(err, NX_ELIMIT, path, 0, -1, "%s: over the %u byte limit",
				    path, NX_TOKENIZER_FILE_MAX);
	if ((rc = nx_tokenizer_alloc(&t, "tokenizer.json", err)))
		return rc;
	if (memmem(buf, len, "\\u0000", 6)) {
		if (memmem(buf, len, NUL_SUB, 4) || strcasestr_n(buf, len, "\\udbff\\udfff")) {
			rc = nx_tok__cfg(err, path, "the file", "has both \\u0000 and U+10FFFF");
			goto out;
		}
		if (!(sub = sub_nul(buf, len))) {
			rc = nomem(err, path);
			goto out;
		}
		t->nul_sub = true;
		buf = sub;
		len = strlen(sub);
	}
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
	if (!root) {
		rc = nx_error_set(err, NX_EFORMAT, path, jerr.line, jerr.position,
				  "%s:%d: not valid JSON: %s", path, jerr.line, jerr.text);
		goto out;
	}
	if (!json_is_object(root)) {
		rc = nx_tok__cfg(err, path, "the file", "must be a JSON object");
		goto out;
	}
	if ((rc = parse_model(t, json_object_get(root, "model"), path, err)))
		goto out;
	if (json_object_get(root, "normalizer") && !json_is_null(json_object_get(root, "normalizer"))) {
		if (!(t->norm = calloc(1, sizeof(*t->norm)))) {
			rc = nomem(err, path);
			goto out;
		}
		if ((rc = nx_tok__load_normalizer(t, t->norm, json_object_get(root, "normalizer"),
						  "normalizer", 0, path, err)))
			goto out;
	}
	if (json_object_get(root, "pre_tokenizer") &&
	    !json_is_null(json_object_get(root, "pre_tokenizer"))) {
		if (!(t->pre = calloc(1, sizeof(*t->pre)))) {
			rc = nomem(err, path);
			goto out;
		}
		if ((rc = nx_tok__load_pre(t, t->pre, json_object_get(root, "pre_tokenizer"),
					   "pre_tokenizer", 0, path, err)))
			goto out;
	}
	if ((rc = parse_added(t, json_object_get(root, "added_tokens"), path, err)) ||
	    (rc = nx_tok__load_post(t, json_object_get(root, "post_processor"), path, err)) ||
	    (rc = parse_truncation(t, json_object_get(root, "truncation"), path, err)) ||
	    (rc = parse_padding(t, json_object_get(root, "padding"), path, err)))
		goto out;
	if (t->has_trunc && t->has_post &&
	    (t->trunc_max < t->single.nspecial || t->trunc_max < t->pair.nspecial)) {
		rc = nx_tok__cfg(err, path, "truncation.max_length", "%zu is less than the %zu special "
				 "tokens the post_processor adds", t->trunc_max,
				 t->pair.nspecial > t->single.nspecial ? t->pair.nspecial
								       : t->single.nspecial);
		goto out;
	}
	dec = json_object_get(root, "decoder");
	if (dec && !json_is_null(dec))
		t->decoder = json_incref(dec);
	if ((rc = nx_tokenizer_finish(t, path, err)))
		goto out;
	*out = t;
	t = NULL;
out:
	nx_tokenizer_free(t);
	json_decref(root);
	free(sub);
	return rc;
}

/* A Bert post-processor template [CLS] $A [SEP] / [CLS] $A [SEP] $B:1 [SEP]:1. */
int nx_tok__bert_template(nx_tokenizer *t, int64_t cls, int64_t sep, bool roberta);

int nx_tokenizer_parse_vocab(nx_tokenizer **out, const char *buf, size_t len,
			     const char *path, nx_error *err)
{
	static const char *const specials[] = { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" };
	nx_tokenizer *t = NULL;
	size_t i = 0, line = 0, k;
	int64_t cls, sep;
	int rc;

	if (len > NX_TOKENIZER_FILE_MAX)
		return nx_error_set(err, NX_ELIMIT, path, 0, -1, "%s: over the %u byte limit",
				    path, NX_TOKENIZER_FILE_MAX);
	if ((rc = nx_tokenizer_alloc(&t, "vocab.txt", err)))
		return rc;
	while (i < len) {
		const char *nl = memchr(buf + i, '\n', len - i);
		size_t end = nl ? (size_t)(nl - buf) : len, e = end;

		/* Hugging Face trims trailing whitespace of each line */
		while (e > i && (buf[e - 1] == '\r' || buf[e - 1] == ' ' || buf[e - 1] == '\t'))
			e--;
		if (++line > NX_TOKENIZER_VOCAB_MAX || e - i > NX_TOKENIZER_TOKEN_MAX) {
			rc = nx_error_set(err, NX_ELIMIT, path, (long)line, -1,
					  "%s:%zu: over the vocabulary limits", path, line);
			goto out;
		}
		if (nx_vocab_put(&t->v, buf + i, e - i, (int64_t)(line - 1))) {
			rc = nomem(err, path);
			goto out;
		}
		i = end + 1;
	}
	if ((rc = map_vocab_ids(t, "vocab.txt", path, err)))
		goto out;
	/* BERT uncased: BertNormalizer, BertPreTokenizer, WordPiece "##" 100 */
	t->m.type = M_WORDPIECE;
	memcpy(t->m.prefix, "##", 2);
	t->m.prefix_len = 2;
	if (!(t->norm = calloc(1, sizeof(*t->norm))) || !(t->pre = calloc(1, sizeof(*t->pre))) ||
	    !(t->added = calloc(5, sizeof(*t->added)))) {
		rc = nomem(err, path);
		goto out;
	}
	t->norm->type = N_BERT;
	t->norm->clean_text = t->norm->chinese = t->norm->strip_accents = t->norm->lowercase = true;
	t->pre->type = P_BERT;
	/* the special tokens BertTokenizer never splits, as added tokens */
	for (k = 0; k < 5; k++) {
		struct nx_added_token *a = &t->added[t->nadded];
		int64_t id = nx_vocab_get2(&t->v, specials[k], strlen(specials[k]), NULL, 0);

		if (id < 0)
			continue;
		if (!(a->raw = strdup(specials[k])) || !(a->content = strdup(specials[k]))) {
			rc = nomem(err, path);
			goto out;
		}
		a->len = a->raw_len = strlen(specials[k]);
		a->id = id;
		a->special = true;
		t->nadded++;
	}
	if ((rc = added_index(t, path, err)))
		goto out;
	cls = nx_vocab_get2(&t->v, "[CLS]", 5, NULL, 0);
	sep = nx_vocab_get2(&t->v, "[SEP]", 5, NULL, 0);
	if (cls < 0 || sep < 0) {
		rc = nx_error_set(err, NX_ECONFIG, path, 0, -1,
				  "%s: [CLS] and [SEP] must be in the vocabulary (tokenizer)", path);
		goto out;
	}
	t->m.unk_id = nx_vocab_get2(&t->v, "[UNK]", 5, NULL, 0);
	if (t->m.unk_id < 0) {
		rc = nx_error_set(err, NX_ECONFIG, path, 0, -1,
				  "%s: the unknown token [UNK] is not in the vocabulary (tokenizer)", path);
		goto out;
	}
	if (nx_tok__bert_template(t, cls, sep, false)) {
		rc = nomem(err, path);
		goto out;
	}
	if ((rc = nx_tokenizer_finish(t, path, err)))
		goto out;
	*out = t;
	t = NULL;
out:
	nx_tokenizer_free(t);
	return rc;
}

/* Read a whole regular file of dirfd into a new buffer; -ENOENT if absent. */
static int slurp(char **out, size_t *out_len, int dirfd, const char *name,
		 const char *path, nx_error *err)
{
	struct stat st;
	char *buf = NULL;
	size_t got = 0;
	int fd, rc = 0;

	/* O_NONBLOCK: a FIFO planted here must not block the open. */
	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return errno == ENOENT ? -ENOENT
			: nx_error_errno(err, NX_EIO, errno, path, "cannot open %s", path);
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		rc = nx_error_set(err, NX_EUNSAFE, path, 0, -1, "%s is not a regular file", path);
		goto out;
	}
	if ((uint64_t)st.st_size > NX_TOKENIZER_FILE_MAX) {
		rc = nx_error_set(err, NX_ELIMIT, path, 0, -1, "%s: over the %u byte limit",
				  path, NX_TOKENIZER_FILE_MAX);
		goto out;
	}
	if (!(buf = malloc((size_t)st.st_size + 1))) {
		rc = nx_error_set(err, NX_ENOMEM, path, 0, -1, "out of memory reading %s", path);
		goto out;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = nx_error_errno(err, NX_EIO, n < 0 ? errno : EIO, path, "cannot read %s", path);
			goto out;
		}
		got += (size_t)n;
	}
	*out = buf;
	*out_len = got;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return rc;
}

int nx_tokenizer_load(nx_tokenizer **out, int dirfd, const char *dirpath, nx_error *err)
{
	char path[NX_ERROR_PATH_MAX];
	char *buf = NULL;
	size_t len = 0;
	int rc;

	if (!dirpath)
		dirpath = ".";
	snprintf(path, sizeof(path), "%s/tokenizer.json", dirpath);
	rc = slurp(&buf, &len, dirfd, "tokenizer.json", path, err);
	if (rc == 0) {
		rc = nx_tokenizer_parse_json(out, buf, len, path, err);
		goto out;
	}
	if (rc != -ENOENT)
		goto out;
	snprintf(path, sizeof(path), "%s/vocab.txt", dirpath);
	rc = slurp(&buf, &len, dirfd, "vocab.txt", path, err);
	if (rc == -ENOENT) {
		rc = nx_error_set(err, NX_EIO, dirpath, 0, -1,
				  "%s has neither tokenizer.json nor vocab.txt", dirpath);
		goto out;
	}
	if (rc == 0)
		rc = nx_tokenizer_parse_vocab(out, buf, len, path, err);
out:
	free(buf);
	return rc;
}

/* Here rather than beside nx_tokenizer_alloc (vocab.c): it releases every
 * part, the models included, and vocab.c is below them. */
static void tmpl_release(struct ttemplate *tp)
{
	size_t i;

	for (i = 0; i < tp->n; i++)
		free(tp->items[i].ids);
	free(tp->items);
}

void nx_tokenizer_free(nx_tokenizer *t)
{
	size_t i, w;

	if (!t)
		return;
	for (i = 0; i < t->nadded; i++) {
		free(t->added[i].content);
		free(t->added[i].raw);
	}
	free(t->added);
	for (w = 0; w < 2; w++)
		for (i = 0; i < 256; i++)
			free(t->added_by_byte[w][i]);
	nx_vocab_release(&t->v);
	free(t->id_tok);
	free(t->id_len);
	nx_tok__model_release(&t->m);
	nx_tok__norm_release(t->norm);
	free(t->norm);
	nx_tok__pre_release(t->pre);
	free(t->pre);
	tmpl_release(&t->single);
	tmpl_release(&t->pair);
	json_decref(t->decoder);
	free(t->seg.p);
	free(t->normed.p);
	free(t->pieces.v);
	free(t->pieces.text.p);
	free(t->pieces2.v);
	free(t->pieces2.text.p);
	free(t->ids[0].p);
	free(t->ids[1].p);
	free(t->word.p);
	free(t->word2.p);
	free(t->spans);
	free(t->boff);
	free(t);
}

/*
 * decode.c - ids -> text as Hugging Face `tokenizers` decodes them (its
 * src/decoders/ and Tokenizer::decode): each decoder turns a list of token
 * strings into another list, a Sequence chains them, and the last list is
 * concatenated.  Every string operation follows the Rust one it mirrors,
 * edge cases included (str::replace with an empty pattern inserts at every
 * char boundary; String::from_utf8_lossy replaces each maximal invalid
 * subpart by one U+FFFD).  A token list is one byte buffer plus the end
 * offset of each token, so a decode costs a handful of allocations.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <jansson.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "nexus/tokdecode.h"
#include "util/array_int.h"

enum step_kind {
	S_BYTELEVEL, S_METASPACE, S_WORDPIECE, S_BPE, S_BYTEFALLBACK, S_FUSE, S_STRIP,
	S_REPLACE, S_CTC,
};

struct step {
	enum step_kind kind;
	const char *a, *b;   /* prefix / suffix / pattern / pad token; content / delimiter */
	size_t alen, blen;
	uint32_t ch;         /* Metaspace replacement, Strip content */
	pcre2_code *re;      /* Replace with a Regex pattern */
	size_t start, stop;  /* Strip */
	bool flag;           /* WordPiece/CTC cleanup; Metaspace prepend_scheme != never */
};

/* token i is buf[i ? end[i - 1] : 0, end[i]) */
struct tlist {
	char *buf;
	size_t len, cap;
	size_t *end;
	size_t n, ncap;
};

struct nx_tokdecoder {
	const nx_tokenizer *t;
	pcre2_match_data *md;
	struct step steps[NX_TOKDECODE_STEPS_MAX];
	size_t nsteps;
	bool none;           /* no decoder: join with " " */
	struct tlist l[2];
	char *tmp[2];        /* WordPiece cleanup ping-pong */
	size_t tmp_cap[2];
};

/* --- byte buffers ----------------------------------------------------- */

static int tl_add(struct tlist *l, const void *s, size_t len)
{
	if (nx_array_grow(&l->buf, &l->cap, l->len + len + 1, 1, SIZE_MAX))
		return NX_ENOMEM;
	if (len)  /* s may be NULL then */
		memcpy(l->buf + l->len, s, len);
	l->len += len;
	return 0;
}

/* close the token being appended to */
static int tl_end(struct tlist *l)
{
	/* a buffer even for empty tokens */
	if (nx_array_grow(&l->buf, &l->cap, l->len + 1, 1, SIZE_MAX) ||
	    NX_ARRAY_PUSH(l->end, l->ncap, l->n))
		return NX_ENOMEM;
	l->end[l->n++] = l->len;
	return 0;
}

static const char *tl_get(const struct tlist *l, size_t i, size_t *len)
{
	size_t s = i ? l->end[i - 1] : 0;

	*len = l->end[i] - s;
	return l->buf + s;
}

/* --- UTF-8 ------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s, else 0 with the length of its
 * maximal invalid subpart (what one U+FFFD replaces) in *skip. */
static size_t utf8_len(const unsigned char *s, size_t n, size_t *skip)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xBF;
	size_t need, k;

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		need = 1;
	else if (c >= 0xE0 && c <= 0xEF) {
		need = 2;
		lo = c == 0xE0 ? 0xA0 : 0x80;
		hi = c == 0xED ? 0x9F : 0xBF;
	} else if (c >= 0xF0 && c <= 0xF4) {
		need = 3;
		lo = c == 0xF0 ? 0x90 : 0x80;
		hi = c == 0xF4 ? 0x8F : 0xBF;
	} else {
		*skip = 1;
		return 0;
	}
	for (k = 1; k <= need; k++) {
		if (k >= n || s[k] < lo || s[k] > hi) {
			*skip = k;
			return 0;
		}
		lo = 0x80;
		hi = 0xBF;
	}
	return need + 1;
}

/* The code point at s[*i] (advancing *i); an invalid byte reads as U+FFFD. */
static uint32_t next_cp(const char *str, size_t n, size_t *i)
{
	const unsigned char *s = (const unsigned char *)str + *i;
	size_t k, skip = 1, len = utf8_len(s, n - *i, &skip);
	uint32_t cp;

	if (!len) {
		*i += skip;
		return 0xFFFD;
	}
	*i += len;
	if (len == 1)
		return s[0];
	cp = s[0] & (0x7F >> len);
	for (k = 1; k < len; k++)
		cp = (cp << 6) | (s[k] & 0x3F);
	return cp;
}

static bool utf8_valid(const unsigned char *s, size_t n)
{
	size_t i = 0, skip, k;

	while (i < n) {
		if (!(k = utf8_len(s + i, n - i, &skip)))
			return false;
		i += k;
	}
	return true;
}

/* String::from_utf8_lossy */
static int tl_add_lossy(struct tlist *l, const unsigned char *s, size_t n)
{
	size_t i = 0, skip = 1, k;

	while (i < n) {
		if ((k = utf8_len(s + i, n - i, &skip))) {
			if (tl_add(l, s + i, k))
				return NX_ENOMEM;
			i += k;
		} else {
			if (tl_add(l, "\xEF\xBF\xBD", 3))
				return NX_ENOMEM;
			i += skip;
		}
	}
	return 0;
}

/* Rust's str::replace(from, to) appended to l: non-overlapping, left to
 * right; an empty `from` matches before every char and at the end. */
static int tl_add_replaced(struct tlist *l, const char *s, size_t n, const char *from,
			   size_t flen, const char *to, size_t tlen)
{
	size_t i = 0;

	if (!flen) {
		while (i < n) {
			size_t j = i;

			next_cp(s, n, &j);
			if (tl_add(l, to, tlen) || tl_add(l, s + i, j - i))
				return NX_ENOMEM;
			i = j;
		}
		return tl_add(l, to, tlen);
	}
	while (i < n) {
		const char *m = memmem(s + i, n - i, from, flen);
		size_t at = m ? (size_t)(m - s) : n;

		if (tl_add(l, s + i, at - i))
			return NX_ENOMEM;
		if (!m)
			break;
		if (tl_add(l, to, tlen))
			return NX_ENOMEM;
		i = at + flen;
	}
	return 0;
}

/* --- the decoders -------------------------------------------------------- */

/* The byte of a ByteLevel alphabet char (GPT-2's bytes_to_unicode), or -1. */
static int bytelevel_byte(uint32_t c)
{
	if ((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255))
		return (int)c;
	if (c < 256 || c >= 256 + 68)
		return -1;
	c -= 256;  /* the bytes outside the ranges above, in order */
	return c < 33 ? (int)c : c < 67 ? (int)(127 + c - 33) : 173;
}

static int dec_bytelevel(struct tlist *out, const struct tlist *in)
{
	size_t i, k, len, mark = out->len;
	unsigned char *bytes;
	int rc = 0;

	/* gather the raw bytes after out's content, then re-add them lossily */
	for (i = 0; i < in->n; i++) {
		const char *s = tl_get(in, i, &len);
		size_t at = out->len;

		int b = 0;

		for (k = 0; k < len && b >= 0;) {
			b = bytelevel_byte(next_cp(s, len, &k));
			if (b >= 0 && tl_add(out, &(unsigned char){ (unsigned char)b }, 1))
				return NX_ENOMEM;
		}
		if (b < 0) {
			out->len = at;  /* a char outside the alphabet: the token's own bytes */
			if (tl_add(out, s, len))
				return NX_ENOMEM;
		}
	}
	len = out->len - mark;
	if (!(bytes = malloc(len ? len : 1)))
		return NX_ENOMEM;
	if (len)
		memcpy(bytes, out->buf + mark, len);
	out->len = mark;
	rc = tl_add_lossy(out, bytes, len);
	free(bytes);
	return rc ? rc : tl_end(out);
}

static int dec_metaspace(struct tlist *out, const struct tlist *in, const struct step *st)
{
	size_t i, k, len;

	for (i = 0; i < in->n; i++) {
		const char *s = tl_get(in, i, &len);

		for (k = 0; k < len;) {
			size_t at = k;
			uint32_t c = next_cp(s, len, &k);

			if (c != st->ch) {
				if (tl_add(out, s + at, k - at))
					return NX_ENOMEM;
			} else if (!(i == 0 && st->flag) && tl_add(out, " ", 1))
				return NX_ENOMEM;
		}
		if (tl_end(out))
			return NX_ENOMEM;
	}
	return 0;
}

static const char *const CLEANUP[][2] = {
	{ " .", "." }, { " ?", "?" }, { " !", "!" }, { " ,", "," }, { " ' ", "'" },
	{ " n't", "n't" }, { " 'm", "'m" }, { " do not", " don't" }, { " 's", "'s" },
	{ " 've", "'ve" }, { " 're", "'re" },
};

/* wordpiece::cleanup of out's open token (from byte `from` on), in place */
static int cleanup(nx_tokdecoder *d, struct tlist *out, size_t from)
{
	size_t r, n = out->len - from;
	struct tlist t = { 0 };
	int rc = 0;

	for (r = 0; r < sizeof(CLEANUP) / sizeof(CLEANUP[0]); r++) {
		if (!memmem(out->buf + from, n, CLEANUP[r][0], strlen(CLEANUP[r][0])))
			continue;
		t.buf = d->tmp[0];
		t.cap = d->tmp_cap[0];
		t.len = 0;
		rc = tl_add_replaced(&t, out->buf + from, n, CLEANUP[r][0], strlen(CLEANUP[r][0]),
				     CLEANUP[r][1], strlen(CLEANUP[r][1]));
		d->tmp[0] = t.buf;
		d->tmp_cap[0] = t.cap;
		if (rc)
			return rc;
		out->len = from;
		if (tl_add(out, t.buf, t.len))
			return NX_ENOMEM;
		n = t.len;
	}
	return 0;
}

static int dec_wordpiece(nx_tokdecoder *d, struct tlist *out, const struct tlist *in,
			 const struct step *st)
{
	size_t i, len;

	for (i = 0; i < in->n; i++) {
		const char *s = tl_get(in, i, &len);
		size_t from = out->len;

		if (i && len >= st->alen && !memcmp(s, st->a, st->alen)) {
			s += st->alen;  /* replacen(prefix, "", 1): the first match is the start */
			len -= st->alen;
		} else if (i && tl_add(out, " ", 1))
			return NX_ENOMEM;
		if (tl_add(out, s, len) || (st->flag && cleanup(d, out, from)) || tl_end(out))
			return NX_ENOMEM;
	}
	return 0;
}

static int dec_bpe(struct tlist *out, const struct tlist *in, const struct step *st)
{
	size_t i, len;

	for (i = 0; i < in->n; i++) {
		const char *s = tl_get(in, i, &len);
		const char *to = i + 1 == in->n ? "" : " ";

		if (tl_add_replaced(out, s, len, st->a, st->alen, to, strlen(to)) || tl_end(out))
			return NX_ENOMEM;
	}
	return 0;
}

/* The byte of a "<0xHH>" token (u8::from_str_radix, which takes a '+'), or -1. */
static int fallback_byte(const char *s, size_t len)
{
	int v = 0, k;

	if (len != 6 || memcmp(s, "<0x", 3) || s[5] != '>')
		return -1;
	for (k = 3; k < 5; k++) {
		char c = s[k];
		int x = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
			: c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;

		if (k == 3 && c == '+')
			continue;
		if (x < 0)
			return -1;
		v = v * 16 + x;
	}
	return v;
}

static int flush_bytes(struct tlist *out, const unsigned char *b, size_t n)
{
	size_t k;

	if (!n)
		return 0;
	if (utf8_valid(b, n))
		return tl_add(out, b, n) || tl_end(out) ? NX_ENOMEM : 0;
	for (k = 0; k < n; k++)
		if (tl_add(out, "\xEF\xBF\xBD", 3) || tl_end(out))
			return NX_ENOMEM;
	return 0;
}

static int dec_bytefallback(struct tlist *out, const struct tlist *in)
{
	unsigned char *bytes = malloc(in->n ? in->n : 1);
	size_t i, nb = 0, len;
	int rc = 0;

	if (!bytes)
		return NX_ENOMEM;
	for (i = 0; i < in->n && !rc; i++) {
		const char *s = tl_get(in, i, &len);
		int b = fallback_byte(s, len);

		if (b >= 0) {
			bytes[nb++] = (unsigned char)b;
			continue;
		}
		rc = flush_bytes(out, bytes, nb);
		nb = 0;
		if (!rc && (tl_add(out, s, len) || tl_end(out)))
			rc = NX_ENOMEM;
	}
	if (!rc)
		rc = flush_bytes(out, bytes, nb);
	free(bytes);
	return rc;
}

static int dec_fuse(struct tlist *out, const struct tlist *in)
{
	return tl_add(out, in->buf, in->len) || tl_end(out) ? NX_ENOMEM : 0;
}

static int dec_strip(struct tlist *out, const struct tlist *in, const struct step *st)
{
	size_t i, len;

	for (i = 0; i < in->n; i++) {
		const char *s = tl_get(in, i, &len);
		size_t a = 0, b = len, k, j;

		for (k = 0; k < st->start && a < len; k++) {
			j = a;
			if (next_cp(s, len, &j) != st->ch)
				break;
			a = j;
		}
		for (k = 0; k < st->stop && b > a; k++) {
			size_t e;

			j = b - 1;
			while (j > a && ((unsigned char)s[j] & 0xC0) == 0x80)
				j--;
			e = j;
			if (next_cp(s, len, &e) != st->ch)
				break;
			b = j;
		}
		if (tl_add(out, s + a, b - a) || tl_end(out))
			return NX_ENOMEM;
	}
	return 0;
}

/* Every match of st->re in s replaced by the content, as tokenizers' find_matches
 * over the onig crate's find_iter: an empty match is replaced too, except one
 * right where the previous match ended, and the search then goes on one char
 * further; an empty token is left alone. */
static int regex_replace(nx_tokdecoder *d, struct tlist *out, const char *s, size_t len,
			 const struct step *st)
{
	size_t prev = 0, at = 0, last = SIZE_MAX;

	while (len && at <= len) {
		int rc = pcre2_match(st->re, (PCRE2_SPTR)s, len, at, 0, d->md, NULL);
		PCRE2_SIZE *ov;
		size_t b, e;

		if (rc == PCRE2_ERROR_NOMATCH)
			break;
		if (rc < 0)
			return NX_ELIMIT;  /* match limit: a pathological pattern */
		ov = pcre2_get_ovector_pointer(d->md);
		b = ov[0];
		e = ov[1];
		if (b != e || e != last) {
			if (tl_add(out, s + prev, b - prev) || tl_add(out, st->b, st->blen))
				return NX_ENOMEM;
			prev = last = e;
		}
		at = e;
		if (b == e) {
			if (at >= len)
				break;
			next_cp(s, len, &at);
		}
	}
	return tl_add(out, s + prev, len - prev);
}

static int dec_replace(nx_tokdecoder *d, struct tlist *out, const struct tlist *in,
		       const struct step *st)
{
	size_t i, len;
	int rc;

	for (i = 0; i < in->n; i++) {
		const char *s = tl_get(in, i, &len);

		if (st->re)
			rc = regex_replace(d, out, s, len, st);
		else
			rc = tl_add_replaced(out, s, len, st->a, st->alen, st->b, st->blen);
		if (rc || tl_end(out))
			return rc ? rc : NX_ENOMEM;
	}
	return 0;
}

static int dec_ctc(nx_tokdecoder *d, struct tlist *out, const struct tlist *in,
		   const struct step *st)
{
	size_t i, len, plen = 0;
	const char *prev = NULL;

	for (i = 0; i < in->n; i++) {
		const char *s = tl_get(in, i, &len);
		size_t from = out->len;

		if (prev && plen == len && !memcmp(prev, s, len))
			continue;  /* dedup() of consecutive equal tokens */
		prev = s;
		plen = len;
		if (tl_add_replaced(out, s, len, st->a, st->alen, "", 0))
			return NX_ENOMEM;
		if (st->flag) {
			size_t n;
			char *copy;
			int rc;

			if (cleanup(d, out, from))
				return NX_ENOMEM;
			n = out->len - from;
			if (!(copy = malloc(n ? n : 1)))
				return NX_ENOMEM;
			if (n)
				memcpy(copy, out->buf + from, n);
			out->len = from;
			rc = tl_add_replaced(out, copy, n, st->b, st->blen, " ", 1);
			free(copy);
			if (rc)
				return rc;
		}
		if (out->len > from && tl_end(out))
			return NX_ENOMEM;
	}
	return 0;
}

static int run_step(nx_tokdecoder *d, const struct step *st, struct tlist *out,
		    const struct tlist *in)
{
	switch (st->kind) {
	case S_BYTELEVEL:
		return dec_bytelevel(out, in);
	case S_METASPACE:
		return dec_metaspace(out, in, st);
	case S_WORDPIECE:
		return dec_wordpiece(d, out, in, st);
	case S_BPE:
		return dec_bpe(out, in, st);
	case S_BYTEFALLBACK:
		return dec_bytefallback(out, in);
	case S_FUSE:
		return dec_fuse(out, in);
	case S_STRIP:
		return dec_strip(out, in, st);
	case S_REPLACE:
		return dec_replace(d, out, in, st);
	case S_CTC:
		return dec_ctc(d, out, in, st);
	}
	return NX_EINTERNAL;
}

int nx_tokdecoder_decode(nx_tokdecoder *d, const int64_t *ids, size_t n, bool skip_special,
			 char **out, size_t *out_len, nx_error *err)
{
	struct tlist *in = &d->l[0], *o = &d->l[1], *sw;
	size_t i, len, got = 0;
	char *res;
	int rc = 0;

	in->len = in->n = 0;
	for (i = 0; i < n && !rc; i++) {
		const char *s = nx_tokenizer_id_to_token(d->t, ids[i], &len);

		if (!s || (skip_special && nx_tokenizer_is_special(d->t, ids[i])))
			continue;
		if (d->none && got++)
			rc = tl_add(in, " ", 1);  /* no decoder: tokens.join(" ") into one */
		if (!rc)
			rc = tl_add(in, s, len);
		if (!rc && !d->none)
			rc = tl_end(in);
	}
	if (!rc && d->none)
		rc = tl_end(in);
	for (i = 0; i < d->nsteps && !rc; i++) {
		o->len = o->n = 0;
		rc = run_step(d, &d->steps[i], o, in);
		sw = in;
		in = o;
		o = sw;
	}
	if (!rc && !(res = malloc(in->len + 1)))
		rc = NX_ENOMEM;
	if (rc == NX_ELIMIT)
		return nx_error_set(err, rc, NULL, 0, -1, "the tokenizer's Replace decoder regex "
				    "went over its match limit decoding %zu ids", n);
	if (rc)
		return nx_error_set(err, rc, NULL, 0, -1, "out of memory decoding %zu ids", n);
	if (in->len)  /* the tokens joined with "" (no buffer yet when there were none) */
		memcpy(res, in->buf, in->len);
	res[in->len] = '\0';
	*out = res;
	*out_len = in->len;
	return 0;
}

/* --- compiling the decoder JSON ---------------------------------------- */

struct cctx {
	nx_tokdecoder *d;
	const char *path;
	nx_error *err;
};

static int bad(struct cctx *c, const char *jpath, const char *what)
{
	return nx_error_set(c->err, NX_ECONFIG, c->path, 0, -1,
			    "%s: the tokenizer's %s %s; nexus cannot decode ids as Hugging Face does "
			    "with it", c->path, jpath, what);
}

/* A string field (borrowed from the JSON, which the tokenizer keeps alive). */
static int get_str(struct cctx *c, json_t *o, const char *key, const char *dflt,
		   const char **s, size_t *len, const char *jpath)
{
	json_t *v = json_object_get(o, key);

	if (!v && dflt) {
		*s = dflt;
		*len = strlen(dflt);
		return 0;
	}
	if (!json_is_string(v)) {
		char msg[160];

		snprintf(msg, sizeof(msg), "needs \"%s\" as a string", key);
		return bad(c, jpath, msg);
	}
	*s = json_string_value(v);
	*len = json_string_length(v);
	return 0;
}

/* A field that Rust reads as one char. */
static int get_char(struct cctx *c, json_t *o, const char *key, uint32_t *ch, const char *jpath)
{
	const char *s;
	size_t len, i = 0;
	int rc;

	if ((rc = get_str(c, o, key, NULL, &s, &len, jpath)))
		return rc;
	*ch = len ? next_cp(s, len, &i) : 0;
	if (!len || i != len) {
		char msg[160];

		snprintf(msg, sizeof(msg), "needs \"%s\" as exactly one character", key);
		return bad(c, jpath, msg);
	}
	return 0;
}

static int get_bool(struct cctx *c, json_t *o, const char *key, bool dflt, bool *b,
		    const char *jpath)
{
	json_t *v = json_object_get(o, key);

	if (!v)
		return *b = dflt, 0;
	if (!json_is_boolean(v)) {
		char msg[160];

		snprintf(msg, sizeof(msg), "needs \"%s\" as true or false", key);
		return bad(c, jpath, msg);
	}
	*b = json_is_true(v);
	return 0;
}

static int get_count(struct cctx *c, json_t *o, const char *key, size_t *n, const char *jpath)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_integer(v) || json_integer_value(v) < 0) {
		char msg[160];

		snprintf(msg, sizeof(msg), "needs \"%s\" as an integer >= 0", key);
		return bad(c, jpath, msg);
	}
	*n = (size_t)json_integer_value(v);
	return 0;
}

static int compile(struct cctx *c, json_t *o, const char *jpath, int depth)
{
	const char *type = json_string_value(json_object_get(o, "type"));
	struct step *st;
	char sub[256];
	int rc = 0;

	if (depth > NX_TOKDECODE_DEPTH_MAX)
		return nx_error_set(c->err, NX_ELIMIT, c->path, 0, -1,
				    "%s: the tokenizer's %s nests Sequences over %d deep",
				    c->path, jpath, NX_TOKDECODE_DEPTH_MAX);
	if (!json_is_object(o) || !type)
		return bad(c, jpath, "is not an object with a \"type\"");
	if (!strcmp(type, "Sequence")) {
		json_t *list = json_object_get(o, "decoders"), *item;
		size_t i;

		if (!json_is_array(list))
			return bad(c, jpath, "(Sequence) needs \"decoders\" as a list");
		json_array_foreach(list, i, item) {
			snprintf(sub, sizeof(sub), "%s.decoders[%zu]", jpath, i);
			if ((rc = compile(c, item, sub, depth + 1)))
				return rc;
		}
		return 0;
	}
	if (c->d->nsteps == NX_TOKDECODE_STEPS_MAX)
		return nx_error_set(c->err, NX_ELIMIT, c->path, 0, -1,
				    "%s: the tokenizer's decoder has over %d steps", c->path,
				    NX_TOKDECODE_STEPS_MAX);
	st = &c->d->steps[c->d->nsteps];
	memset(st, 0, sizeof(*st));
	if (!strcmp(type, "ByteLevel"))
		st->kind = S_BYTELEVEL;
	else if (!strcmp(type, "Fuse"))
		st->kind = S_FUSE;
	else if (!strcmp(type, "ByteFallback"))
		st->kind = S_BYTEFALLBACK;
	else if (!strcmp(type, "WordPiece")) {
		st->kind = S_WORDPIECE;
		if (!(rc = get_str(c, o, "prefix", "##", &st->a, &st->alen, jpath)))
			rc = get_bool(c, o, "cleanup", true, &st->flag, jpath);
	} else if (!strcmp(type, "BPEDecoder")) {
		st->kind = S_BPE;
		rc = get_str(c, o, "suffix", "</w>", &st->a, &st->alen, jpath);
	} else if (!strcmp(type, "Metaspace")) {
		json_t *aps = json_object_get(o, "add_prefix_space");
		const char *scheme = json_string_value(json_object_get(o, "prepend_scheme"));

		st->kind = S_METASPACE;
		if ((rc = get_char(c, o, "replacement", &st->ch, jpath)))
			return rc;
		if (json_object_get(o, "prepend_scheme") && (!scheme || (strcmp(scheme, "first") &&
		    strcmp(scheme, "always") && strcmp(scheme, "never"))))
			return bad(c, jpath, "has a prepend_scheme other than first, always or never");
		st->flag = !scheme || strcmp(scheme, "never");
		if (json_is_false(aps)) {
			if (st->flag)
				return bad(c, jpath, "has add_prefix_space false with a prepend_scheme "
					   "other than never (Hugging Face refuses it too)");
		}
	} else if (!strcmp(type, "Strip")) {
		st->kind = S_STRIP;
		if (!(rc = get_char(c, o, "content", &st->ch, jpath)) &&
		    !(rc = get_count(c, o, "start", &st->start, jpath)))
			rc = get_count(c, o, "stop", &st->stop, jpath);
	} else if (!strcmp(type, "Replace")) {
		json_t *pat = json_object_get(o, "pattern");

		st->kind = S_REPLACE;
		if (json_object_get(pat, "Regex")) {
			int ecode;
			PCRE2_SIZE eoff;

			if ((rc = get_str(c, pat, "Regex", NULL, &st->a, &st->alen, jpath)))
				return rc;
			st->re = pcre2_compile((PCRE2_SPTR)st->a, st->alen, PCRE2_UTF | PCRE2_UCP,
					       &ecode, &eoff, NULL);
			if (!st->re) {
				PCRE2_UCHAR msg[120];

				pcre2_get_error_message(ecode, msg, sizeof(msg));
				snprintf(sub, sizeof(sub), "(Replace) has a Regex that does not compile: "
					 "%s at offset %zu", (const char *)msg, (size_t)eoff);
				return bad(c, jpath, sub);
			}
			pcre2_jit_compile(st->re, PCRE2_JIT_COMPLETE);  /* else the interpreter */
		} else if ((rc = get_str(c, pat, "String", NULL, &st->a, &st->alen, jpath)))
			return rc;
		rc = get_str(c, o, "content", NULL, &st->b, &st->blen, jpath);
		if (!rc)
			c->d->nsteps++;  /* counted now so that free() finds the compiled regex */
		return rc;
	} else if (!strcmp(type, "CTC")) {
		st->kind = S_CTC;
		if (!(rc = get_str(c, o, "pad_token", "<pad>", &st->a, &st->alen, jpath)) &&
		    !(rc = get_str(c, o, "word_delimiter_token", "|", &st->b, &st->blen, jpath)))
			rc = get_bool(c, o, "cleanup", true, &st->flag, jpath);
	} else {
		snprintf(sub, sizeof(sub), "type '%.64s' is not a decoder nexus knows", type);
		return bad(c, jpath, sub);
	}
	if (!rc)
		c->d->nsteps++;
	return rc;
}

int nx_tokdecoder_new(nx_tokdecoder **out, const nx_tokenizer *t, const char *path,
		      nx_error *err)
{
	nx_tokdecoder *d = calloc(1, sizeof(*d));
	json_t *j = (json_t *)nx_tokenizer_decoder_json(t);
	struct cctx c = { d, path ? path : "tokenizer.json", err };
	int rc;

	if (!d)
		return nx_error_oom(err, path);
	d->t = t;
	d->none = !j;
	if (!j && !strcmp(nx_tokenizer_source(t), "vocab.txt")) {
		/* what transformers' BertTokenizerFast gets for a vocab.txt */
		d->none = false;
		d->nsteps = 1;
		d->steps[0] = (struct step){ .kind = S_WORDPIECE, .a = "##", .alen = 2, .flag = true };
	}
	if (!(d->md = pcre2_match_data_create(1, NULL))) {
		nx_tokdecoder_free(d);
		return nx_error_oom(err, path);
	}
	if (j && (rc = compile(&c, j, "decoder", 0))) {
		nx_tokdecoder_free(d);
		return rc;
	}
	*out = d;
	return 0;
}

void nx_tokdecoder_free(nx_tokdecoder *d)
{
	size_t i;

	if (!d)
		return;
	for (i = 0; i < d->nsteps; i++)
		pcre2_code_free(d->steps[i].re);
	pcre2_match_data_free(d->md);
	for (i = 0; i < 2; i++) {
		free(d->l[i].buf);
		free(d->l[i].end);
		free(d->tmp[i]);
	}
	free(d);
}

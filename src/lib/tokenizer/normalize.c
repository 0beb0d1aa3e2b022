/*
 * normalize.c - Hugging Face's normalizers on one segment of text (valid
 * UTF-8 in, valid UTF-8 out).  Offsets are not tracked: the runtime needs
 * ids, not alignments.
 */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tok_int.h"

/* Rust's char::to_lowercase: the simple mapping, except U+0130 ("i" + U+0307). */
static int put_lower(struct tb *o, uint32_t c)
{
	if (c < 0x80)
		return nx_tok__tb_putc(o, c >= 'A' && c <= 'Z' ? c + 32 : c);
	if (c == 0x130)
		return nx_tok__tb_putc(o, 'i') || nx_tok__tb_putc(o, 0x307) ? NX_ENOMEM : 0;
	return nx_tok__tb_putc(o, (uint32_t)utf8proc_tolower((utf8proc_int32_t)c));
}

/* strip_accents (NFD, drop Mn) then lowercase, for one character */
static int bert_emit(const struct tnorm *n, uint32_t c, struct tb *o)
{
	utf8proc_int32_t d[16];
	utf8proc_ssize_t nd, k;
	int last = 0;

	if (!n->strip_accents || c < 0x80)
		return n->lowercase ? put_lower(o, c) : nx_tok__tb_putc(o, c);
	nd = utf8proc_decompose_char((utf8proc_int32_t)c, d, 16, UTF8PROC_DECOMPOSE, &last);
	if (nd < 0 || nd > 16) {
		d[0] = (utf8proc_int32_t)c;
		nd = 1;
	}
	for (k = 0; k < nd; k++) {
		if (nx_tok__is_mn((uint32_t)d[k]))
			continue;
		if (n->lowercase ? put_lower(o, (uint32_t)d[k]) : nx_tok__tb_putc(o, (uint32_t)d[k]))
			return NX_ENOMEM;
	}
	return 0;
}

/* BertNormalizer: clean_text, handle_chinese_chars, strip_accents, lowercase. */
static int bert(const struct tnorm *n, const char *s, size_t len, struct tb *o)
{
	size_t i = 0;

	while (i < len) {
		uint32_t c = nx_tok__next(s, len, &i);

		if (n->clean_text) {
			if (c == 0 || nx_tok__is_control(c))
				continue;
			if (nx_tok__is_ws(c))
				c = ' ';
		}
		if (n->chinese && nx_tok__is_cjk(c)) {
			if (nx_tok__tb_putc(o, ' ') || bert_emit(n, c, o) || nx_tok__tb_putc(o, ' '))
				return NX_ENOMEM;
		} else if (bert_emit(n, c, o)) {
			return NX_ENOMEM;
		}
	}
	return 0;
}

static int unicode_form(enum norm_type type, const char *s, size_t len, struct tb *o)
{
	static const int opts[] = {
		[N_NFC] = UTF8PROC_STABLE | UTF8PROC_COMPOSE,
		[N_NFD] = UTF8PROC_STABLE | UTF8PROC_DECOMPOSE,
		[N_NFKC] = UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT,
		[N_NFKD] = UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT,
	};
	utf8proc_uint8_t *dst = NULL;
	utf8proc_ssize_t n;
	size_t i;
	int rc;

	for (i = 0; i < len && !((unsigned char)s[i] & 0x80); i++)
		;
	if (i == len)  /* ASCII is its own normal form */
		return nx_tok__tb_put(o, s, len);
	n = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, &dst,
			 (utf8proc_option_t)opts[type]);
	if (n < 0)
		return NX_ENOMEM;
	rc = nx_tok__tb_put(o, dst, (size_t)n);
	free(dst);
	return rc;
}

/* darts-clone double array: the first (shortest) value whose key prefixes s. */
static long charsmap_find(const struct tnorm *n, const unsigned char *s, size_t len)
{
	size_t pos = 0, i;
	uint32_t unit;

#define OFFSET(u) (((u) >> 10) << (((u) & (1u << 9)) >> 6))
	if (!n->trie_n)
		return -1;
	unit = n->trie[0];
	pos ^= OFFSET(unit);
	for (i = 0; i < len && s[i]; i++) {
		pos ^= s[i];
		if (pos >= n->trie_n)
			return -1;
		unit = n->trie[pos];
		if ((unit & ((1u << 31) | 0xff)) != s[i])
			return -1;
		pos ^= OFFSET(unit);
		if (pos >= n->trie_n)
			return -1;
		if ((unit >> 8) & 1)
			return (long)(n->trie[pos] & ((1u << 31) - 1));
	}
#undef OFFSET
	return -1;
}

/* The replacement of s from the charsmap; 1 if found (written to o). */
static int charsmap_put(const struct tnorm *n, const char *s, size_t len, struct tb *o, int *rc)
{
	long v = charsmap_find(n, (const unsigned char *)s, len);
	const char *p, *e;

	if (v < 0 || (size_t)v >= n->blob_len)
		return 0;
	p = n->blob + v;
	e = memchr(p, 0, n->blob_len - (size_t)v);
	*rc = nx_tok__tb_put(o, p, e ? (size_t)(e - p) : n->blob_len - (size_t)v);
	return 1;
}

/* Precompiled: SentencePiece's charsmap, per extended grapheme cluster as
 * Hugging Face applies it (whole cluster if under 6 bytes, else per char). */
static int precompiled(const struct tnorm *n, const char *s, size_t len, struct tb *o)
{
	size_t i = 0;

	while (i < len) {
		size_t gs = i, ge, j;
		utf8proc_int32_t state = 0;
		uint32_t c = nx_tok__next(s, len, &i), d;
		int rc = 0;

		ge = i;
		while (ge < len) {
			size_t k = ge;

			d = nx_tok__next(s, len, &k);
			if (utf8proc_grapheme_break_stateful((utf8proc_int32_t)c, (utf8proc_int32_t)d,
							     &state))
				break;
			c = d;
			ge = k;
		}
		i = ge;
		if (ge - gs < 6 && charsmap_put(n, s + gs, ge - gs, o, &rc)) {
			if (rc)
				return rc;
			continue;
		}
		for (j = gs; j < ge;) {
			size_t cs = j;

			nx_tok__next(s, ge, &j);
			if (charsmap_put(n, s + cs, j - cs, o, &rc)) {
				if (rc)
					return rc;
			} else if (nx_tok__tb_put(o, s + cs, j - cs)) {
				return NX_ENOMEM;
			}
		}
	}
	return 0;
}

static int nmt(const char *s, size_t len, struct tb *o)
{
	size_t i = 0;

	while (i < len) {
		uint32_t c = nx_tok__next(s, len, &i);

		if ((c >= 1 && c <= 8) || c == 0x0b || (c >= 0x0e && c <= 0x1f) || c == 0x7f ||
		    c == 0x8f || c == 0x9f)
			continue;
		if (c == 9 || c == 10 || c == 12 || c == 13 || c == 0x1680 ||
		    (c >= 0x200b && c <= 0x200f) || c == 0x2028 || c == 0x2029 || c == 0x2581 ||
		    c == 0xfeff || c == 0xfffd)
			c = ' ';
		if (nx_tok__tb_putc(o, c))
			return NX_ENOMEM;
	}
	return 0;
}

static int replace(nx_tokenizer *t, const struct tnorm *n, const char *s, size_t len,
		   struct tb *o, nx_error *err)
{
	struct tre *re = (struct tre *)&n->re;
	size_t from = 0, last = 0, ms, me;
	long long prev_end = -1;
	int r = 0;

	while (from <= len && (r = nx_tok__re_next(re, s, len, from, &ms, &me)) > 0) {
		if (ms == me && (long long)me == prev_end) {
			/* an empty match right after the previous one: step one character */
			if (from >= len)
				break;
			nx_tok__next(s, len, &from);
			continue;
		}
		if (nx_tok__tb_put(o, s + last, ms - last) || nx_tok__tb_put(o, n->str, n->str_len))
			return NX_ENOMEM;
		last = me;
		prev_end = (long long)me;
		from = me;
	}
	if (r < 0)
		return nx_error_set(err, NX_ELIMIT, NULL, 0, -1,
				    "the tokenizer's Replace normalizer regex gave up on this text "
				    "(PCRE2 error %d)", r);
	return nx_tok__tb_put(o, s + last, len - last);
}

int nx_tok__normalize(nx_tokenizer *t, struct tnorm *n, const char *s, size_t len,
		      struct tb *o, nx_error *err)
{
	size_t i, a, b;
	int rc = 0;

	o->n = 0;
	switch (n->type) {
	case N_BERT:
		rc = bert(n, s, len, o);
		break;
	case N_NFC: case N_NFD: case N_NFKC: case N_NFKD:
		rc = unicode_form(n->type, s, len, o);
		break;
	case N_LOWER:
		for (i = 0; i < len && !rc;)
			rc = put_lower(o, nx_tok__next(s, len, &i));
		break;
	case N_STRIP_ACCENTS:
		for (i = 0; i < len && !rc;) {
			uint32_t c = nx_tok__next(s, len, &i);

			if (!nx_tok__is_mark(c))
				rc = nx_tok__tb_putc(o, c);
		}
		break;
	case N_STRIP:
		a = 0;
		b = len;
		if (n->left)
			while (a < b) {
				size_t k = a;

				if (!nx_tok__is_ws(nx_tok__next(s, len, &k)))
					break;
				a = k;
			}
		if (n->right)
			while (b > a) {
				size_t st;

				if (!nx_tok__is_ws(nx_tok__prev(s, b, &st)))
					break;
				b = st;
			}
		rc = nx_tok__tb_put(o, s + a, b - a);
		break;
	case N_REPLACE:
		rc = replace(t, n, s, len, o, err);
		if (rc && rc != NX_ENOMEM)
			return rc;
		break;
	case N_PREPEND:
		if (len)
			rc = nx_tok__tb_put(o, n->str, n->str_len);
		if (!rc)
			rc = nx_tok__tb_put(o, s, len);
		break;
	case N_PRECOMPILED:
		rc = precompiled(n, s, len, o);
		break;
	case N_NMT:
		rc = nmt(s, len, o);
		break;
	case N_BYTELEVEL:
		for (i = 0; i < len && !rc; i++)
			rc = nx_tok__tb_putc(o, nx_tok__byte_char((unsigned char)s[i]));
		break;
	case N_SEQ: {
		const char *cur = s;
		size_t cur_len = len, k;

		if (!n->nkids)
			return nx_tok__tb_put(o, s, len) ? nx_error_oom(err, NULL) : 0;
		for (k = 0; k < n->nkids; k++) {
			struct tb *dst = k + 1 == n->nkids ? o : &n->scratch[k & 1];

			if ((rc = nx_tok__normalize(t, &n->kids[k], cur, cur_len, dst, err)))
				return rc;
			cur = dst->p;
			cur_len = dst->n;
		}
		return 0;
	}
	}
	if (rc)
		return nx_error_set(err, NX_ENOMEM, NULL, 0, -1, "out of memory normalizing the text");
	return 0;
}

void nx_tok__norm_release(struct tnorm *n)
{
	size_t k;

	if (!n)
		return;
	for (k = 0; k < n->nkids; k++)
		nx_tok__norm_release(&n->kids[k]);
	free(n->kids);
	nx_tok__re_release(&n->re);
	free(n->str);
	free(n->trie);
	free(n->blob);
	free(n->scratch[0].p);
	free(n->scratch[1].p);
}

/*
 * tokenizer.c - encoding: BertNormalizer, BertPreTokenizer, WordPiece and
 * the [CLS] ... [SEP] post-processor, with the exact character classes of
 * Hugging Face `tokenizers` (Rust char::is_whitespace, Unicode category P*
 * plus ASCII punctuation, categories Cc Cf Co as "control").
 *
 * The text is decoded and normalized in one pass into a codepoint array
 * owned by the tokenizer (grown by doubling, never per character); words are
 * then cut from that array and re-encoded as UTF-8 into a second scratch
 * buffer for the vocabulary lookups.  ASCII never touches utf8proc.
 */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer_int.h"
#include "tokenizer_ucd.h"

#define NX_TOKENIZER_TEXT_MAX (64u << 20)  /* bytes of one input text */

enum { A_OTHER = 0, A_WS = 1, A_PUNCT = 2, A_CTRL = 4 };

/* Class of each ASCII byte: \t \n \r are whitespace, not control. */
static unsigned char ascii_class(unsigned c)
{
	if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
		return A_WS;
	if (c == 0x0b || c == 0x0c)  /* whitespace to Rust, control to clean_text */
		return A_WS | A_CTRL;
	if (c < 0x20 || c == 0x7f)
		return A_CTRL;
	if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
	    (c >= 123 && c <= 126))
		return A_PUNCT;
	return A_OTHER;
}

/* Rust's char::is_whitespace: the Unicode White_Space property. */
static int is_ws(uint32_t c)
{
	if (c < 0x80)
		return ascii_class(c) & A_WS;
	return c == 0x85 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) ||
	       c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/*
 * Hugging Face's control / punctuation / non-spacing-mark classes for a
 * non-ASCII character: utf8proc's category, except for the few hundred code
 * points whose category is newer than Hugging Face's tables (tokenizer_ucd.h).
 */
static unsigned hf_class(uint32_t c)
{
	size_t lo = 0, hi = sizeof(nx_ucd_hf) / sizeof(nx_ucd_hf[0]);
	utf8proc_category_t k;

	if (c >= nx_ucd_hf[0].lo) {
		while (lo < hi) {
			size_t mid = (lo + hi) / 2;

			if (c < nx_ucd_hf[mid].lo)
				hi = mid;
			else if (c > nx_ucd_hf[mid].hi)
				lo = mid + 1;
			else
				return nx_ucd_hf[mid].cls;
		}
	}
	k = utf8proc_category((utf8proc_int32_t)c);
	if (k >= UTF8PROC_CATEGORY_CC)  /* Cc Cf Cs Co; not Cn: HF keeps unassigned */
		return NX_UCD_OTHER;
	if (k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO)
		return NX_UCD_PUNCT;
	return k == UTF8PROC_CATEGORY_MN ? NX_UCD_MN : 0;
}

static int is_punct(uint32_t c)
{
	if (c < 0x80)
		return ascii_class(c) & A_PUNCT;
	return hf_class(c) & NX_UCD_PUNCT;
}

static int is_cjk(uint32_t c)
{
	return (c >= 0x4e00 && c <= 0x9fff) || (c >= 0x3400 && c <= 0x4dbf) ||
	       (c >= 0x20000 && c <= 0x2a6df) || (c >= 0x2a700 && c <= 0x2b73f) ||
	       (c >= 0x2b740 && c <= 0x2b81f) || (c >= 0x2b920 && c <= 0x2ceaf) ||
	       (c >= 0xf900 && c <= 0xfaff) || (c >= 0x2f800 && c <= 0x2fa1f);
}

static int push(nx_tokenizer *t, uint32_t c)
{
	if (t->cp_len == t->cp_cap) {
		size_t cap = t->cp_cap ? t->cp_cap * 2 : 256;
		uint32_t *cp = realloc(t->cp, cap * sizeof(*cp));

		if (!cp)
			return NX_ENOMEM;
		t->cp = cp;
		t->cp_cap = cap;
	}
	t->cp[t->cp_len++] = c;
	return 0;
}

static int push_lower(nx_tokenizer *t, uint32_t c)
{
	if (!t->lowercase)
		return push(t, c);
	if (c == 0x130)  /* Rust lowercases U+0130 to "i" + U+0307 */
		return push(t, 'i') ? NX_ENOMEM : push(t, 0x307);
	return push(t, (uint32_t)utf8proc_tolower((utf8proc_int32_t)c));
}

/* strip_accents (NFD, drop Mn) then lowercase, for one character */
static int emit(nx_tokenizer *t, uint32_t c)
{
	utf8proc_int32_t d[16];
	utf8proc_ssize_t n, k;
	int last = 0;

	if (c < 0x80)
		return push(t, t->lowercase && c >= 'A' && c <= 'Z' ? c + 32 : c);
	if (!t->strip_accents)
		return push_lower(t, c);
	n = utf8proc_decompose_char((utf8proc_int32_t)c, d, 16, UTF8PROC_DECOMPOSE, &last);
	if (n < 0 || n > 16)
		return push_lower(t, c);
	for (k = 0; k < n; k++)
		if (!(hf_class((uint32_t)d[k]) & NX_UCD_MN) && push_lower(t, (uint32_t)d[k]))
			return NX_ENOMEM;
	return 0;
}

/* Decode one non-ASCII character; 0 on success, -1 on invalid UTF-8. */
static int decode(const unsigned char *s, size_t len, size_t *i, uint32_t *out)
{
	size_t p = *i, n, k;
	uint32_t c = s[p], min;

	if (c >= 0xc2 && c <= 0xdf) {
		n = 1; c &= 0x1f; min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 2; c &= 0x0f; min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 3; c &= 0x07; min = 0x10000;
	} else {
		return -1;
	}
	if (len - p <= n)
		return -1;
	for (k = 1; k <= n; k++) {
		if ((s[p + k] & 0xc0) != 0x80)
			return -1;
		c = (c << 6) | (s[p + k] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return -1;
	*i = p + n + 1;
	*out = c;
	return 0;
}

/* Longest added token (matched on the raw text) starting at s, or -1. */
static long match_added(const nx_tokenizer *t, const char *s, size_t len)
{
	size_t k, best_len = 0;
	long best = -1;

	for (k = 0; k < t->nadded; k++) {
		const struct nx_added_token *a = &t->added[k];

		if (a->len <= len && a->len > best_len && !memcmp(a->content, s, a->len)) {
			best = (long)k;
			best_len = a->len;
		}
	}
	return best;
}

static int normalize(nx_tokenizer *t, const char *text, size_t len, nx_error *err)
{
	const unsigned char *s = (const unsigned char *)text;
	size_t i = 0;
	uint32_t c;
	int rc;

	t->cp_len = 0;
	while (i < len) {
		unsigned char b = s[i];

		if (t->nadded && (t->added_first[b >> 3] & (1u << (b & 7)))) {
			long k = match_added(t, text + i, len - i);

			if (k >= 0) {
				if (push(t, NX_TOK_MARK + (uint32_t)k))
					return NX_ENOMEM;
				i += t->added[k].len;
				continue;
			}
		}
		if (b < 0x80) {
			c = b;
			i++;
			if (t->clean_text) {
				unsigned char cl = ascii_class(c);

				if (cl & A_CTRL)
					continue;
				if (cl & A_WS)
					c = ' ';
			}
			rc = emit(t, c);
		} else {
			if (decode(s, len, &i, &c))
				return nx_error_set(err, NX_EFORMAT, NULL, 0, (long long)i,
						    "invalid UTF-8 at byte %zu of the text", i);
			if (t->clean_text) {
				if (c == 0xfffd || (hf_class(c) & NX_UCD_OTHER))
					continue;
				if (is_ws(c))
					c = ' ';
			}
			if (t->chinese && is_cjk(c))
				rc = emit(t, ' ') || emit(t, c) || emit(t, ' ') ? NX_ENOMEM : 0;
			else
				rc = emit(t, c);
		}
		if (rc)
			return NX_ENOMEM;
	}
	return 0;
}

static int reserve_word(nx_tokenizer *t, size_t nch)
{
	char *w;
	uint32_t *b;
	size_t cap;

	if (nch + 1 <= t->wcap)
		return 0;
	for (cap = t->wcap ? t->wcap : 64; cap < nch + 1; cap *= 2)
		;
	if (!(w = realloc(t->wbuf, cap * 4)))
		return NX_ENOMEM;
	t->wbuf = w;
	if (!(b = realloc(t->boff, cap * sizeof(*b))))
		return NX_ENOMEM;
	t->boff = b;
	t->wcap = cap;
	return 0;
}

/*
 * WordPiece on cp[s, e): greedy longest match first; a word with a piece
 * that is not in the vocabulary, or longer than max_chars, becomes one
 * unknown token.  Pieces beyond `limit` are dropped (truncation).
 */
static int wordpiece(nx_tokenizer *t, size_t s, size_t e, int64_t *out, size_t *n,
		     size_t limit)
{
	size_t nch = e - s, k, start = 0, first = *n, pieces = 0;
	char *w;

	if (nch > t->max_chars) {
		out[(*n)++] = t->unk_id;
		return 0;
	}
	if (reserve_word(t, nch))
		return NX_ENOMEM;
	w = t->wbuf;
	t->boff[0] = 0;
	for (k = 0; k < nch; k++) {
		uint32_t c = t->cp[s + k], o = t->boff[k];

		if (c < 0x80) {
			w[o++] = (char)c;
		} else {
			o += (uint32_t)utf8proc_encode_char((utf8proc_int32_t)c,
							    (utf8proc_uint8_t *)w + o);
		}
		t->boff[k + 1] = o;
	}
	while (start < nch) {
		size_t end = nch, plen = start ? t->prefix_len : 0;
		int64_t id = -1;

		while (end > start && t->boff[end] - t->boff[start] + plen > t->v.longest)
			end--;
		for (; end > start; end--) {
			id = nx_vocab_get2(&t->v, t->prefix, plen, w + t->boff[start],
					   t->boff[end] - t->boff[start]);
			if (id >= 0)
				break;
		}
		if (id < 0) {
			out[first] = t->unk_id;
			*n = first + 1;
			return 0;
		}
		if (first + pieces < limit)
			out[first + pieces] = id;
		pieces++;
		start = end;
	}
	*n = first + pieces < limit ? first + pieces : limit;
	return 0;
}

int nx_tokenizer_encode(nx_tokenizer *t, const char *text, size_t len, size_t max_len,
			int64_t *ids_out, size_t *n_out, nx_error *err)
{
	size_t limit, n = 0, i = 0;
	int64_t *out;
	int rc;

	if (max_len < t->npre + t->npost + 1)
		return nx_error_set(err, NX_EUSAGE, NULL, 0, -1,
				    "max_sequence_length %zu leaves no room for the text; use at least %zu",
				    max_len, t->npre + t->npost + 1);
	if (len > NX_TOKENIZER_TEXT_MAX)
		return nx_error_set(err, NX_ELIMIT, NULL, 0, -1,
				    "text of %zu bytes is over the %u byte limit", len,
				    NX_TOKENIZER_TEXT_MAX);
	if ((rc = normalize(t, text, len, err)))
		return rc == NX_ENOMEM ? nx_error_set(err, rc, NULL, 0, -1, "out of memory") : rc;
	limit = max_len - t->npre - t->npost;
	out = ids_out + t->npre;
	while (i < t->cp_len && n < limit) {
		uint32_t c = t->cp[i];
		size_t j;

		if (c >= NX_TOK_MARK) {
			out[n++] = t->added[c - NX_TOK_MARK].id;
			i++;
			continue;
		}
		if (is_ws(c)) {
			i++;
			continue;
		}
		j = i + 1;
		if (!is_punct(c))
			while (j < t->cp_len && t->cp[j] < NX_TOK_MARK && !is_ws(t->cp[j]) &&
			       !is_punct(t->cp[j]))
				j++;
		if (wordpiece(t, i, j, out, &n, limit))
			return nx_error_set(err, NX_ENOMEM, NULL, 0, -1, "out of memory");
		i = j;
	}
	memcpy(ids_out, t->pre, t->npre * sizeof(*ids_out));
	memcpy(out + n, t->post, t->npost * sizeof(*ids_out));
	*n_out = t->npre + n + t->npost;
	return 0;
}

/*
 * The pair API of the tokenizer.json engine (issue #16) on this WordPiece
 * encoder: one sequence, type ids 0, a mask of ones, and the ids the
 * post-processor put around the words marked special.
 */
int nx_tokenizer_encode_pair(nx_tokenizer *t, const char *a, size_t alen, const char *b,
			     size_t blen, size_t max_len, int64_t *ids_out, int64_t *type_ids,
			     int64_t *attention_mask, int64_t *special_mask, size_t *n_out,
			     nx_error *err)
{
	size_t i, n = 0;
	int rc;

	if (b)
		return nx_error_set(err, NX_ECONFIG, NULL, 0, -1,
				    "this tokenizer does not encode sentence pairs yet");
	if ((rc = nx_tokenizer_encode(t, a, alen, max_len, ids_out, &n, err)))
		return rc;
	for (i = 0; i < n; i++) {
		if (type_ids)
			type_ids[i] = 0;
		if (attention_mask)
			attention_mask[i] = 1;
		if (special_mask)
			special_mask[i] = i < t->npre || i + t->npost >= n;
	}
	*n_out = n;
	return 0;
}

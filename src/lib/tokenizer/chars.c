/*
 * chars.c - Hugging Face `tokenizers`' character classes (Rust
 * char::is_whitespace, Unicode category P* plus ASCII punctuation, Cc Cf Co
 * as "control", Rust regex \w) and small UTF-8 helpers.  utf8proc gives the
 * categories, except for the few hundred code points whose category is
 * newer than Hugging Face's tables (ucd.h).  ASCII never touches utf8proc.
 */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tok_int.h"
#include "ucd.h"

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

int nx_tok__is_ws(uint32_t c)
{
	if (c < 0x80)
		return ascii_class(c) & A_WS;
	return c == 0x85 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) ||
	       c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/* Hugging Face's class bits of c where its tables differ from utf8proc, else -1. */
static int ucd_lookup(uint32_t c)
{
	size_t lo = 0, hi = sizeof(nx_ucd_hf) / sizeof(nx_ucd_hf[0]);

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (c < nx_ucd_hf[mid].lo)
			hi = mid;
		else if (c > nx_ucd_hf[mid].hi)
			lo = mid + 1;
		else
			return nx_ucd_hf[mid].cls;
	}
	return -1;
}

static unsigned hf_class(uint32_t c)
{
	utf8proc_category_t k;
	int cls = ucd_lookup(c);

	if (cls >= 0)
		return (unsigned)cls;
	k = utf8proc_category((utf8proc_int32_t)c);
	if (k >= UTF8PROC_CATEGORY_CC)  /* Cc Cf Cs Co; not Cn: HF keeps unassigned */
		return NX_UCD_OTHER;
	if (k >= UTF8PROC_CATEGORY_PC && k <= UTF8PROC_CATEGORY_PO)
		return NX_UCD_PUNCT;
	return k == UTF8PROC_CATEGORY_MN ? NX_UCD_MN : 0;
}

int nx_tok__is_punct(uint32_t c)
{
	if (c < 0x80)
		return ascii_class(c) & A_PUNCT;
	return hf_class(c) & NX_UCD_PUNCT;
}

int nx_tok__is_control(uint32_t c)
{
	if (c < 0x80)
		return (ascii_class(c) & A_CTRL) != 0;
	return c == 0xfffd || (hf_class(c) & NX_UCD_OTHER);
}

int nx_tok__is_mn(uint32_t c)
{
	return c >= 0x80 && (hf_class(c) & NX_UCD_MN);
}

/* StripAccents' combining marks: Hugging Face's table is older than
 * utf8proc's; the marks added since (ucd.h, bar U+08D3-U+08E1 and U+1885-6, which it
 * has) are not marks to it. */
int nx_tok__is_mark(uint32_t c)
{
	utf8proc_category_t k;
	int cls;

	if (c < 0x300)
		return 0;
	if (!(c >= 0x8d3 && c <= 0x8e1) && c != 0x1885 && c != 0x1886 && (cls = ucd_lookup(c)) >= 0)
		return (cls & NX_UCD_MN) != 0;
	k = utf8proc_category((utf8proc_int32_t)c);
	return k == UTF8PROC_CATEGORY_MN || k == UTF8PROC_CATEGORY_MC ||
	       k == UTF8PROC_CATEGORY_ME;
}

int nx_tok__is_numeric(uint32_t c)
{
	utf8proc_category_t k;

	if (c < 0x80)
		return c >= '0' && c <= '9';
	k = utf8proc_category((utf8proc_int32_t)c);
	return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL ||
	       k == UTF8PROC_CATEGORY_NO;
}

/* Rust regex's \w: Alphabetic, M*, Nd, Pc, Join_Control. Other_Alphabetic
 * outside M* and L* is the circled and squared letters. */
int nx_tok__is_word(uint32_t c)
{
	utf8proc_category_t k;

	if (c < 0x80)
		return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		       c == '_';
	if (c == 0x200c || c == 0x200d || (c >= 0x24b6 && c <= 0x24e9) ||
	    (c >= 0x1f130 && c <= 0x1f149) || (c >= 0x1f150 && c <= 0x1f169) ||
	    (c >= 0x1f170 && c <= 0x1f189))
		return 1;
	k = utf8proc_category((utf8proc_int32_t)c);
	return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_ME) ||
	       k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL ||
	       k == UTF8PROC_CATEGORY_PC;
}

int nx_tok__is_cjk(uint32_t c)
{
	return (c >= 0x4e00 && c <= 0x9fff) || (c >= 0x3400 && c <= 0x4dbf) ||
	       (c >= 0x20000 && c <= 0x2a6df) || (c >= 0x2a700 && c <= 0x2b73f) ||
	       (c >= 0x2b740 && c <= 0x2b81f) || (c >= 0x2b920 && c <= 0x2ceaf) ||
	       (c >= 0xf900 && c <= 0xfaff) || (c >= 0x2f800 && c <= 0x2fa1f);
}

uint32_t nx_tok__next(const char *str, size_t len, size_t *i)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t p = *i;
	uint32_t c = s[p];

	if (c < 0x80) {
		*i = p + 1;
		return c;
	}
	if (c < 0xe0 && p + 1 < len) {
		*i = p + 2;
		return ((c & 0x1f) << 6) | (s[p + 1] & 0x3f);
	}
	if (c < 0xf0 && p + 2 < len) {
		*i = p + 3;
		return ((c & 0x0f) << 12) | ((s[p + 1] & 0x3fu) << 6) | (s[p + 2] & 0x3f);
	}
	if (p + 3 < len) {
		*i = p + 4;
		return ((c & 0x07) << 18) | ((s[p + 1] & 0x3fu) << 12) | ((s[p + 2] & 0x3fu) << 6) |
		       (s[p + 3] & 0x3f);
	}
	*i = len;
	return 0xfffd;
}

uint32_t nx_tok__prev(const char *s, size_t end, size_t *start)
{
	size_t p = end, q;

	while (p > 0 && ((unsigned char)s[p - 1] & 0xc0) == 0x80)
		p--;
	if (p > 0)
		p--;
	q = p;
	*start = p;
	return nx_tok__next(s, end, &q);
}

size_t nx_tok__utf8_len(const char *s, size_t len)
{
	size_t i, n = 0;

	for (i = 0; i < len; i++)
		n += ((unsigned char)s[i] & 0xc0) != 0x80;
	return n;
}

int nx_tok__tb_putc(struct tb *b, uint32_t c)
{
	if (nx_tok__tb_reserve(b, 4))
		return NX_ENOMEM;
	if (c < 0x80)
		b->p[b->n++] = (char)c;
	else
		b->n += (size_t)utf8proc_encode_char((utf8proc_int32_t)c,
						     (utf8proc_uint8_t *)b->p + b->n);
	return 0;
}

long nx_tok__utf8_check(const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t p = 0;

	while (p < len) {
		uint32_t c = s[p], min;
		size_t n, k;

		if (c < 0x80) {
			p++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			n = 1; c &= 0x1f; min = 0x80;
		} else if (c >= 0xe0 && c <= 0xef) {
			n = 2; c &= 0x0f; min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			n = 3; c &= 0x07; min = 0x10000;
		} else {
			return (long)p;
		}
		if (len - p <= n)
			return (long)p;
		for (k = 1; k <= n; k++) {
			if ((s[p + k] & 0xc0) != 0x80)
				return (long)p;
			c = (c << 6) | (s[p + k] & 0x3f);
		}
		if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
			return (long)p;
		p += n + 1;
	}
	return -1;
}

int nx_tok__tb_reserve(struct tb *b, size_t more)
{
	if (more > SIZE_MAX - b->n)
		return NX_ENOMEM;
	return b->n + more <= b->cap ? 0 : nx_array_grow(&b->p, &b->cap, b->n + more, 1, SIZE_MAX);
}

int nx_tok__tb_put(struct tb *b, const void *s, size_t len)
{
	if (nx_tok__tb_reserve(b, len))
		return NX_ENOMEM;
	if (len)
		memcpy(b->p + b->n, s, len);
	b->n += len;
	return 0;
}

int nx_tok__ib_push(struct ib *b, int64_t v)
{
	if (b->n == b->cap && NX_ARRAY_PUSH(b->p, b->cap, b->n))
		return NX_ENOMEM;
	b->p[b->n++] = v;
	return 0;
}

int nx_tok__split_add(struct tsplit *s, const char *p, size_t len, int32_t added, bool at0)
{
	struct tpiece *pc;

	if (s->n == s->cap && NX_ARRAY_PUSH(s->v, s->cap, s->n))
		return NX_ENOMEM;
	pc = &s->v[s->n];
	pc->off = (uint32_t)s->text.n;
	pc->len = (uint32_t)len;
	pc->added = added;
	pc->at0 = at0;
	if (nx_tok__tb_put(&s->text, p, len))
		return NX_ENOMEM;
	s->n++;
	return 0;
}

/* GPT-2's byte -> printable character table (ByteLevel). */
uint32_t nx_tok__byte_char(unsigned char b)
{
	static uint16_t table[256];
	static int ready;
	unsigned k, n = 0;

	if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
		uint16_t t[256];

		for (k = 0; k < 256; k++)
			t[k] = (uint16_t)((k >= '!' && k <= '~') || (k >= 0xa1 && k <= 0xac) || k >= 0xae
					  ? k : 256 + n++);
		memcpy(table, t, sizeof(t));  /* every thread writes the same values */
		__atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
	}
	return table[b];
}

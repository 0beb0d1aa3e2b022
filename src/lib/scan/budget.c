/*
 * budget.c - the leak budget's measure (nexus/budget.h): residuals,
 * vocabulary tokens judged as tokens, and their zstd-compressed size.
 */
#include "nexus/budget.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include <zstd.h>

#include "budget_bigram.h"
#include "util/array_int.h"

#define STRONG_LEVEL 19
#define FAST_LEVEL 3
#define TOKEN_CP_MAX 64          /* code points of a token judged at all */
#define SPECIAL_MAX 24           /* bytes inside [..] or <..> of a special token */
#define UPPER_MAX 6              /* letters of an all-capitals token (acronyms) */
#define CONSONANT_RUN_MAX 4
#define ACCENTED_MAX 2           /* accented letters in a Latin word */
#define CJK_ALLOW 4              /* bits a CJK or Hangul token may cost ... */
#define CJK_PER_CHAR 10          /* ... plus these a character (budget_cjk.zst) */
/*
 * Letters of a word that are free; the rest of a longer word is charged.
 * The free allowance must not grow with a token's length: a free token of
 * n CJK characters can carry about 4 + 10n bits chosen along the model's
 * likely pairs (tests/e2e/cjk_stego.py hid 93 bits in 16 characters), a
 * free English-like word about 2 bits a letter.  Measured on real
 * vocabularies (bench/tok_budget_real.py; docs/TRV.md, "Leak budget"):
 * 8 characters cover 95% of a CJK Unigram's CJK and Hangul pieces, 12
 * letters 97-98% of the Latin words of a WordPiece and a byte-level BPE.
 */
#define CJK_FREE_MAX 8
#define WORD_FREE_MAX 12
#define UNMODELLED_MAX 3         /* letters of a word in a script with no letter model */
#define BIGRAM_LIMIT 36          /* average eighths of a bit per Latin bigram (4.5 bits) */
#define MARKS_PER_LETTER 2       /* combining marks on one letter (Vietnamese: ệ) */
#define NAME_PARTS_MAX 3         /* words of a special token's name (start_of_turn) */
/* zstd's window bounds (ZSTD_WINDOWLOG_MIN/_MAX sit behind
 * ZSTD_STATIC_LINKING_ONLY); 2^30 bytes is far past NX_BUDGET_RESIDUAL_MAX */
#define DICT_WINDOWLOG_MIN 10u
#define DICT_WINDOWLOG_MAX 30u
#define DIGITS_MAX 4             /* digits of a number token or a special token's index */

struct nx_budget_buf {
	char *data;
	size_t len, cap;
	uint64_t overflow;       /* bytes past NX_BUDGET_RESIDUAL_MAX, charged raw */
	nx_budget_buf *mirror;   /* gets every nx_budget_add, not the token charges */
};

int nx_budget_buf_new(nx_budget_buf **out, nx_error *err)
{
	nx_budget_buf *b = calloc(1, sizeof(*b));

	if (!b)
		return nx_error_oom(err, NULL);
	*out = b;
	return 0;
}

void nx_budget_buf_free(nx_budget_buf *b)
{
	if (!b)
		return;
	free(b->data);
	free(b);
}

void nx_budget_set_mirror(nx_budget_buf *b, nx_budget_buf *mirror)
{
	b->mirror = mirror;
}

static int add_raw(nx_budget_buf *b, const char *s, size_t len, nx_error *err)
{
	size_t fit = len;

	if (b->len + fit > NX_BUDGET_RESIDUAL_MAX)
		fit = NX_BUDGET_RESIDUAL_MAX - b->len;
	b->overflow += len - fit;
	if (nx_array_grow(&b->data, &b->cap, b->len + fit, 1, SIZE_MAX))
		return nx_error_oom(err, NULL);
	if (fit)
		memcpy(b->data + b->len, s, fit);
	b->len += fit;
	return 0;
}

int nx_budget_add(nx_budget_buf *b, const char *s, size_t len, nx_error *err)
{
	int rc = add_raw(b, s, len, err);

	return rc || !b->mirror ? rc : nx_budget_add(b->mirror, s, len, err);
}

uint64_t nx_budget_residual(const nx_budget_buf *b)
{
	return b->len + b->overflow;
}

static int cost_at(uint64_t *out, const nx_budget_buf *b, int level, nx_error *err)
{
	size_t bound, n;
	void *dst;

	if (!b->len) {
		*out = b->overflow;
		return 0;
	}
	bound = ZSTD_compressBound(b->len);
	if (!(dst = malloc(bound)))
		return nx_error_oom(err, NULL);
	n = ZSTD_compress(dst, bound, b->data, b->len, level);
	free(dst);
	if (ZSTD_isError(n))
		return nx_error_set(err, NX_EINTERNAL, NULL, 0, -1, "zstd failed: %s",
				    ZSTD_getErrorName(n));
	*out = n + b->overflow;
	return 0;
}

int nx_budget_cost(uint64_t *out, const nx_budget_buf *b, nx_error *err)
{
	return cost_at(out, b, b->len <= NX_BUDGET_STRONG_MAX ? STRONG_LEVEL : FAST_LEVEL, err);
}

int nx_budget_stream_cost(uint64_t *out, const nx_budget_buf *b, nx_error *err)
{
	return cost_at(out, b, b->len <= NX_BUDGET_STRONG_MAX ? STRONG_LEVEL :
			       NX_BUDGET_VOCAB_FAST_LEVEL, err);
}

/*
 * The stream's code length given a dictionary the verifier fixed (a
 * --vocab-reference): zstd with dict's bytes as a raw prefix, the window
 * wide enough that a match may reach back to dict's first byte, so a
 * stream equal to dict costs a few dozen bytes however long it is.  The
 * decoder needs the same prefix: a lossless code given dict.
 */
int nx_budget_stream_cost_dict(uint64_t *out, const nx_budget_buf *b, const nx_budget_buf *dict,
			       nx_error *err)
{
	size_t bound, n, span;
	unsigned wlog = DICT_WINDOWLOG_MIN;
	ZSTD_CCtx *cc;
	void *dst;

	if (!dict || !dict->len)
		return nx_budget_stream_cost(out, b, err);
	if (!b->len) {
		*out = b->overflow;
		return 0;
	}
	span = dict->len + b->len;
	while (wlog < DICT_WINDOWLOG_MAX && ((size_t)1 << wlog) < span)
		wlog++;
	bound = ZSTD_compressBound(b->len);
	if (!(dst = malloc(bound)))
		return nx_error_oom(err, NULL);
	if (!(cc = ZSTD_createCCtx())) {
		free(dst);
		return nx_error_oom(err, NULL);
	}
	n = ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel,
				   span <= NX_BUDGET_STRONG_MAX ? STRONG_LEVEL :
				   NX_BUDGET_VOCAB_FAST_LEVEL);
	if (!ZSTD_isError(n))
		n = ZSTD_CCtx_setParameter(cc, ZSTD_c_windowLog, (int)wlog);
	/* long-distance matching finds a long run of the dictionary repeated
	 * anywhere in the window cheaply (a vocabulary reused whole) */
	if (!ZSTD_isError(n) && span > NX_BUDGET_STRONG_MAX)
		n = ZSTD_CCtx_setParameter(cc, ZSTD_c_enableLongDistanceMatching, 1);
	if (!ZSTD_isError(n))
		n = ZSTD_CCtx_refPrefix(cc, dict->data, dict->len);
	if (!ZSTD_isError(n))
		n = ZSTD_compress2(cc, dst, bound, b->data, b->len);
	ZSTD_freeCCtx(cc);
	free(dst);
	if (ZSTD_isError(n))
		return nx_error_set(err, NX_EINTERNAL, NULL, 0, -1, "zstd failed: %s",
				    ZSTD_getErrorName(n));
	*out = n + b->overflow;
	return 0;
}

const char *nx_budget_data(const nx_budget_buf *b, size_t *len)
{
	*len = b->len;
	return b->data;
}

int nx_budget_append(nx_budget_buf *dst, const nx_budget_buf *src, nx_error *err)
{
	int rc = src->len ? nx_budget_add(dst, src->data, src->len, err) : 0;

	if (!rc)
		dst->overflow += src->overflow;
	return rc;
}

int nx_budget_add_varint(nx_budget_buf *b, uint64_t v, nx_error *err)
{
	char buf[10];
	size_t n = 0;

	do {
		buf[n++] = (char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v);
	return nx_budget_add(b, buf, n, err);
}

int nx_budget_add_token(nx_budget_buf *b, const char *s, size_t len, bool *out_charged,
			nx_error *err)
{
	size_t free = nx_budget_token_free(s, len);
	bool charged = free < len;
	int rc = 0;

	/* an implausible token whole; a long one, its letters past the free ones */
	if (charged && !(rc = add_raw(b, s + free, len - free, err)))
		rc = add_raw(b, "\n", 1, err);
	if (!rc && out_charged)
		*out_charged = charged;
	return rc;
}

/* The CJK/Hangul character model ------------------------------------------ */

/*
 * scripts/budget_cjk_gen.py's table (a character's unigram cost, the cost of
 * a character after another), zstd-compressed and linked in as it is:
 * .incbin, because as a C array its 690 KB would be 3 MB of source.  It is
 * unpacked once, on the first CJK or Hangul token (about 3 MB).  The
 * Makefile passes its absolute path (NX_BUDGET_CJK_ZST), so the build does
 * not depend on the directory the assembler runs in.
 */
#ifndef NX_BUDGET_CJK_ZST
#error "NX_BUDGET_CJK_ZST: the absolute path of src/lib/scan/budget_cjk.zst (see the Makefile)"
#endif
__asm__(".section .rodata\n"
	".balign 8\n"
	".globl nx_budget__cjk_zst\n"
	"nx_budget__cjk_zst:\n"
	".incbin \"" NX_BUDGET_CJK_ZST "\"\n"
	".globl nx_budget__cjk_zst_end\n"
	"nx_budget__cjk_zst_end:\n"
	".previous\n");
extern const unsigned char nx_budget__cjk_zst[], nx_budget__cjk_zst_end[];

#define CJK_HEADER 20

static struct {
	unsigned char *raw;
	const unsigned char *uni, *pair_cost;
	uint32_t *keys;
	uint32_t chars, pairs;
	unsigned unknown, backoff;
} cjk;
static pthread_once_t cjk_once = PTHREAD_ONCE_INIT;

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Unpack the table; on any failure cjk.raw stays NULL and every CJK token
 * of two or more characters is charged (the gate fails closed). */
static void cjk_load(void)
{
	size_t zlen = (size_t)(nx_budget__cjk_zst_end - nx_budget__cjk_zst), len, at, i;
	unsigned long long full = ZSTD_getFrameContentSize(nx_budget__cjk_zst, zlen);
	unsigned char *raw;
	uint32_t key = 0;

	if (full == ZSTD_CONTENTSIZE_UNKNOWN || full == ZSTD_CONTENTSIZE_ERROR ||
	    full < CJK_HEADER || full > (64u << 20) || !(raw = malloc((size_t)full)))
		return;
	len = ZSTD_decompress(raw, (size_t)full, nx_budget__cjk_zst, zlen);
	if (ZSTD_isError(len) || len != full || memcmp(raw, "NXCJK1\0\0", 8))
		goto bad;
	cjk.chars = le32(raw + 8);
	cjk.pairs = le32(raw + 12);
	cjk.unknown = raw[16];
	cjk.backoff = raw[17];
	at = CJK_HEADER + (size_t)cjk.chars * 5;
	if (cjk.chars > 65535 || at > len || len - at < cjk.pairs ||
	    !(cjk.keys = malloc(((size_t)cjk.pairs + 1) * sizeof(*cjk.keys))))
		goto bad;
	cjk.uni = raw + CJK_HEADER + (size_t)cjk.chars * 4;
	for (i = 0; i < cjk.pairs; i++) {
		uint32_t delta = 0;
		unsigned shift = 0;

		do {
			if (at >= len || shift > 28)
				goto bad;
			delta |= (uint32_t)(raw[at] & 0x7F) << shift;
			shift += 7;
		} while (raw[at++] & 0x80);
		cjk.keys[i] = key += delta;
	}
	if (len - at != cjk.pairs)
		goto bad;
	cjk.pair_cost = raw + at;
	cjk.raw = raw;
	return;
bad:
	free(cjk.keys);
	cjk.keys = NULL;
	free(raw);
}

/* The index of code point cp in the table, or -1. */
static long cjk_index(utf8proc_int32_t cp)
{
	size_t lo = 0, hi = cjk.chars;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		uint32_t at = le32(cjk.raw + CJK_HEADER + mid * 4);

		if (at == (uint32_t)cp)
			return (long)mid;
		if (at < (uint32_t)cp)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* Eighths of a bit for character b (index, or -1) after a. */
static unsigned cjk_cost(long a, long b)
{
	size_t lo = 0, hi = cjk.pairs;
	uint32_t key;

	if (b < 0)
		return cjk.unknown + cjk.backoff;
	if (a < 0)
		return cjk.uni[b] + cjk.backoff;
	key = (uint32_t)a << 16 | (uint32_t)b;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (cjk.keys[mid] == key)
			return cjk.pair_cost[mid];
		if (cjk.keys[mid] < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return cjk.uni[b] + cjk.backoff;
}

/*
 * Letters of CJK or Hangul: does the model explain them as a word or a
 * phrase?  Their cost (-log2 of the model's probability) must stay within
 * CJK_ALLOW + CJK_PER_CHAR bits a character, and so must the cost of their
 * first CJK_FREE_MAX characters, the part that is free (a longer token's
 * rest is charged, so a free part costs at most 4 + 10 x 8 bits).  Made-up tokens cost more:
 * 3 ideographs drawn at random cost about 19 bits each, 3 drawn from the
 * 3,000 commonest about 14.  Real pieces of a vocabulary trained on CJK
 * text cost 8-9 bits a character (docs/TRV.md, "Leak budget").
 */
static bool cjk_plausible(const utf8proc_int32_t *cp, size_t n)
{
	unsigned long sum;
	long prev;
	size_t i;

	pthread_once(&cjk_once, cjk_load);
	if (!cjk.raw)
		return false;
	prev = cjk_index(cp[0]);
	sum = prev < 0 ? cjk.unknown : cjk.uni[prev];
	for (i = 1; i < n; i++) {
		long cur = cjk_index(cp[i]);

		if (i == CJK_FREE_MAX && sum > 8ul * (CJK_ALLOW + CJK_PER_CHAR * CJK_FREE_MAX))
			return false;
		sum += cjk_cost(prev, cur);
		prev = cur;
	}
	return sum <= 8ul * (CJK_ALLOW + CJK_PER_CHAR * n);
}

/* Token judging ------------------------------------------------------------ */

enum script { SC_NONE, SC_LATIN, SC_GREEK, SC_CYRILLIC, SC_CJK, SC_HANGUL, SC_OTHER };

static enum script script_of(utf8proc_int32_t cp)
{
	if (cp < 0x250 || (cp >= 0x1E00 && cp < 0x1F00))
		return SC_LATIN;
	if (cp >= 0x370 && cp < 0x400)
		return SC_GREEK;
	if (cp >= 0x400 && cp < 0x530)
		return SC_CYRILLIC;
	if ((cp >= 0x3040 && cp < 0x3100) || (cp >= 0x3400 && cp < 0xA000) ||
	    (cp >= 0xF900 && cp < 0xFB00) || cp >= 0x20000)
		return SC_CJK;
	if ((cp >= 0xAC00 && cp < 0xD7B0) || (cp >= 0x1100 && cp < 0x1200))
		return SC_HANGUL;
	/* other alphabets: one script per 128-code-point block */
	return (enum script)(SC_OTHER + (cp >> 7));
}

static bool is_vowel(utf8proc_int32_t base)
{
	return base < 0x80 && strchr("aeiouy", (int)base);
}

/* A lower-case Latin letter's base letter (é -> e, ß -> s), or 0 for one
 * with no ASCII base (æ, ø, ł, þ). */
static utf8proc_int32_t latin_base(utf8proc_int32_t lower)
{
	utf8proc_int32_t d[4];
	int last = 0;

	if (lower < 0x80)
		return lower;
	if (lower == 0xDF)
		return 's';
	if (utf8proc_decompose_char(lower, d, 4, UTF8PROC_DECOMPOSE, &last) < 1 ||
	    d[0] < 'a' || d[0] > 'z')
		return 0;
	return d[0];
}

static bool word_like(const utf8proc_int32_t *cp, size_t n, enum script sc, bool word_start,
		      size_t marked);
static bool is_vowel(utf8proc_int32_t base);

/* One part of a special token's name (between underscores): a short
 * acronym (CLS, EOS) or a word (unused, endoftext, im, start). */
static bool name_part(const char *s, size_t n)
{
	utf8proc_int32_t cp[SPECIAL_MAX];
	size_t i, upper = 0;

	if (!n)
		return false;
	for (i = 0; i < n; i++) {
		cp[i] = (unsigned char)s[i];
		upper += s[i] >= 'A' && s[i] <= 'Z';
	}
	if (upper == n)
		return n <= UPPER_MAX;
	if (n <= 2)             /* s, im, id */
		return true;
	if (n == 3 && !upper)   /* eot, fim, bos: an abbreviation with a vowel */
		return is_vowel(cp[0]) || is_vowel(cp[1]) || is_vowel(cp[2]);
	return word_like(cp, n, SC_LATIN, true, 0);
}

/* [CLS], [unused12], <s>, <|endoftext|>, <pad>: bracketed ASCII names.
 * The name must read like at most 3 words, not be any 24 letters: a
 * vocabulary of such names would carry 17 bytes a token (red team 5). */
static bool special_token(const char *s, size_t len)
{
	size_t i = 1, end, part, digits, parts = 0;

	if (len < 3 || !((s[0] == '[' && s[len - 1] == ']') || (s[0] == '<' && s[len - 1] == '>')))
		return false;
	end = len - 1;
	if (end - i > SPECIAL_MAX)
		return false;
	if (s[i] == '|' || s[i] == '/')
		i++;
	if (end > i && s[end - 1] == '|')
		end--;
	if (i >= end || !((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')))
		return false;
	for (part = i; i < end && ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
				   s[i] == '_'); i++)
		if (s[i] == '_') {
			if (i > part && (++parts > NAME_PARTS_MAX || !name_part(s + part, i - part)))
				return false;
			part = i + 1;
		}
	if (i > part && (++parts > NAME_PARTS_MAX || !name_part(s + part, i - part)))
		return false;
	for (digits = 0; i < end && s[i] >= '0' && s[i] <= '9'; i++)
		digits++;
	return i == end && digits <= DIGITS_MAX;
}

static size_t strip_prefix(const char *s, size_t len)
{
	if (len >= 2 && s[0] == '#' && s[1] == '#')
		return 2;
	if (len >= 2 && !memcmp(s, "\xC4\xA0", 2))          /* Ġ: byte-level BPE space */
		return 2;
	if (len >= 3 && !memcmp(s, "\xE2\x96\x81", 3))      /* ▁: SentencePiece space */
		return 3;
	return 0;
}

/* Average bigram cost of a lower-case ASCII word, in eighths of a bit. */
static unsigned bigram_cost(const utf8proc_int32_t *w, size_t n, bool word_start)
{
	unsigned sum = 0, k = 0, prev = word_start ? 0 : 27;
	size_t i;

	for (i = 0; i < n; i++) {
		unsigned cur = (unsigned)(w[i] - 'a' + 1);

		if (prev != 27) {
			sum += nx_budget__bigram[prev][cur];
			k++;
		}
		prev = cur;
	}
	sum += nx_budget__bigram[prev][27];
	k++;
	return sum / k;
}

/* Letters of one script and case: do they read like a word?  marked: the
 * letters that carry combining marks (each counts as an accented letter,
 * and in a script with no letter model as one more letter). */
static bool word_like(const utf8proc_int32_t *cp, size_t n, enum script sc, bool word_start,
		      size_t marked)
{
	utf8proc_int32_t low[TOKEN_CP_MAX];
	size_t i, upper = 0, run = 0, accented = 0, nobase = 0;
	bool vowel = false;

	for (i = 0; i < n; i++) {
		low[i] = utf8proc_tolower(cp[i]);
		if (low[i] != cp[i])
			upper++;
	}
	/* lower, Capitalized, or a short acronym */
	if (upper && !(upper == 1 && low[0] != cp[0]) && !(upper == n && n <= UPPER_MAX))
		return false;
	/* CJK and Hangul have a character model; without one for the
	 * script, only short words are explained: random words in a
	 * 32-letter alphabet read like words. */
	if (sc == SC_CJK || sc == SC_HANGUL)
		return !marked && cjk_plausible(cp, n);
	if (sc != SC_LATIN)
		return n + marked <= UNMODELLED_MAX;
	/* Latin: accented letters are judged by their base letter; a word
	 * holds few of them (straße, naïve), random words in an alphabet of
	 * accented letters hold many */
	for (i = 0; i < n; i++) {
		utf8proc_int32_t base = latin_base(low[i]);

		accented += base != low[i];
		nobase += !base;
		low[i] = base ? base : 'x';
	}
	if (accented + marked > ACCENTED_MAX || nobase > 1)
		return false;
	if (n < 3)
		return true;
	for (i = 0; i < n; i++) {
		bool v = is_vowel(low[i]);

		vowel |= v;
		run = v ? 0 : run + 1;
		if (run > CONSONANT_RUN_MAX)
			return false;
	}
	return vowel && bigram_cost(low, n, word_start) <= BIGRAM_LIMIT;
}

/* A code point that stands for itself as a one-character token: anything
 * assigned but private-use and surrogates (any code point would make a
 * token of 17 free bits, and a vocabulary of them a channel). */
static bool assigned(utf8proc_int32_t cp)
{
	utf8proc_category_t cat = utf8proc_category(cp);

	return cat != UTF8PROC_CATEGORY_CN && cat != UTF8PROC_CATEGORY_CO &&
	       cat != UTF8PROC_CATEGORY_CS;
}

/* Punctuation, a symbol or a space of the common blocks, as in "...",
 * "?!", "»," or "（": not any code point that is no letter or digit, which
 * made 3 of them 6 free bytes (private use, unassigned; red team 5). */
static bool punct_like(utf8proc_int32_t cp)
{
	utf8proc_category_t cat = utf8proc_category(cp);

	if (!((cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_SO) ||
	      cat == UTF8PROC_CATEGORY_ZS))
		return false;
	return cp < 0x2E80 || (cp >= 0x3000 && cp < 0x3040) || (cp >= 0xFF00 && cp < 0xFFF0);
}

/* A combining mark that can sit on a letter of script sc: the combining
 * diacritics on Latin, a mark of the letter's own block elsewhere. */
static bool mark_fits(utf8proc_int32_t mark, enum script sc)
{
	if (sc == SC_LATIN)
		return mark >= 0x300 && mark < 0x370;
	return script_of(mark) == sc;
}

/* The judge: is the token plausible, and if so how many of its leading
 * bytes are free (*free: len for a token of at most WORD_FREE_MAX letters,
 * or CJK_FREE_MAX of CJK or Hangul; up to the first letter past those for
 * a longer one). */
static bool judge(const char *s, size_t len, size_t *free)
{
	utf8proc_int32_t cp[TOKEN_CP_MAX], letters[TOKEN_CP_MAX];
	size_t at[TOKEN_CP_MAX], letter_at[TOKEN_CP_MAX];
	size_t pre = strip_prefix(s, len), n = 0, nl = 0, digits = 0, other = 0, apos = 0, i, cap;
	size_t marked = 0, on_letter = 0;
	utf8proc_int32_t digit_block = -1;
	enum script sc = SC_NONE;
	utf8proc_ssize_t k;

	if (special_token(s, len)) {
		*free = len;
		return true;
	}
	s += pre;
	len -= pre;
	for (i = 0; i < len; i += (size_t)k) {
		if (n == TOKEN_CP_MAX)
			return false;
		k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(len - i),
				     &cp[n]);
		if (k <= 0)
			return false;
		at[n++] = i;
	}
	*free = pre + len;
	if (n == 0)
		return true;
	if (n == 1)
		return assigned(cp[0]);
	for (i = 0; i < n; i++) {
		utf8proc_category_t cat = utf8proc_category(cp[i]);

		if (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) {
			enum script t = script_of(cp[i]);

			if (sc != SC_NONE && t != sc)
				return false;
			sc = t;
			letter_at[nl] = at[i];
			letters[nl++] = cp[i];
			on_letter = 0;
		} else if (cat >= UTF8PROC_CATEGORY_MN && cat <= UTF8PROC_CATEGORY_ME) {
			/* a mark on a letter is part of it, but it is a choice: it
			 * counts as an accent, and a letter holds at most two (marks
			 * uncounted made 'a' and 60 marks one free letter) */
			if (!nl || (i && !(utf8proc_category(cp[i - 1]) >= UTF8PROC_CATEGORY_LU &&
					   utf8proc_category(cp[i - 1]) <= UTF8PROC_CATEGORY_ME))) {
				other++;
				continue;
			}
			if (!mark_fits(cp[i], sc) || ++on_letter > MARKS_PER_LETTER)
				return false;
			marked += on_letter == 1;
		} else if (cat == UTF8PROC_CATEGORY_ND) {
			/* one script's digits: mixing scripts' digits is data */
			if (digit_block >= 0 && cp[i] >> 4 != digit_block)
				return false;
			digit_block = cp[i] >> 4;
			digits++;
		} else if (cp[i] == '\'' || cp[i] == 0x2019) {
			apos++;
		} else {
			if (!punct_like(cp[i]))
				return false;
			other++;
		}
	}
	if (!nl && !apos)
		return digits ? !other && digits <= DIGITS_MAX : other <= 3;
	if (!nl || digits || other || apos > 1 || !word_like(letters, nl, sc, pre != 2, marked))
		return false;
	cap = sc == SC_CJK || sc == SC_HANGUL ? CJK_FREE_MAX : WORD_FREE_MAX;
	/* the free part must read like a word on its own: judged only as a
	 * whole, 12 random letters and a cheap repeated tail passed (review,
	 * stop 18); cjk_plausible checks its prefix the same way */
	if (nl > cap && sc != SC_CJK && sc != SC_HANGUL &&
	    !word_like(letters, cap, sc, pre != 2, marked))
		return false;
	if (nl > cap)
		*free = pre + letter_at[cap];
	return true;
}

bool nx_budget_token_plausible(const char *s, size_t len)
{
	size_t free;

	return judge(s, len, &free);
}

size_t nx_budget_token_free(const char *s, size_t len)
{
	size_t free;

	return judge(s, len, &free) ? free : 0;
}

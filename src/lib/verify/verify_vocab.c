/*
 * verify_vocab.c - tokenizer vocabularies for check `code` (TRV-2).
 *
 * A vocabulary is data ("teacher" is an English word), so its entries are
 * exempt from the term scan and from the literal-blob rule one entry at a
 * time.  That makes a vocabulary a place to smuggle a tensor, so entries
 * must look like tokens: bounded, printable, not slices of an encoded blob,
 * not a column of long numbers, not repeated; and WordPiece/BPE ids must be
 * what ids are, distinct and dense from 0.
 */
#include "verify_internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "nexus/budget.h"
#include "nexus/magic.h"

#define CHECK NX_CHECK_CODE
/* ids above the entry count a vocabulary may use (added tokens, gaps) */
#define NX_VERIFY_VOCAB_ID_SLACK 1024
/* a number token this long counts as data (years and "1000" do not) */
#define NX_VERIFY_VOCAB_NUMBER_MIN 5

/*
 * The payload the long number entries of a vocabulary of n tokens may
 * carry: NX_MAGIC_DATA_MAX up to NX_BUDGET_VOCAB_TIER1_FREE tokens, in
 * proportion past it (a real Unigram of 73,740 pieces holds 3,222 numbers
 * of 5+ digits, about 9.7 KB of payload: bench/tok_budget_real.py).  The
 * vocabulary bound (tier 2 of the leak budget) charges what they carry
 * either way; this rule is the tripwire for a column of numbers.
 */
static uint64_t numbers_max(uint64_t n)
{
	return n > NX_BUDGET_VOCAB_TIER1_FREE ?
	       (uint64_t)NX_MAGIC_DATA_MAX * n / NX_BUDGET_VOCAB_TIER1_FREE : NX_MAGIC_DATA_MAX;
}

/* A token made of a number once its word-piece prefix (##, Ġ, ▁) is off. */
static size_t number_len(const char *s, size_t len)
{
	size_t i = 0, k;
	bool digit = false;

	while (i < len && (s[i] == '#' || (unsigned char)s[i] >= 0x80))
		i++;
	for (k = i; k < len; k++) {
		if (!strchr("0123456789.+-eE", s[k]) || !s[k])
			return 0;
		digit |= s[k] >= '0' && s[k] <= '9';
	}
	return digit ? len - i : 0;
}

/*
 * An identifier a tokenizer learns from code or documentation
 * (avx512vp2intersectintrin, sha256sum, x86): letters of one case and
 * digits, switching between them at most once every
 * NX_VERIFY_VOCAB_IDENT_SPAN characters.  Base64 mixes cases and carries
 * '+', '/', '='; hex and base32 switch about every 2-4 characters.  Such an
 * entry is not refused as a blob, but it is no plausible token either: the
 * leak budget charges its bytes (nx_budget_token_plausible: letters mixed
 * with digits), so hex or base32 spelled this way is still paid for.
 */
static bool identifier_like(const char *s, size_t len)
{
	size_t i, switches = 0;
	bool lower = false, upper = false;

	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '+' || ch == '/' || ch == '=')
			return false;
		lower |= ch >= 'a' && ch <= 'z';
		upper |= ch >= 'A' && ch <= 'Z';
		switches += i && (ch >= '0' && ch <= '9') != (s[i - 1] >= '0' && s[i - 1] <= '9');
	}
	return !(lower && upper) && switches * NX_VERIFY_VOCAB_IDENT_SPAN <= len;
}

/* A head of at most NX_VERIFY_VOCAB_RUN_UNIT bytes, then a unit of at most
 * that many bytes repeated to the end (the last repeat may be cut).  Each
 * period is tried from the end back, so the cost is linear in the entry. */
static bool is_run(const char *s, size_t len)
{
	size_t p, i;

	for (p = 1; p <= NX_VERIFY_VOCAB_RUN_UNIT && 2 * p <= len; p++) {
		for (i = len - p; i > 0 && s[i - 1] == s[i - 1 + p]; i--)
			;
		if (i <= NX_VERIFY_VOCAB_RUN_UNIT && len - i >= 2 * p)
			return true;
	}
	return false;
}

int nx_vfy__vocab_entry(struct vfy_ctx *c, struct vfy_vocab *v, const char *path, const char *s,
		    size_t len, long line, const char *where)
{
	size_t i, num;
	bool digit = false, alpha = false, coded = true;

	if (len > NX_VERIFY_VOCAB_ENTRY_MAX && !(len <= NX_VERIFY_VOCAB_RUN_MAX && is_run(s, len)))
		return nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_VOCAB_ENTRY_SUSPICIOUS, path, line,
				     "%s: a vocabulary entry of %zu bytes (over %d) can carry "
				     "smuggled data", where, len, NX_VERIFY_VOCAB_ENTRY_MAX);
	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20)
			return nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_VOCAB_ENTRY_SUSPICIOUS, path,
					     line, "%s: a vocabulary entry holds control byte 0x%02x",
					     where, (unsigned char)s[i]);
	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];

		digit |= ch >= '0' && ch <= '9';
		alpha |= (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
		coded &= (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
			 (ch >= 'A' && ch <= 'Z') || ch == '+' || ch == '/' || ch == '=';
	}
	if (len >= NX_VERIFY_VOCAB_CODED_MIN && digit && alpha && coded && !identifier_like(s, len))
		return nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_VOCAB_ENTRY_SUSPICIOUS, path, line,
				     "%s: a vocabulary entry of %zu base64/hex characters is an "
				     "encoded blob, not a token", where, len);
	/* long numbers, one per entry, are a float list written as tokens */
	num = number_len(s, len);
	if (num < NX_VERIFY_VOCAB_NUMBER_MIN || v->reported)
		return 0;
	v->numbers += nx_magic_number_payload(num);
	if (v->numbers <= numbers_max(v->tokens))
		return 0;
	v->reported = true;
	return nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_VOCAB_ENTRY_SUSPICIOUS, path, line,
			     "%s: the vocabulary's number entries of %d+ digits carry over %llu "
			     "bytes of data by here (%d, and in proportion past %u tokens): a "
			     "list of numbers, not tokens", where, NX_VERIFY_VOCAB_NUMBER_MIN,
			     (unsigned long long)numbers_max(v->tokens), NX_MAGIC_DATA_MAX,
			     NX_BUDGET_VOCAB_TIER1_FREE);
}

struct line_ref {
	const char *s;
	size_t len;
	long line;
};

static int line_cmp(const void *a, const void *b)
{
	const struct line_ref *x = a, *y = b;
	size_t n = x->len < y->len ? x->len : y->len;
	int d = memcmp(x->s, y->s, n);

	return d ? d : x->len < y->len ? -1 : x->len > y->len;
}

/* An entry listed twice is no token of the vocabulary: its repeats can
 * spell data with a handful of distinct entries. */
static int check_repeats(struct vfy_ctx *c, const char *path, struct line_ref *e, size_t n)
{
	size_t i;

	if (n < 2)
		return 0;
	qsort(e, n, sizeof(*e), line_cmp);
	for (i = 1; i < n; i++)
		if (!line_cmp(&e[i - 1], &e[i]))
			return nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_VOCAB_ENTRY_SUSPICIOUS, path,
					     e[i].line > e[i - 1].line ? e[i].line : e[i - 1].line,
					     "vocab.txt: an entry of %zu bytes is listed twice (lines "
					     "%ld and %ld); a vocabulary lists each token once", e[i].len,
					     e[i - 1].line, e[i].line);
	return 0;
}

int nx_vfy__vocab_txt(struct vfy_ctx *c, const char *path, const char *buf, size_t len)
{
	const char *p = buf, *end = buf + len;
	struct vfy_vocab v = {0};
	struct line_ref *e = NULL;
	size_t n = 0, cap = 0;
	long line = 1;
	int rc = 0;

	for (; p < end; v.tokens++) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));

		p = nl ? nl + 1 : end;
	}
	p = buf;

	while (!rc && p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t k = nl ? (size_t)(nl - p) : (size_t)(end - p);
		const char *next = nl ? nl + 1 : end;

		if (k && p[k - 1] == '\r')
			k--;
		rc = nx_vfy__vocab_entry(c, &v, path, p, k, line, "vocab.txt");
		if (!rc && k) {
			if (n == cap && NX_ARRAY_PUSH(e, cap, n)) {
				rc = NX_ENOMEM;
				break;
			}
			e[n].s = p;
			e[n].len = k;
			e[n++].line = line;
		}
		p = next;
		line++;
	}
	if (!rc)
		rc = check_repeats(c, path, e, n);
	free(e);
	return rc;
}

uint64_t nx_vfy__vocab_count(json_t *root)
{
	json_t *vocab = json_object_get(json_object_get(root, "model"), "vocab");

	return json_is_object(vocab) ? json_object_size(vocab) :
	       json_is_array(vocab) ? json_array_size(vocab) : 0;
}

static int id_cmp(const void *a, const void *b)
{
	json_int_t x = *(const json_int_t *)a, y = *(const json_int_t *)b;

	return x < y ? -1 : x > y;
}

int nx_vfy__vocab_ids(struct vfy_ctx *c, const char *path, json_t *root)
{
	json_t *vocab = json_object_get(json_object_get(root, "model"), "vocab"), *v;
	json_int_t *ids = NULL;
	size_t n = 0, i, total;
	const char *k;
	int rc = 0;

	if (!json_is_object(vocab) || !(total = json_object_size(vocab)))
		return 0;
	if (!(ids = malloc(total * sizeof(*ids))))
		return NX_ENOMEM;
	json_object_foreach(vocab, k, v) {
		if (!json_is_integer(v) || json_integer_value(v) < 0) {
			rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_VOCAB_ENTRY_SUSPICIOUS, path, 0,
					   "/model/vocab: the id of an entry of %zu bytes is not an "
					   "integer >= 0", strlen(k));
			goto out;
		}
		ids[n++] = json_integer_value(v);
	}
	qsort(ids, n, sizeof(*ids), id_cmp);
	for (i = 1; i < n && ids[i] != ids[i - 1]; i++)
		;
	if (i < n)
		rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_VOCAB_ENTRY_SUSPICIOUS, path, 0,
				   "/model/vocab: id %lld is given to two entries; ids number the "
				   "tokens, they do not carry values", (long long)ids[i]);
	else if ((uint64_t)ids[n - 1] >= (uint64_t)n + NX_VERIFY_VOCAB_ID_SLACK)
		rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_VOCAB_ENTRY_SUSPICIOUS, path, 0,
				   "/model/vocab: id %lld is far past the %zu entries; ids number "
				   "the tokens from 0, they do not carry values",
				   (long long)ids[n - 1], n);
out:
	free(ids);
	return rc;
}

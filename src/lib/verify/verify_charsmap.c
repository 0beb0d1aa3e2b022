/*
 * verify_charsmap.c - a SentencePiece Precompiled charsmap judged by its
 * grammar, for the leak budget (verify_tokjson.c).
 *
 * The charsmap is a map from input strings to their normalized form: a
 * darts-clone double-array trie (the layout src/lib/tokenizer/normalize.c
 * reads at run time) whose values are offsets of NUL-terminated strings in
 * a blob.  It is walked from the root exactly as the runtime follows it,
 * and charged only what Unicode does not explain:
 *   - an entry whose value is NFKC of its key, or NFKC with case folding
 *     (spm_train's nmt_nfkc / nfkc / *_cf rules), or "" or " " for one
 *     control, format or separator code point (the nmt rules), costs
 *     nothing; any other entry is charged its key and value;
 *   - a trie unit the walk never reaches that is not zero, and a blob byte
 *     no value covers, are charged as they are: bytes the runtime never
 *     reads are where data would hide;
 *   - a charsmap the walk cannot finish within its bounds (CM_VISITS
 *     nodes, keys of at most CM_KEY_MAX bytes) is charged whole (besides
 *     what the walk charged before it stopped: only ever more).
 */
#include "verify_internal.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "nexus/budget.h"

#define CM_KEY_MAX 64       /* bytes of one key (spm's longest are a few code points) */
/* trie nodes visited, key by key (a shared suffix once per key that
 * reaches it): spm_train's nmt_nfkc needs 5.9 per unit (262,092 for 44,288) */
#define CM_VISITS(n) (32 * (n) + 65536)

struct cm {
	const uint32_t *unit;
	size_t n;
	const unsigned char *blob;
	size_t blob_len;
	unsigned char *seen_unit, *seen_blob;
	size_t visits;
	nx_budget_buf *b;
	nx_error *err;
	struct nx_vfy_charsmap_stats *st;
	bool broken;
};

#define CM_OFFSET(u) (((u) >> 10) << (((u) & (1u << 9)) >> 6))
#define CM_LABEL(u) ((u) & ((1u << 31) | 0xffu))
#define CM_HAS_LEAF(u) (((u) >> 8) & 1)

/* s mapped by utf8proc with opts, compared with value[0..vlen). */
static bool maps_to(const unsigned char *s, size_t len, const unsigned char *value, size_t vlen,
		    int opts)
{
	utf8proc_uint8_t *dst = NULL;
	utf8proc_ssize_t n = utf8proc_map(s, (utf8proc_ssize_t)len, &dst,
					  (utf8proc_option_t)(UTF8PROC_STABLE | opts));
	bool same = n >= 0 && (size_t)n == vlen && !memcmp(dst, value, vlen);

	free(dst);
	return same;
}

/* Is value what Unicode makes of key? */
static bool explained(const unsigned char *key, size_t klen, const unsigned char *value,
		      size_t vlen)
{
	utf8proc_int32_t cp;
	utf8proc_ssize_t used = utf8proc_iterate(key, (utf8proc_ssize_t)klen, &cp);

	if (maps_to(key, klen, value, vlen, UTF8PROC_COMPOSE | UTF8PROC_COMPAT) ||
	    maps_to(key, klen, value, vlen, UTF8PROC_COMPOSE | UTF8PROC_COMPAT |
		    UTF8PROC_CASEFOLD))
		return true;
	if (used <= 0 || (size_t)used != klen || vlen > 1 || (vlen == 1 && value[0] != ' '))
		return false;
	switch (utf8proc_category(cp)) {
	case UTF8PROC_CATEGORY_CC: case UTF8PROC_CATEGORY_CF: case UTF8PROC_CATEGORY_ZS:
	case UTF8PROC_CATEGORY_ZL: case UTF8PROC_CATEGORY_ZP:
		return true;
	default:
		return false;
	}
}

static int entry(struct cm *c, const unsigned char *key, size_t klen, uint32_t off)
{
	const unsigned char *v, *nul;
	size_t vlen;
	int rc;

	c->st->entries++;
	if (off >= c->blob_len) {
		c->broken = true;
		return 0;
	}
	v = c->blob + off;
	nul = memchr(v, 0, c->blob_len - off);
	vlen = nul ? (size_t)(nul - v) : c->blob_len - off;
	memset(c->seen_blob + off, 1, vlen + (nul != NULL));
	if (explained(key, klen, v, vlen))
		return 0;
	c->st->unexplained++;
	if ((rc = nx_budget_add(c->b, (const char *)key, klen, c->err)) ||
	    (rc = nx_budget_add(c->b, "\t", 1, c->err)) ||
	    (rc = nx_budget_add(c->b, (const char *)v, vlen, c->err)))
		return rc;
	return nx_budget_add(c->b, "\n", 1, c->err);
}

/* The keys below the node whose children start at base; key[0..klen). */
static int walk(struct cm *c, size_t base, unsigned char *key, size_t klen)
{
	unsigned ch;
	int rc;

	for (ch = 1; ch < 256 && !c->broken; ch++) {
		size_t q = base ^ ch, nb;
		uint32_t u;

		if (q >= c->n || CM_LABEL(c->unit[q]) != ch)
			continue;
		u = c->unit[q];
		nb = q ^ CM_OFFSET(u);
		/* darts-clone shares common suffixes (a DAWG), so a unit may be
		 * reached by several keys; the walk is bounded by key length and
		 * total visits instead */
		if (nb >= c->n || klen >= CM_KEY_MAX || ++c->visits > CM_VISITS(c->n)) {
			c->broken = true;
			return 0;
		}
		c->seen_unit[q] = 1;
		key[klen] = (unsigned char)ch;
		if (CM_HAS_LEAF(u)) {
			c->seen_unit[nb] = 1;
			if ((rc = entry(c, key, klen + 1, c->unit[nb] & ((1u << 31) - 1))))
				return rc;
		}
		if ((rc = walk(c, nb, key, klen + 1)))
			return rc;
	}
	return 0;
}

int nx_vfy__charsmap_residual(nx_budget_buf *b, const unsigned char *raw, size_t len,
			      struct nx_vfy_charsmap_stats *st, nx_error *err)
{
	struct cm c = {.b = b, .err = err, .st = st};
	unsigned char key[CM_KEY_MAX + 1];
	uint32_t *units = NULL;
	size_t trie_bytes, i;
	int rc = 0;

	memset(st, 0, sizeof(*st));
	trie_bytes = len < 4 ? 0 : raw[0] | (size_t)raw[1] << 8 | (size_t)raw[2] << 16 |
				    (size_t)raw[3] << 24;
	if (len < 4 || !trie_bytes || trie_bytes % 4 || trie_bytes > len - 4)
		goto whole;
	c.n = trie_bytes / 4;
	c.blob = raw + 4 + trie_bytes;
	c.blob_len = len - 4 - trie_bytes;
	units = malloc(trie_bytes);
	c.seen_unit = calloc(c.n, 1);
	c.seen_blob = calloc(c.blob_len + 1, 1);
	if (!units || !c.seen_unit || !c.seen_blob) {
		rc = nx_error_oom(err, NULL);
		goto out;
	}
	for (i = 0; i < c.n; i++) {
		const unsigned char *q = raw + 4 + 4 * i;

		units[i] = q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 24;
	}
	c.unit = units;
	c.seen_unit[0] = 1;
	if ((rc = walk(&c, CM_OFFSET(units[0]), key, 0)))
		goto out;
	if (c.broken)
		goto whole;
	for (i = 0; !rc && i < c.n; i++)
		if (!c.seen_unit[i] && units[i]) {
			st->stray_bytes += 4;
			rc = nx_budget_add(b, (const char *)raw + 4 + 4 * i, 4, err);
		}
	for (i = 0; !rc && i < c.blob_len; i++)
		if (!c.seen_blob[i]) {
			st->stray_bytes++;
			rc = nx_budget_add(b, (const char *)c.blob + i, 1, err);
		}
	goto out;
whole:
	st->whole = true;
	rc = nx_budget_add(b, (const char *)raw, len, err);
out:
	free(units);
	free(c.seen_unit);
	free(c.seen_blob);
	return rc;
}

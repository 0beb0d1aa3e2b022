/*
 * bpe.c - the BPE model as Hugging Face runs it with dropout off: each
 * character (with continuing_subword_prefix / end_of_word_suffix) looked up,
 * byte_fallback to <0xNN>, unknowns (fused or not) to unk_token, then the
 * merges applied lowest rank first, leftmost first on ties, through a
 * binary heap with stale entries skipped.  A direct-mapped cache of short
 * words skips all of it for the words that repeat.  The merge map (pair of
 * ids -> rank and merged id; open addressing over 64-bit keys, sized once
 * at load) lives here too.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/strset_int.h"
#include "tok_int.h"

static int heap_less(const struct bpe_heap_ent *a, const struct bpe_heap_ent *b)
{
	return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(struct bpe_heap_ent *h, size_t *n, struct bpe_heap_ent e)
{
	size_t i = (*n)++;

	while (i > 0) {
		size_t p = (i - 1) / 2;

		if (!heap_less(&e, &h[p]))
			break;
		h[i] = h[p];
		i = p;
	}
	h[i] = e;
}

static struct bpe_heap_ent heap_pop(struct bpe_heap_ent *h, size_t *n)
{
	struct bpe_heap_ent top = h[0], last = h[--(*n)];
	size_t i = 0;

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= *n)
			break;
		if (c + 1 < *n && heap_less(&h[c + 1], &h[c]))
			c++;
		if (!heap_less(&h[c], &last))
			break;
		h[i] = h[c];
		i = c;
	}
	if (*n)
		h[i] = last;
	return top;
}

/* The merge map, filled by load.c, read here for every pair. */
static uint64_t mix(uint64_t k)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdULL;
	k ^= k >> 33;
	k *= 0xc4ceb9fe1a85ec53ULL;
	return k ^ (k >> 33);
}

int nx_tok__merge_put(struct tmodel *m, uint32_t a, uint32_t b, uint32_t rank, uint32_t new_id)
{
	uint64_t key = (((uint64_t)a << 32) | b) + 1;
	size_t s = mix(key) & m->merges_mask;

	uint64_t h = mix(key) >> 24;

	m->merge_bits[(h >> 6) & m->merge_bits_mask] |= 1ull << (h & 63);
	while (m->merges[s].key && m->merges[s].key != key)
		s = (s + 1) & m->merges_mask;
	m->merges[s].key = key;
	m->merges[s].rank = rank;
	m->merges[s].new_id = new_id;
	return 0;
}

const struct merge_slot *nx_tok__merge_get(const struct tmodel *m, uint32_t a, uint32_t b)
{
	uint64_t key = (((uint64_t)a << 32) | b) + 1, h = mix(key), f = h >> 24;
	size_t s;

	if (!m->merges || !(m->merge_bits[(f >> 6) & m->merge_bits_mask] & (1ull << (f & 63))))
		return NULL;
	s = h & m->merges_mask;
	for (; m->merges[s].key; s = (s + 1) & m->merges_mask)
		if (m->merges[s].key == key)
			return &m->merges[s];
	return NULL;
}

static int add_sym(struct tmodel *m, size_t *n, int64_t id, size_t len)
{
	struct bpe_sym *s;

	/* the heap holds up to two entries a symbol */
	if (*n == m->syms_cap &&
	    (NX_ARRAY_PUSH(m->syms, m->syms_cap, *n) ||
	     nx_array_grow(&m->heap, &m->heap_cap, m->syms_cap * 2, sizeof(*m->heap), SIZE_MAX)))
		return NX_ENOMEM;
	s = &m->syms[*n];
	s->id = id;
	s->len = (uint32_t)len;
	s->prev = (int32_t)*n - 1;
	s->next = (int32_t)*n + 1;
	(*n)++;
	return 0;
}

static void push_pair(struct tmodel *m, size_t *hn, size_t pos)
{
	const struct bpe_sym *a = &m->syms[pos], *b;
	const struct merge_slot *mg;

	if (a->next < 0)
		return;
	b = &m->syms[a->next];
	mg = nx_tok__merge_get(m, (uint32_t)a->id, (uint32_t)b->id);
	if (mg && *hn < m->heap_cap)
		heap_push(m->heap, hn, (struct bpe_heap_ent){ mg->rank, (uint32_t)pos, mg->new_id,
							      (uint32_t)a->id, (uint32_t)b->id });
}

static void merge_all(struct tmodel *m, size_t n)
{
	size_t hn = 0, i;

	if (!n)
		return;
	m->syms[n - 1].next = -1;
	for (i = 0; i + 1 < n; i++)
		push_pair(m, &hn, i);
	while (hn) {
		struct bpe_heap_ent top = heap_pop(m->heap, &hn);
		struct bpe_sym *a = &m->syms[top.pos], *b;
		const struct merge_slot *mg;

		if (!a->len || a->next < 0)
			continue;
		b = &m->syms[a->next];
		/* stale unless the pair is the one pushed or (as HF checks) merges
		 * into the same token */
		if ((uint32_t)a->id != top.left || (uint32_t)b->id != top.right) {
			mg = nx_tok__merge_get(m, (uint32_t)a->id, (uint32_t)b->id);
			if (!mg || mg->new_id != top.new_id)
				continue;
		}
		a->id = top.new_id;
		a->len += b->len;
		a->next = b->next;
		b->len = 0;
		if (a->next >= 0)
			m->syms[a->next].prev = (int32_t)top.pos;
		/* the heap holds at most 2 entries per symbol alive: room is kept */
		if (hn + 2 > m->heap_cap)
			continue;
		if (a->prev >= 0)
			push_pair(m, &hn, (size_t)a->prev);
		push_pair(m, &hn, top.pos);
	}
}

static int byte_fallback(nx_tokenizer *t, const char *p, size_t len, size_t *n)
{
	size_t k;
	char name[8];

	for (k = 0; k < len; k++) {
		snprintf(name, sizeof(name), "<0x%02X>", (unsigned char)p[k]);
		if (nx_vocab_get2(&t->v, name, 6, NULL, 0) < 0)
			return 1;
	}
	for (k = 0; k < len; k++) {
		snprintf(name, sizeof(name), "<0x%02X>", (unsigned char)p[k]);
		if (add_sym(&t->m, n, nx_vocab_get2(&t->v, name, 6, NULL, 0), 1))
			return NX_ENOMEM;
	}
	return 0;
}

static struct cache_slot *cache_slot(nx_tokenizer *t, const char *s, size_t len)
{
	if (!t->m.cache || len > NX_TOK_CACHE_WORD)
		return NULL;
	return &t->m.cache[nx_keyhash(s, len, NULL, 0) & (NX_TOK_CACHE_SLOTS - 1)];
}

int nx_tok__bpe(nx_tokenizer *t, const char *s, size_t len, struct ib *out, nx_error *err)
{
	struct tmodel *m = &t->m;
	struct cache_slot *cs;
	size_t i = 0, n = 0, k, first = out->n;
	int64_t unk = -1;
	size_t unk_len = 0;
	int rc;

	if (!len)
		return 0;
	if (m->ignore_merges) {
		int64_t id = nx_vocab_get2(&t->v, s, len, NULL, 0);

		if (id >= 0)
			return nx_tok__ib_push(out, id);
	}
	cs = cache_slot(t, s, len);
	if (cs && cs->len == len && cs->nids && !memcmp(cs->word, s, len)) {
		for (k = 0; k < cs->nids; k++)
			if (nx_tok__ib_push(out, cs->ids[k]))
				return NX_ENOMEM;
		return 0;
	}
	while (i < len) {
		size_t b = i, clen;
		bool is_first = b == 0, is_last;
		const char *pre = "", *suf = "";
		size_t plen = 0, slen = 0;
		int64_t id;

		nx_tok__next(s, len, &i);
		clen = i - b;
		is_last = i == len;
		if (!is_first && m->has_prefix) {
			pre = m->prefix;
			plen = m->prefix_len;
		}
		if (is_last && m->has_suffix) {
			suf = m->suffix;
			slen = m->suffix_len;
		}
		if (!slen) {
			id = nx_vocab_get2(&t->v, pre, plen, s + b, clen);
		} else {
			/* prefix + char + suffix: assemble (rare: both set) */
			t->word2.n = 0;
			if (nx_tok__tb_put(&t->word2, pre, plen) || nx_tok__tb_put(&t->word2, s + b, clen) ||
			    nx_tok__tb_put(&t->word2, suf, slen))
				return NX_ENOMEM;
			id = nx_vocab_get2(&t->v, t->word2.p, t->word2.n, NULL, 0);
		}
		if (id >= 0) {
			if (unk >= 0) {
				if (add_sym(m, &n, unk, unk_len))
					return NX_ENOMEM;
				unk = -1;
			}
			if (add_sym(m, &n, id, clen))
				return NX_ENOMEM;
			continue;
		}
		if (m->byte_fallback) {
			/* HF falls back on the bytes of the piece with its prefix/suffix */
			t->word2.n = 0;
			if (nx_tok__tb_put(&t->word2, pre, plen) || nx_tok__tb_put(&t->word2, s + b, clen) ||
			    nx_tok__tb_put(&t->word2, suf, slen))
				return NX_ENOMEM;
			rc = byte_fallback(t, t->word2.p, t->word2.n, &n);
			if (rc < 0)
				return rc;
			if (rc == 0)
				continue;
		}
		if (m->unk_id >= 0) {
			if (unk >= 0 && m->fuse_unk) {
				unk_len += clen;
			} else {
				if (unk >= 0 && add_sym(m, &n, unk, unk_len))
					return NX_ENOMEM;
				unk = m->unk_id;
				unk_len = clen;
			}
		} else if (m->unk_set) {
			return nx_error_set(err, NX_EFORMAT, NULL, 0, -1,
					    "the tokenizer's BPE unk_token is not in the vocabulary");
		}
	}
	if (unk >= 0 && add_sym(m, &n, unk, unk_len))
		return NX_ENOMEM;
	merge_all(m, n);
	for (k = 0; k < n; k++)
		if (m->syms[k].len && nx_tok__ib_push(out, m->syms[k].id))
			return NX_ENOMEM;
	if (cs && out->n - first <= NX_TOK_CACHE_IDS) {
		cs->len = (uint8_t)len;
		cs->nids = (uint8_t)(out->n - first);
		memcpy(cs->word, s, len);
		for (k = first; k < out->n; k++)
			cs->ids[k - first] = (uint32_t)out->p[k];
	}
	return 0;
}

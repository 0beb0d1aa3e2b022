/*
 * unigram.c - the Unigram model as Hugging Face's encode_optimized: a
 * Viterbi pass over the bytes of the word, every vocabulary piece that
 * starts at a character boundary a candidate (a common-prefix search in a
 * byte trie of the pieces, its edges in one open-addressing table), an
 * unknown character scored min_score - 10, unknowns fused when fuse_unk,
 * and the pieces then mapped to ids (byte_fallback to <0xNN>).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok_int.h"

#define UNK_PENALTY 10.0

static int piece_ids(nx_tokenizer *t, const char *s, size_t len, struct ib *out, nx_error *err)
{
	int64_t id = nx_vocab_get2(&t->v, s, len, NULL, 0);
	size_t k;
	char name[8];

	if (id >= 0)
		return nx_tok__ib_push(out, id);
	if (t->m.byte_fallback) {
		for (k = 0; k < len; k++) {
			snprintf(name, sizeof(name), "<0x%02X>", (unsigned char)s[k]);
			if (nx_vocab_get2(&t->v, name, 6, NULL, 0) < 0)
				break;
		}
		if (k == len) {
			for (k = 0; k < len; k++) {
				snprintf(name, sizeof(name), "<0x%02X>", (unsigned char)s[k]);
				if (nx_tok__ib_push(out, nx_vocab_get2(&t->v, name, 6, NULL, 0)))
					return NX_ENOMEM;
			}
			return 0;
		}
	}
	if (t->m.unk_id < 0)
		return nx_error_set(err, NX_EFORMAT, NULL, 0, -1,
				    "the tokenizer's Unigram model has no unk_id for a piece of this text");
	return nx_tok__ib_push(out, t->m.unk_id);
}

static uint64_t mix(uint64_t k)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdULL;
	return k ^ (k >> 33);
}

static uint32_t trie_child(const struct tmodel *m, uint32_t node, unsigned char b)
{
	uint64_t key = (((uint64_t)node << 8) | b) + 1;
	size_t i = mix(key) & m->trie_mask;

	for (; m->trie_keys[i]; i = (i + 1) & m->trie_mask)
		if (m->trie_keys[i] == key)
			return m->trie_child[i];
	return 0;
}

int nx_tok__unigram(nx_tokenizer *t, const char *s, size_t len, struct ib *out, nx_error *err)
{
	struct tmodel *m = &t->m;
	struct unigram_node *lat;
	double unk_score = m->min_score - UNK_PENALTY;
	size_t start = 0, end, k, nr, fuse_end;
	int rc;

	if (!len)
		return 0;
	if (nx_array_grow(&m->lattice, &m->lattice_cap, len + 1, sizeof(*m->lattice), SIZE_MAX))
		return NX_ENOMEM;
	lat = m->lattice;
	for (k = 0; k <= len; k++)
		lat[k].start = -1;
	lat[0].score = 0;
	while (start < len) {
		size_t next = start;
		double base = lat[start].score;
		bool single = false;

		nx_tok__next(s, len, &next);
		uint32_t node = 0;

		for (end = start; end < len;) {
			int64_t id;

			if (!(node = trie_child(m, node, (unsigned char)s[end++])))
				break;
			if ((id = m->trie_piece[node]) >= 0) {
				double sc = base + m->scores[id];

				if (lat[end].start < 0 || sc > lat[end].score) {
					lat[end].score = sc;
					lat[end].start = (int32_t)start;
					lat[end].id = id;
				}
				if (end == next)
					single = true;
			}
		}
		if (!single) {
			double sc = base + unk_score;

			if (m->unk_id < 0)
				return nx_error_set(err, NX_EFORMAT, NULL, 0, -1,
						    "the tokenizer's Unigram model has no unk_id for a "
						    "character of this text");
			if (lat[next].start < 0 || sc > lat[next].score) {
				lat[next].score = sc;
				lat[next].start = (int32_t)start;
				lat[next].id = m->unk_id;
			}
		}
		start = next;
	}
	/* walk back, collecting (start, end, id) with id -1 for a run of
	 * unknowns (fused) or an unknown: those are looked up as strings */
	m->fuse.n = 0;
	end = len;
	fuse_end = 0;
	while (end > 0) {
		size_t st = (size_t)lat[end].start;
		int64_t id = lat[end].id;

		if (m->fuse_unk && m->unk_id >= 0 && id == m->unk_id) {
			if (!fuse_end)
				fuse_end = end;
		} else {
			if (fuse_end) {
				if (nx_tok__ib_push(&m->fuse, (int64_t)end) ||
				    nx_tok__ib_push(&m->fuse, (int64_t)fuse_end) ||
				    nx_tok__ib_push(&m->fuse, -1))
					return NX_ENOMEM;
				fuse_end = 0;
			}
			if (nx_tok__ib_push(&m->fuse, (int64_t)st) ||
			    nx_tok__ib_push(&m->fuse, (int64_t)end) ||
			    nx_tok__ib_push(&m->fuse, id == m->unk_id ? -1 : id))
				return NX_ENOMEM;
		}
		end = st;
	}
	if (fuse_end && (nx_tok__ib_push(&m->fuse, 0) ||
			 nx_tok__ib_push(&m->fuse, (int64_t)fuse_end) || nx_tok__ib_push(&m->fuse, -1)))
		return NX_ENOMEM;
	for (nr = m->fuse.n / 3; nr-- > 0;) {
		size_t a = (size_t)m->fuse.p[3 * nr], b = (size_t)m->fuse.p[3 * nr + 1];
		int64_t id = m->fuse.p[3 * nr + 2];

		if (id >= 0)
			rc = nx_tok__ib_push(out, id);
		else
			rc = piece_ids(t, s + a, b - a, out, err);
		if (rc)
			return rc;
	}
	return 0;
}

/* The byte trie of the pieces (after the vocabulary is loaded). */
int nx_tok__unigram_index(nx_tokenizer *t)
{
	struct tmodel *m = &t->m;
	size_t i, k, slots = 1024;

	for (i = 0; i < t->v.n; i++)
		m->trie_cap += t->v.ent[i].len;
	m->trie_cap += 1;
	while (slots < m->trie_cap * 2)
		slots *= 2;
	m->trie_mask = slots - 1;
	if (!(m->trie_keys = calloc(slots, sizeof(*m->trie_keys))) ||
	    !(m->trie_child = calloc(slots, sizeof(*m->trie_child))) ||
	    !(m->trie_piece = malloc(m->trie_cap * sizeof(*m->trie_piece))))
		return NX_ENOMEM;
	m->trie_piece[0] = -1;
	m->trie_nodes = 1;
	for (i = 0; i < t->v.n; i++) {
		const struct nx_vocab_entry *e = &t->v.ent[i];
		const unsigned char *p = (const unsigned char *)t->v.arena + e->off;
		uint32_t node = 0;

		for (k = 0; k < e->len; k++) {
			uint32_t c = trie_child(m, node, p[k]);

			if (!c) {
				uint64_t key = (((uint64_t)node << 8) | p[k]) + 1;
				size_t s = mix(key) & m->trie_mask;

				while (m->trie_keys[s])
					s = (s + 1) & m->trie_mask;
				c = (uint32_t)m->trie_nodes++;
				m->trie_keys[s] = key;
				m->trie_child[s] = c;
				m->trie_piece[c] = -1;
			}
			node = c;
		}
		if (e->len)
			m->trie_piece[node] = (int32_t)e->id;
	}
	return 0;
}

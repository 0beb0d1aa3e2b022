/*
 * unigram.c - the Unigram model as Hugging Face's encode_optimized: a
 * Viterbi pass over the bytes of the word, every vocabulary piece that
 * starts at a character boundary a candidate (looked up by length up to the
 * longest piece, instead of a trie: the hash table is already there), an
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

int nx_tok__unigram(nx_tokenizer *t, const char *s, size_t len, struct ib *out, nx_error *err)
{
	struct tmodel *m = &t->m;
	struct unigram_node *lat;
	double unk_score = m->min_score - UNK_PENALTY;
	size_t start = 0, end, k, nr, fuse_end;
	int rc;

	if (!len)
		return 0;
	if (len + 1 > m->lattice_cap) {
		size_t cap = m->lattice_cap ? m->lattice_cap : 256;

		while (cap < len + 1)
			cap *= 2;
		if (!(lat = realloc(m->lattice, cap * sizeof(*lat))))
			return NX_ENOMEM;
		m->lattice = lat;
		m->lattice_cap = cap;
	}
	lat = m->lattice;
	for (k = 0; k <= len; k++)
		lat[k].start = -1;
	lat[0].score = 0;
	while (start < len) {
		size_t next = start;
		double base = lat[start].score;
		bool single = false;

		nx_tok__next(s, len, &next);
		for (end = next; end <= len && end - start <= t->v.longest;) {
			int64_t e = nx_vocab_find(&t->v, s + start, end - start, NULL, 0);

			if (e >= 0) {
				int64_t id = t->v.ent[e].id;
				double sc = base + m->scores[id];

				if (lat[end].start < 0 || sc > lat[end].score) {
					lat[end].score = sc;
					lat[end].start = (int32_t)start;
					lat[end].id = id;
				}
				if (end == next)
					single = true;
			}
			if (end == len)
				break;
			nx_tok__next(s, len, &end);
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
	/* walk back, collecting (start, end) ranges; fuse consecutive unknowns */
	m->fuse.n = 0;
	end = len;
	fuse_end = 0;
	while (end > 0) {
		size_t st = (size_t)lat[end].start;

		if (m->fuse_unk && m->unk_id >= 0 && lat[end].id == m->unk_id) {
			if (!fuse_end)
				fuse_end = end;
		} else {
			if (fuse_end) {
				if (nx_tok__ib_push(&m->fuse, (int64_t)end) ||
				    nx_tok__ib_push(&m->fuse, (int64_t)fuse_end))
					return NX_ENOMEM;
				fuse_end = 0;
			}
			if (nx_tok__ib_push(&m->fuse, (int64_t)st) || nx_tok__ib_push(&m->fuse, (int64_t)end))
				return NX_ENOMEM;
		}
		end = st;
	}
	if (fuse_end && (nx_tok__ib_push(&m->fuse, 0) || nx_tok__ib_push(&m->fuse, (int64_t)fuse_end)))
		return NX_ENOMEM;
	for (nr = m->fuse.n / 2; nr-- > 0;) {
		size_t a = (size_t)m->fuse.p[2 * nr], b = (size_t)m->fuse.p[2 * nr + 1];

		if ((rc = piece_ids(t, s + a, b - a, out, err)))
			return rc;
	}
	return 0;
}

/*
 * models.c - WordPiece and WordLevel, the model dispatch and release.  The
 * BPE merge map is bpe.c's.
 */
#include <stdlib.h>
#include <string.h>

#include "tok_int.h"

static int no_unk(nx_error *err, const char *model)
{
	return nx_error_set(err, NX_EFORMAT, NULL, 0, -1,
			    "the tokenizer's %s model cannot encode a word of this text: its "
			    "unk_token is missing from the vocabulary", model);
}

static int wordpiece(nx_tokenizer *t, const char *s, size_t len, struct ib *out, nx_error *err)
{
	const struct tmodel *m = &t->m;
	size_t start = 0, first = out->n;

	if (nx_tok__utf8_len(s, len) > m->max_chars)
		goto unk;
	while (start < len) {
		size_t end = len, plen = start ? m->prefix_len : 0;
		int64_t id = -1;

		/* nothing longer than the longest entry can match */
		while (end > start && end - start + plen > t->v.longest) {
			end--;
			while (end > start && ((unsigned char)s[end] & 0xc0) == 0x80)
				end--;
		}
		while (end > start) {
			id = nx_vocab_get2(&t->v, m->prefix, plen, s + start, end - start);
			if (id >= 0)
				break;
			end--;
			while (end > start && ((unsigned char)s[end] & 0xc0) == 0x80)
				end--;
		}
		if (id < 0) {
			out->n = first;
			goto unk;
		}
		if (nx_tok__ib_push(out, id))
			return NX_ENOMEM;
		start = end;
	}
	return 0;
unk:
	if (m->unk_id < 0)
		return no_unk(err, "WordPiece");
	return nx_tok__ib_push(out, m->unk_id);
}

int nx_tok__model(nx_tokenizer *t, const char *s, size_t len, struct ib *out, nx_error *err)
{
	int64_t id;
	int rc;

	switch (t->m.type) {
	case M_WORDPIECE:
		rc = wordpiece(t, s, len, out, err);
		break;
	case M_WORDLEVEL:
		id = nx_vocab_get2(&t->v, s, len, NULL, 0);
		if (id < 0 && (id = t->m.unk_id) < 0)
			return no_unk(err, "WordLevel");
		rc = nx_tok__ib_push(out, id);
		break;
	case M_BPE:
		rc = nx_tok__bpe(t, s, len, out, err);
		break;
	case M_UNIGRAM:
		rc = nx_tok__unigram(t, s, len, out, err);
		break;
	default:
		rc = NX_EINTERNAL;
	}
	if (rc == NX_ENOMEM)
		return nx_error_set(err, NX_ENOMEM, NULL, 0, -1, "out of memory tokenizing the text");
	return rc;
}

void nx_tok__model_release(struct tmodel *m)
{
	free(m->merges);
	free(m->merge_bits);
	free(m->cache);
	free(m->syms);
	free(m->heap);
	free(m->trie_keys);
	free(m->trie_child);
	free(m->trie_piece);
	free(m->scores);
	free(m->lattice);
	free(m->fuse.p);
}

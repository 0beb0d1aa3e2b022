/* vocab.c - the vocabulary hash table, the tokenizer's allocation and
 * look-ups (load.c frees it). */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "tok_int.h"
#include "util/strset_int.h"

static int grow_slots(struct nx_vocab *v)
{
	size_t nslots = v->mask ? (v->mask + 1) * 2 : 1024, i;
	uint32_t *slots = calloc(nslots, sizeof(*slots));

	if (!slots)
		return NX_ENOMEM;
	for (i = 0; i < v->n; i++) {
		const struct nx_vocab_entry *e = &v->ent[i];
		size_t s = nx_keyhash(v->arena + e->off, e->len, NULL, 0) & (nslots - 1);

		while (slots[s])
			s = (s + 1) & (nslots - 1);
		slots[s] = (uint32_t)i + 1;
	}
	free(v->slots);
	v->slots = slots;
	v->mask = nslots - 1;
	return 0;
}

static int64_t find(const struct nx_vocab *v, const char *a, size_t alen,
		    const char *b, size_t blen, size_t *slot)
{
	size_t s;

	if (!v->mask)
		return -1;
	s = nx_keyhash(a, alen, b, blen) & v->mask;
	for (; v->slots[s]; s = (s + 1) & v->mask) {
		const struct nx_vocab_entry *e = &v->ent[v->slots[s] - 1];
		const char *p = v->arena + e->off;

		if (e->len == alen + blen && (!alen || !memcmp(p, a, alen)) &&
		    (!blen || !memcmp(p + alen, b, blen))) {
			*slot = s;
			return (int64_t)(v->slots[s] - 1);
		}
	}
	*slot = s;
	return -1;
}

int64_t nx_vocab_find(const struct nx_vocab *v, const char *a, size_t alen,
		      const char *b, size_t blen)
{
	size_t slot;

	if (alen + blen > v->longest)
		return -1;
	return find(v, a, alen, b, blen, &slot);
}

void nx_vocab_release(struct nx_vocab *v)
{
	free(v->slots);
	free(v->ent);
	free(v->arena);
}

int64_t nx_vocab_get2(const struct nx_vocab *v, const char *a, size_t alen,
		      const char *b, size_t blen)
{
	size_t slot;
	int64_t i;

	if (alen + blen > v->longest)
		return -1;
	i = find(v, a, alen, b, blen, &slot);
	return i < 0 ? -1 : v->ent[i].id;
}

/* Insert or (as Hugging Face's map does for a repeated token) replace. */
int nx_vocab_put(struct nx_vocab *v, const char *s, size_t len, int64_t id)
{
	size_t slot;
	int64_t i;

	if ((v->n + 1) * 2 > v->mask + 1 && grow_slots(v))
		return NX_ENOMEM;
	i = find(v, s, len, NULL, 0, &slot);
	if (i >= 0) {
		v->ent[i].id = id;
		return 0;
	}
	/* entries hold 32-bit arena offsets: the arena's cap */
	if (NX_ARRAY_PUSH(v->ent, v->cap, v->n) || len > UINT32_MAX ||
	    nx_array_grow(&v->arena, &v->arena_cap, v->arena_len + len, 1, UINT32_MAX))
		return NX_ENOMEM;
	memcpy(v->arena + v->arena_len, s, len);
	v->ent[v->n].off = (uint32_t)v->arena_len;
	v->ent[v->n].len = (uint32_t)len;
	v->ent[v->n].id = id;
	v->arena_len += len;
	v->slots[slot] = (uint32_t)++v->n;
	if (len > v->longest)
		v->longest = len;
	return 0;
}

int nx_tokenizer_alloc(nx_tokenizer **out, const char *source, nx_error *err)
{
	nx_tokenizer *t = calloc(1, sizeof(*t));

	if (!t)
		return nx_error_set(err, NX_ENOMEM, NULL, 0, -1, "out of memory loading the tokenizer");
	t->m.max_chars = 100;
	t->m.unk_id = -1;
	t->pad_id = -1;
	t->source = source;
	*out = t;
	return 0;
}

int nx_tokenizer_finish(nx_tokenizer *t, const char *path, nx_error *err)
{
	if (t->pad_id < 0) {
		t->pad_id = nx_tokenizer_token_to_id(t, "[PAD]", 5);
		if (t->pad_id < 0)
			t->pad_id = 0;
	}
	return 0;
}

int64_t nx_tokenizer_pad_id(const nx_tokenizer *t)
{
	return t->pad_id;
}

size_t nx_tokenizer_max_length(const nx_tokenizer *t)
{
	return t->has_trunc ? t->trunc_max : 0;
}

int64_t nx_tokenizer_pad_type_id(const nx_tokenizer *t)
{
	return t->pad_type_id;
}

int nx_tokenizer_pad_left(const nx_tokenizer *t)
{
	return t->pad_left;
}

size_t nx_tokenizer_vocab_size(const nx_tokenizer *t)
{
	return t->v.n;
}

size_t nx_tokenizer_special_count(const nx_tokenizer *t)
{
	return t->has_post ? t->single.nspecial : 0;
}

const char *nx_tokenizer_source(const nx_tokenizer *t)
{
	return t->source;
}

const char *nx_tokenizer_id_to_token(const nx_tokenizer *t, int64_t id, size_t *len)
{
	if (id < 0 || (size_t)id >= t->id_n || !t->id_tok[id])
		return NULL;
	if (len)
		*len = t->id_len[id];
	return t->id_tok[id];
}

int64_t nx_tokenizer_token_to_id(const nx_tokenizer *t, const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < t->nadded; i++)
		if (t->added[i].raw_len == len && !memcmp(t->added[i].raw, s, len))
			return t->added[i].id;
	return nx_vocab_get2(&t->v, s, len, NULL, 0);
}

int nx_tokenizer_is_special(const nx_tokenizer *t, int64_t id)
{
	size_t i;

	for (i = 0; i < t->nadded; i++)
		if (t->added[i].id == id)
			return t->added[i].special;
	return 0;
}

const void *nx_tokenizer_decoder_json(const nx_tokenizer *t)
{
	return t->decoder;
}

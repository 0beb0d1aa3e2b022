/* tokenizer_vocab.c - the vocabulary hash table and the tokenizer's lifetime. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "strset_int.h"
#include "tokenizer_int.h"

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
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 1024;
		struct nx_vocab_entry *ent = realloc(v->ent, cap * sizeof(*ent));

		if (!ent)
			return NX_ENOMEM;
		v->ent = ent;
		v->cap = cap;
	}
	if (v->arena_len + len > v->arena_cap) {
		size_t cap = v->arena_cap ? v->arena_cap : 8192;
		char *arena;

		while (cap < v->arena_len + len)
			cap *= 2;
		if (!(arena = realloc(v->arena, cap)))
			return NX_ENOMEM;
		v->arena = arena;
		v->arena_cap = cap;
	}
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
	t->clean_text = t->chinese = t->strip_accents = t->lowercase = true;
	memcpy(t->prefix, "##", 2);
	t->prefix_len = 2;
	t->max_chars = 100;
	t->unk_id = t->pad_id = -1;
	t->source = source;
	*out = t;
	return 0;
}

static int by_id_cmp(const void *a, const void *b, void *ctx)
{
	const struct nx_vocab *v = ctx;
	int64_t x = v->ent[*(const uint32_t *)a].id, y = v->ent[*(const uint32_t *)b].id;

	return (x > y) - (x < y);
}

int nx_tokenizer_finish(nx_tokenizer *t, const char *path, nx_error *err)
{
	size_t i;

	if (!(t->by_id = malloc((t->v.n ? t->v.n : 1) * sizeof(*t->by_id))))
		return nx_error_set(err, NX_ENOMEM, path, 0, -1, "out of memory");
	for (i = 0; i < t->v.n; i++)
		t->by_id[i] = (uint32_t)i;
	qsort_r(t->by_id, t->v.n, sizeof(*t->by_id), by_id_cmp, &t->v);
	if (t->unk_id < 0)
		return nx_error_set(err, NX_ECONFIG, path, 0, -1,
				    "%s: the unknown token is not in the vocabulary", path);
	if (t->pad_id < 0) {
		t->pad_id = nx_vocab_get2(&t->v, "[PAD]", 5, NULL, 0);
		if (t->pad_id < 0)
			t->pad_id = 0;
	}
	return 0;
}

int64_t nx_tokenizer_pad_id(const nx_tokenizer *t)
{
	return t->pad_id;
}

size_t nx_tokenizer_vocab_size(const nx_tokenizer *t)
{
	return t->v.n;
}

size_t nx_tokenizer_special_count(const nx_tokenizer *t)
{
	return t->npre + t->npost;
}

const char *nx_tokenizer_source(const nx_tokenizer *t)
{
	return t->source;
}

const char *nx_tokenizer_id_to_token(const nx_tokenizer *t, int64_t id, size_t *len)
{
	size_t i, lo = 0, hi = t->v.n;

	for (i = 0; i < t->nadded; i++)
		if (t->added[i].id == id) {
			if (len)
				*len = t->added[i].len;
			return t->added[i].content;
		}
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct nx_vocab_entry *e = &t->v.ent[t->by_id[mid]];

		if (e->id == id) {
			if (len)
				*len = e->len;
			return t->v.arena + e->off;
		}
		if (e->id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

int64_t nx_tokenizer_token_to_id(const nx_tokenizer *t, const char *tok, size_t len)
{
	size_t i;

	for (i = 0; i < t->nadded; i++)
		if (t->added[i].len == len && !memcmp(t->added[i].content, tok, len))
			return t->added[i].id;
	return nx_vocab_get2(&t->v, tok, len, NULL, 0);
}

int nx_tokenizer_is_special(const nx_tokenizer *t, int64_t id)
{
	static const char *const bert[] = { "[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]" };
	const char *s;
	size_t i, len;

	for (i = 0; i < t->nadded; i++)
		if (t->added[i].id == id)
			return t->added[i].special;
	/* vocab.txt: the special tokens of Hugging Face's BertTokenizer */
	if (strcmp(t->source, "vocab.txt") || !(s = nx_tokenizer_id_to_token(t, id, &len)))
		return 0;
	for (i = 0; i < sizeof(bert) / sizeof(bert[0]); i++)
		if (len == strlen(bert[i]) && !memcmp(s, bert[i], len))
			return 1;
	return 0;
}

const void *nx_tokenizer_decoder_json(const nx_tokenizer *t)
{
	return t->decoder;
}

void nx_tokenizer_free(nx_tokenizer *t)
{
	size_t i;

	if (!t)
		return;
	for (i = 0; i < t->nadded; i++)
		free(t->added[i].content);
	free(t->added);
	free(t->v.slots);
	free(t->v.ent);
	free(t->v.arena);
	free(t->cp);
	free(t->wbuf);
	free(t->boff);
	free(t->by_id);
	json_decref(t->decoder);
	free(t);
}

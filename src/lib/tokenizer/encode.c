/*
 * encode.c - one text (or a pair) to ids as Hugging Face's
 * TokenizerImpl::encode does: added tokens matched in the raw text
 * (leftmost, longest first, with single_word / lstrip / rstrip), each
 * other segment normalized, then added tokens with normalized:true matched
 * in the normalized text, pre-tokenized, run through the model; then
 * truncation, the post-processor's template and padding.
 */
#include <stdlib.h>
#include <string.h>

#include "tok_int.h"

/* Leftmost-longest added token (of set `w`) at or after `from`. */
static long find_added(const nx_tokenizer *t, int w, const char *s, size_t len, size_t from,
		       size_t *at)
{
	size_t i, k;

	for (i = from; i < len; i++) {
		unsigned char b = (unsigned char)s[i];
		const uint32_t *list = t->added_by_byte[w][b];

		for (k = 0; k < t->added_by_byte_n[w][b]; k++) {
			const struct nx_added_token *a = &t->added[list[k]];

			if (a->len <= len - i && !memcmp(a->content, s + i, a->len)) {
				*at = i;
				return (long)list[k];
			}
		}
	}
	return -1;
}

static size_t ws_run_before(const char *s, size_t end)
{
	while (end > 0) {
		size_t st;

		if (!nx_tok__is_ws(nx_tok__prev(s, end, &st)))
			break;
		end = st;
	}
	return end;
}

static size_t ws_run_after(const char *s, size_t len, size_t from)
{
	while (from < len) {
		size_t k = from;

		if (!nx_tok__is_ws(nx_tok__next(s, len, &k)))
			break;
		from = k;
	}
	return from;
}

typedef int (*seg_fn)(nx_tokenizer *t, const char *s, size_t len, bool at0, nx_error *err);

/* HF AddedVocabulary::find_matches: call f on the text between added
 * tokens, push the added tokens as pieces. */
static int split_added(nx_tokenizer *t, int w, const char *s, size_t len, bool at0, seg_fn f,
		       nx_error *err)
{
	size_t pos = 0, start_offset = 0, at;
	long k;
	int rc;

	while (pos < len && (k = find_added(t, w, s, len, pos, &at)) >= 0) {
		const struct nx_added_token *a = &t->added[k];
		size_t ms = at, me = at + a->len;

		pos = me;
		if (a->single_word) {
			size_t st, e2 = me;

			if ((ms > 0 && nx_tok__is_word(nx_tok__prev(s, ms, &st))) ||
			    (me < len && nx_tok__is_word(nx_tok__next(s, len, &e2))))
				continue;
		}
		if (a->lstrip) {
			size_t ns = ws_run_before(s, ms);

			ms = ns > start_offset ? ns : start_offset;
		}
		if (a->rstrip)
			me = ws_run_after(s, len, me);
		if (start_offset < ms && (rc = f(t, s + start_offset, ms - start_offset,
						 at0 && start_offset == 0, err)))
			return rc;
		if (nx_tok__split_add(&t->pieces, "", 0, (int32_t)k, at0 && ms == 0))
			return nx_error_oom(err, NULL);
		start_offset = me;
		if (pos < me)
			pos = me;
	}
	if (start_offset < len)
		return f(t, s + start_offset, len - start_offset, at0 && start_offset == 0, err);
	return 0;
}

static int final_piece(nx_tokenizer *t, const char *s, size_t len, bool at0, nx_error *err)
{
	if (nx_tok__split_add(&t->pieces, s, len, -1, at0))
		return nx_error_oom(err, NULL);
	return 0;
}

static int segment(nx_tokenizer *t, const char *s, size_t len, bool at0, nx_error *err)
{
	int rc;

	if (t->norm) {
		if ((rc = nx_tok__normalize(t, t->norm, s, len, &t->normed, err)))
			return rc;
		s = t->normed.p;
		len = t->normed.n;
	}
	if (!len)
		return 0;
	return split_added(t, 1, s, len, at0, final_piece, err);
}

/* One sequence into ids (appended to out). */
static int encode_seq(nx_tokenizer *t, const char *text, size_t len, struct ib *out, nx_error *err)
{
	struct tsplit *sp = &t->pieces;
	size_t i;
	long bad;
	int rc;

	if (len > NX_TOK_TEXT_MAX)
		return nx_error_set(err, NX_ELIMIT, NULL, 0, -1,
				    "text of %zu bytes is over the %u byte limit", len, NX_TOK_TEXT_MAX);
	if ((bad = nx_tok__utf8_check(text, len)) >= 0)
		return nx_error_set(err, NX_EFORMAT, NULL, 0, bad,
				    "invalid UTF-8 at byte %ld of the text", bad);
	sp->n = 0;
	sp->text.n = 0;
	out->n = 0;
	if ((rc = split_added(t, 0, text, len, true, segment, err)))
		return rc;
	if (t->pre) {
		if ((rc = nx_tok__pretokenize(t, t->pre, sp, &t->pieces2, err)))
			return rc;
		sp = &t->pieces2;
	}
	for (i = 0; i < sp->n; i++) {
		const struct tpiece *pc = &sp->v[i];

		if (pc->added >= 0) {
			if (nx_tok__ib_push(out, t->added[pc->added].id))
				return nx_error_oom(err, NULL);
			continue;
		}
		if ((rc = nx_tok__model(t, sp->text.p + pc->off, pc->len, out, err)))
			return rc;
	}
	return 0;
}

static void trunc_one(nx_tokenizer *t, struct ib *e, size_t keep)
{
	if (keep >= e->n)
		return;
	if (t->trunc_left)
		memmove(e->p, e->p + (e->n - keep), keep * sizeof(*e->p));
	e->n = keep;
}

/* HF truncate_encodings with max_length already less the special tokens. */
static int truncate(nx_tokenizer *t, struct ib *a, struct ib *b, size_t max, nx_error *err)
{
	size_t total = a->n + (b ? b->n : 0), to_remove;

	if (max == 0) {
		a->n = 0;
		if (b)
			b->n = 0;
		return 0;
	}
	if (total <= max)
		return 0;
	to_remove = total - max;
	if (t->trunc_strategy == TRUNC_LONGEST || !t->has_trunc) {
		if (b) {
			size_t n1 = a->n, n2 = b->n;
			bool swap = false;

			if (n1 > n2) {
				size_t x = n1;

				n1 = n2;
				n2 = x;
				swap = true;
			}
			if (n1 > max)
				n2 = n1;
			else
				n2 = n1 > max - n1 ? n1 : max - n1;
			if (n1 + n2 > max) {
				n1 = max / 2;
				n2 = n1 + max % 2;
			}
			if (swap) {
				size_t x = n1;

				n1 = n2;
				n2 = x;
			}
			if ((t->trunc_stride && ((n1 < a->n && t->trunc_stride >= n1) ||
						 (n2 < b->n && t->trunc_stride >= n2))))
				goto stride;
			trunc_one(t, a, n1);
			trunc_one(t, b, n2);
		} else {
			if (t->trunc_stride >= total - to_remove)
				goto stride;
			trunc_one(t, a, total - to_remove);
		}
		return 0;
	}
	{
		struct ib *target = t->trunc_strategy == TRUNC_ONLY_FIRST ? a : b;

		if (!target)
			return nx_error_set(err, NX_EUSAGE, NULL, 0, -1,
					    "the tokenizer truncates only_second, but the input has no "
					    "second text; give a pair (--pair / text_pair)");
		if (target->n <= to_remove)
			return nx_error_set(err, NX_EUSAGE, NULL, 0, -1,
					    "the text is too long: the tokenizer's truncation (%s) cannot "
					    "remove %zu tokens from a sequence of %zu",
					    t->trunc_strategy == TRUNC_ONLY_FIRST ? "only_first"
										  : "only_second",
					    to_remove, target->n);
		if (t->trunc_stride >= target->n - to_remove)
			goto stride;
		trunc_one(t, target, target->n - to_remove);
	}
	return 0;
stride:
	return nx_error_set(err, NX_EUSAGE, NULL, 0, -1,
			    "the tokenizer's truncation.stride %zu is not less than the length it "
			    "truncates to", t->trunc_stride);
}

int nx_tokenizer_encode_pair(nx_tokenizer *t, const char *a, size_t alen, const char *b,
			     size_t blen, size_t max_len, int64_t *ids_out, int64_t *type_ids,
			     int64_t *attention_mask, int64_t *special_mask, size_t *n_out,
			     nx_error *err)
{
	const struct ttemplate *tp = b ? &t->pair : &t->single;
	size_t nspecial = t->has_post ? tp->nspecial : 0, limit = max_len, n = 0, i, k, target;
	struct ib *ea = &t->ids[0], *eb = b ? &t->ids[1] : NULL;
	int rc;

	if (max_len < nspecial + 1)
		return nx_error_set(err, NX_EUSAGE, NULL, 0, -1,
				    "max_sequence_length %zu leaves no room for the text; use at least %zu",
				    max_len, nspecial + 1);
	if (b && t->has_post && !t->pair.n)
		return nx_error_set(err, NX_EUSAGE, NULL, 0, -1,
				    "the tokenizer's post_processor has no pair template: it cannot "
				    "encode a text pair");
	if (t->has_trunc && t->trunc_max < limit)
		limit = t->trunc_max;
	if ((rc = encode_seq(t, a, alen, ea, err)))
		return rc;
	if (b && (rc = encode_seq(t, b, blen, eb, err)))
		return rc;
	if ((rc = truncate(t, ea, eb, limit >= nspecial ? limit - nspecial : 0, err)))
		return rc;
#define PUT(id_, type_, special_) do { \
		ids_out[n] = (id_); \
		if (type_ids) type_ids[n] = (type_); \
		if (attention_mask) attention_mask[n] = 1; \
		if (special_mask) special_mask[n] = (special_); \
		n++; \
	} while (0)
	if (!t->has_post) {
		for (i = 0; i < ea->n; i++)
			PUT(ea->p[i], 0, 0);
		for (i = 0; eb && i < eb->n; i++)
			PUT(eb->p[i], 1, 0);
	} else {
		for (k = 0; k < tp->n; k++) {
			const struct titem *it = &tp->items[k];
			const struct ib *e = it->seq == 0 ? ea : it->seq == 1 ? eb : NULL;

			if (it->seq >= 0) {
				for (i = 0; e && i < e->n; i++)
					PUT(e->p[i], it->type_id, 0);
			} else {
				for (i = 0; i < it->nids; i++)
					PUT(it->ids[i], it->type_id, 1);
			}
		}
	}
#undef PUT
	if (t->has_pad) {
		target = t->pad_fixed ? t->pad_len : n;
		if (t->pad_multiple && target % t->pad_multiple)
			target += t->pad_multiple - target % t->pad_multiple;
		if (target > max_len)
			target = max_len;
		if (n < target) {
			size_t pad = target - n;

			if (t->pad_left) {
				memmove(ids_out + pad, ids_out, n * sizeof(*ids_out));
				if (type_ids)
					memmove(type_ids + pad, type_ids, n * sizeof(*type_ids));
				if (attention_mask)
					memmove(attention_mask + pad, attention_mask, n * sizeof(int64_t));
				if (special_mask)
					memmove(special_mask + pad, special_mask, n * sizeof(int64_t));
			}
			for (i = 0; i < pad; i++) {
				size_t at = t->pad_left ? i : n + i;

				ids_out[at] = t->pad_id;
				if (type_ids)
					type_ids[at] = t->pad_type_id;
				if (attention_mask)
					attention_mask[at] = 0;
				if (special_mask)
					special_mask[at] = 1;
			}
			n = target;
		}
	}
	*n_out = n;
	return 0;
}

int nx_tokenizer_encode_plain(nx_tokenizer *t, const char *text, size_t len, size_t max_len,
			      int64_t *ids_out, size_t *n_out, nx_error *err)
{
	struct ib *e = &t->ids[0];
	size_t i;
	int rc;

	e->n = 0;
	if ((rc = encode_seq(t, text, len, e, err)))
		return rc;
	for (i = 0; i < e->n && i < max_len; i++)
		ids_out[i] = e->p[i];
	*n_out = i;
	return 0;
}

int nx_tokenizer_encode(nx_tokenizer *t, const char *text, size_t len, size_t max_len,
			int64_t *ids_out, size_t *n_out, nx_error *err)
{
	return nx_tokenizer_encode_pair(t, text, len, NULL, 0, max_len, ids_out, NULL, NULL, NULL,
					n_out, err);
}

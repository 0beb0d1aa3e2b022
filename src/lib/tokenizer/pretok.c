/*
 * pretok.c - Hugging Face's pre-tokenizers: each turns a list of pieces
 * into a new list (pieces that are added tokens pass through untouched).
 * A split is computed as HF does: a list of (range, is_match) spans from a
 * character predicate or a regex, then folded by the split behavior.
 * Regexes are PCRE2 with its JIT, under a match limit: a pattern from a
 * file can backtrack badly, and the runtime must answer, not hang.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok_int.h"

/*
 * Hugging Face's regexes run on Oniguruma, whose \s is Unicode White_Space
 * and whose \w is L, M, Nd, Pc; PCRE2's (UCP) differ on a few characters
 * (U+180E is space to PCRE2, marks are not word characters), so these
 * escapes are rewritten as explicit classes before compiling.
 */
#define RE_SPACE "\\t\\n\\x0b\\f\\r \\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}" \
		 "\\x{202f}\\x{205f}\\x{3000}"
#define RE_WORD "\\p{L}\\p{M}\\p{Nd}\\p{Pc}"

static int re_translate(const char *pat, size_t len, struct tb *o)
{
	bool in_class = false;
	size_t i, class_start = 0;

	o->n = 0;
	for (i = 0; i < len; i++) {
		char c = pat[i];
		const char *body = NULL;

		if (c == '\\' && i + 1 < len) {
			char x = pat[++i];

			if (x == 's' || x == 'S')
				body = RE_SPACE;
			else if (x == 'w' || x == 'W')
				body = RE_WORD;
			if (body && (in_class ? (x == 's' || x == 'w') : 1)) {
				bool neg = x == 'S' || x == 'W';

				if ((!in_class && nx_tok__tb_put(o, neg ? "[^" : "[", neg ? 2 : 1)) ||
				    nx_tok__tb_put(o, body, strlen(body)) ||
				    (!in_class && nx_tok__tb_put(o, "]", 1)))
					return NX_ENOMEM;
				continue;
			}
			if (nx_tok__tb_put(o, pat + i - 1, 2))
				return NX_ENOMEM;
			continue;
		}
		if (!in_class && c == '[') {
			in_class = true;
			class_start = i + 1;
			if (i + 1 < len && pat[i + 1] == '^')
				class_start++;
		} else if (in_class && c == ']' && i != class_start) {
			in_class = false;
		}
		if (nx_tok__tb_put(o, &c, 1))
			return NX_ENOMEM;
	}
	return 0;
}

int nx_tok__re_compile(struct tre *re, const char *pat, size_t len, bool literal,
		       char *why, size_t whylen)
{
	struct tb tr = { 0 };
	int errcode;
	PCRE2_SIZE erroff;
	uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);

	if (!literal) {
		if (re_translate(pat, len, &tr)) {
			free(tr.p);
			snprintf(why, whylen, "out of memory");
			return NX_ENOMEM;
		}
		pat = tr.p ? tr.p : "";
		len = tr.n;
	}
	re->code = pcre2_compile((PCRE2_SPTR)pat, len, opts, &errcode, &erroff, NULL);
	free(tr.p);
	if (!re->code) {
		PCRE2_UCHAR msg[256];

		pcre2_get_error_message(errcode, msg, sizeof(msg));
		snprintf(why, whylen, "%s at offset %zu", (const char *)msg, (size_t)erroff);
		return NX_ECONFIG;
	}
	(void)pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE);  /* interpreter if refused */
	re->md = pcre2_match_data_create_from_pattern(re->code, NULL);
	if (!re->md) {
		snprintf(why, whylen, "out of memory");
		return NX_ENOMEM;
	}
	return 0;
}

void nx_tok__re_release(struct tre *re)
{
	pcre2_match_data_free(re->md);
	pcre2_code_free(re->code);
	re->md = NULL;
	re->code = NULL;
}

static pcre2_match_context *match_ctx(void)
{
	static __thread pcre2_match_context *ctx;

	if (!ctx && (ctx = pcre2_match_context_create(NULL))) {
		pcre2_set_match_limit(ctx, NX_TOK_MATCH_LIMIT);
		pcre2_set_depth_limit(ctx, 100000);
	}
	return ctx;
}

int nx_tok__re_next(struct tre *re, const char *s, size_t len, size_t from, size_t *ms,
		    size_t *me)
{
	PCRE2_SIZE *ov;
	int r = pcre2_match(re->code, (PCRE2_SPTR)s, len, from, PCRE2_NO_UTF_CHECK, re->md,
			    match_ctx());

	if (r == PCRE2_ERROR_NOMATCH)
		return 0;
	if (r < 0)
		return r;
	ov = pcre2_get_ovector_pointer(re->md);
	*ms = ov[0];
	*me = ov[1];
	return 1;
}

static int span_add(nx_tokenizer *t, size_t *n, size_t s, size_t e, int m)
{
	if (*n == t->spans_cap && NX_ARRAY_PUSH(t->spans, t->spans_cap, *n))
		return NX_ENOMEM;
	t->spans[*n].s = (uint32_t)s;
	t->spans[*n].e = (uint32_t)e;
	t->spans[*n].m = (uint32_t)m;
	(*n)++;
	return 0;
}

typedef int (*char_pred)(const struct tpre *p, uint32_t c);

/* HF's Pattern for a char predicate: every matching character is one match. */
static int spans_pred(nx_tokenizer *t, const struct tpre *p, char_pred f, const char *s,
		      size_t len, size_t *n)
{
	size_t i = 0, last = 0;

	*n = 0;
	if (!len)
		return span_add(t, n, 0, 0, 0);
	while (i < len) {
		size_t b = i;
		uint32_t c = nx_tok__next(s, len, &i);

		if (f(p, c)) {
			if (last < b && span_add(t, n, last, b, 0))
				return NX_ENOMEM;
			if (span_add(t, n, b, i, 1))
				return NX_ENOMEM;
			last = i;
		}
	}
	if (len > last && span_add(t, n, last, len, 0))
		return NX_ENOMEM;
	return 0;
}

/* HF's Pattern for a regex, with onig's find_iter stepping over empty matches. */
static int spans_re(nx_tokenizer *t, struct tre *re, const char *s, size_t len, size_t *n,
		    nx_error *err)
{
	size_t from = 0, prev = 0, ms, me;
	long long last_end = -1;
	int r = 0;

	*n = 0;
	if (!len)
		return span_add(t, n, 0, 0, 0);
	while (from <= len && (r = nx_tok__re_next(re, s, len, from, &ms, &me)) > 0) {
		if (ms == me && (long long)me == last_end) {
			if (from >= len)
				break;
			nx_tok__next(s, len, &from);
			continue;
		}
		if (prev != ms && span_add(t, n, prev, ms, 0))
			return NX_ENOMEM;
		if (span_add(t, n, ms, me, 1))
			return NX_ENOMEM;
		prev = me;
		last_end = (long long)me;
		from = me;
	}
	if (r < 0)
		return nx_error_set(err, NX_ELIMIT, NULL, 0, -1,
				    "the tokenizer's pre-tokenizer regex gave up on this text "
				    "(PCRE2 error %d)", r);
	if (prev != len && span_add(t, n, prev, len, 0))
		return NX_ENOMEM;
	return 0;
}

/* Fold the spans by the behavior (HF NormalizedString::split); m = keep. */
static size_t fold(nx_tokenizer *t, size_t n, enum split_behavior b, bool invert)
{
	struct span *v = t->spans;
	size_t i, k = 0;
	bool prev = false;

	if (invert)
		for (i = 0; i < n; i++)
			v[i].m = !v[i].m;
	switch (b) {
	case B_REMOVED:
		for (i = 0; i < n; i++)
			v[i].m = !v[i].m;
		return n;
	case B_ISOLATED:
		for (i = 0; i < n; i++)
			v[i].m = 1;
		return n;
	case B_MERGED_PREV:
		for (i = 0; i < n; i++) {
			bool is_m = v[i].m;

			if (is_m && !prev && k)
				v[k - 1].e = v[i].e;
			else
				v[k++] = (struct span){ v[i].s, v[i].e, 1 };
			prev = is_m;
		}
		return k;
	case B_MERGED_NEXT: {
		/* right to left, then the result reversed */
		size_t j = n;

		k = n;
		while (j-- > 0) {
			bool is_m = v[j].m;

			if (is_m && !prev && k < n)
				v[k].s = v[j].s;
			else
				v[--k] = (struct span){ v[j].s, v[j].e, 1 };
			prev = is_m;
		}
		memmove(v, v + k, (n - k) * sizeof(*v));
		return n - k;
	}
	case B_CONTIGUOUS:
		for (i = 0; i < n; i++) {
			bool is_m = v[i].m;

			if (is_m == prev && k)
				v[k - 1].e = v[i].e;
			else
				v[k++] = (struct span){ v[i].s, v[i].e, 1 };
			prev = is_m;
		}
		return k;
	}
	return n;
}

/* Emit the kept, non-empty spans of s as pieces of out. */
static int emit(nx_tokenizer *t, size_t n, const char *s, bool at0, struct tsplit *out)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (t->spans[i].m && t->spans[i].e > t->spans[i].s &&
		    nx_tok__split_add(out, s + t->spans[i].s, t->spans[i].e - t->spans[i].s, -1,
				      at0 && t->spans[i].s == 0))
			return NX_ENOMEM;
	return 0;
}

static int pred_ws(const struct tpre *p, uint32_t c)
{
	return nx_tok__is_ws(c);
}

static int pred_punct(const struct tpre *p, uint32_t c)
{
	return nx_tok__is_punct(c);
}

static int pred_digit(const struct tpre *p, uint32_t c)
{
	return nx_tok__is_numeric(c);
}

static int pred_delim(const struct tpre *p, uint32_t c)
{
	return c == p->delim;
}

/* BertPreTokenizer: whitespace removed, each punctuation char its own piece. */
static int bert(const char *s, size_t len, bool at0, struct tsplit *out)
{
	size_t i = 0, start = 0;

	while (i < len) {
		size_t b = i;
		uint32_t c = nx_tok__next(s, len, &i);
		int ws = nx_tok__is_ws(c);

		if (ws || nx_tok__is_punct(c)) {
			if (b > start && nx_tok__split_add(out, s + start, b - start, -1, at0 && !start))
				return NX_ENOMEM;
			if (!ws && nx_tok__split_add(out, s + b, i - b, -1, at0 && !b))
				return NX_ENOMEM;
			start = i;
		}
	}
	if (len > start && nx_tok__split_add(out, s + start, len - start, -1, at0 && !start))
		return NX_ENOMEM;
	return 0;
}

/* Whitespace: Rust regex \w+|[^\w\s]+ -- runs of word chars, runs of others. */
static int whitespace(const char *s, size_t len, bool at0, struct tsplit *out)
{
	size_t i = 0, start = 0;
	int cur = -1;  /* class of the run: 1 word, 0 other, -1 none */

	while (i <= len) {
		size_t b = i;
		int cls = -1;

		if (i < len) {
			uint32_t c = nx_tok__next(s, len, &i);

			cls = nx_tok__is_word(c) ? 1 : nx_tok__is_ws(c) ? -1 : 0;
		} else {
			i++;
		}
		if (cls != cur) {
			if (cur >= 0 && nx_tok__split_add(out, s + start, b - start, -1, at0 && !start))
				return NX_ENOMEM;
			start = b;
			cur = cls;
		}
	}
	return 0;
}

static int bytelevel(nx_tokenizer *t, struct tpre *p, const char *s, size_t len, bool at0,
		     struct tsplit *out, nx_error *err)
{
	size_t n, i, k;
	int rc;

	if (!len)
		return 0;
	t->word.n = 0;
	if (p->add_prefix_space && s[0] != ' ' && nx_tok__tb_put(&t->word, " ", 1))
		return NX_ENOMEM;
	if (nx_tok__tb_put(&t->word, s, len))
		return NX_ENOMEM;
	s = t->word.p;
	len = t->word.n;
	if (p->use_regex) {
		if ((rc = spans_re(t, &p->re, s, len, &n, err)))
			return rc;
	} else {
		n = 0;
		if (span_add(t, &n, 0, len, 1))
			return NX_ENOMEM;
	}
	for (i = 0; i < n; i++) {
		const struct span *sp = &t->spans[i];

		if (sp->e == sp->s)
			continue;
		t->word2.n = 0;
		for (k = sp->s; k < sp->e; k++)
			if (nx_tok__tb_putc(&t->word2, nx_tok__byte_char((unsigned char)s[k])))
				return NX_ENOMEM;
		if (nx_tok__split_add(out, t->word2.p, t->word2.n, -1, at0 && sp->s == 0))
			return NX_ENOMEM;
	}
	return 0;
}

static int metaspace(nx_tokenizer *t, struct tpre *p, const char *s, size_t len, bool at0,
		     struct tsplit *out)
{
	size_t i, start = 0;

	if (!len)
		return 0;
	t->word.n = 0;
	for (i = 0; i < len; i++) {
		if (s[i] == ' ' ? nx_tok__tb_put(&t->word, p->rep, p->rep_len)
				: nx_tok__tb_put(&t->word, s + i, 1))
			return NX_ENOMEM;
	}
	s = t->word.p;
	len = t->word.n;
	if ((p->prepend == PREPEND_ALWAYS || (p->prepend == PREPEND_FIRST && at0)) &&
	    !(len >= p->rep_len && !memcmp(s, p->rep, p->rep_len))) {
		t->word2.n = 0;
		if (nx_tok__tb_put(&t->word2, p->rep, p->rep_len) ||
		    nx_tok__tb_put(&t->word2, s, len))
			return NX_ENOMEM;
		s = t->word2.p;
		len = t->word2.n;
	}
	if (!p->split)
		return nx_tok__split_add(out, s, len, -1, at0);
	/* split on the replacement, MergedWithNext */
	for (i = 0; i + p->rep_len <= len;) {
		if (!memcmp(s + i, p->rep, p->rep_len)) {
			if (i > start && nx_tok__split_add(out, s + start, i - start, -1, at0 && !start))
				return NX_ENOMEM;
			start = i;
			i += p->rep_len;
		} else {
			i++;
		}
	}
	if (len > start && nx_tok__split_add(out, s + start, len - start, -1, at0 && !start))
		return NX_ENOMEM;
	return 0;
}

/* Pre-tokenize one piece of text into out. */
static int one(nx_tokenizer *t, struct tpre *p, const char *s, size_t len, bool at0,
	       struct tsplit *out, nx_error *err)
{
	size_t n = 0;
	int rc = 0;

	switch (p->type) {
	case P_BERT:
		return bert(s, len, at0, out);
	case P_WHITESPACE:
		return whitespace(s, len, at0, out);
	case P_BYTELEVEL:
		return bytelevel(t, p, s, len, at0, out, err);
	case P_METASPACE:
		return metaspace(t, p, s, len, at0, out);
	case P_WHITESPACE_SPLIT:
		rc = spans_pred(t, p, pred_ws, s, len, &n);
		n = fold(t, n, B_REMOVED, false);
		break;
	case P_PUNCT:
		rc = spans_pred(t, p, pred_punct, s, len, &n);
		n = fold(t, n, p->behavior, false);
		break;
	case P_DIGITS:
		rc = spans_pred(t, p, pred_digit, s, len, &n);
		n = fold(t, n, p->individual_digits ? B_ISOLATED : B_CONTIGUOUS, false);
		break;
	case P_CHARDELIM:
		rc = spans_pred(t, p, pred_delim, s, len, &n);
		n = fold(t, n, B_REMOVED, false);
		break;
	case P_SPLIT:
		if ((rc = spans_re(t, &p->re, s, len, &n, err)))
			return rc;
		n = fold(t, n, p->behavior, p->invert);
		break;
	case P_SEQ:
		return NX_EINTERNAL;  /* handled by nx_tok__pretokenize */
	}
	if (rc)
		return rc;
	return emit(t, n, s, at0, out);
}

int nx_tok__pretokenize(nx_tokenizer *t, struct tpre *p, struct tsplit *in,
			struct tsplit *out, nx_error *err)
{
	size_t i;
	int rc;

	out->n = 0;
	out->text.n = 0;
	if (p->type == P_SEQ) {
		struct tsplit *cur = in;
		size_t k;

		if (!p->nkids) {
			for (i = 0; i < in->n; i++)
				if (nx_tok__split_add(out, in->text.p + in->v[i].off, in->v[i].len,
						      in->v[i].added, in->v[i].at0))
					goto nomem;
			return 0;
		}
		for (k = 0; k < p->nkids; k++) {
			struct tsplit *dst = k + 1 == p->nkids ? out : &p->scratch[k & 1];

			if ((rc = nx_tok__pretokenize(t, &p->kids[k], cur, dst, err)))
				return rc;
			cur = dst;
		}
		return 0;
	}
	for (i = 0; i < in->n; i++) {
		const struct tpiece *pc = &in->v[i];

		if (pc->added >= 0) {
			if (nx_tok__split_add(out, in->text.p + pc->off, pc->len, pc->added, pc->at0))
				goto nomem;
			continue;
		}
		rc = one(t, p, in->text.p + pc->off, pc->len, pc->at0, out, err);
		if (rc == NX_ENOMEM)
			goto nomem;
		if (rc)
			return rc;
	}
	return 0;
nomem:
	return nx_error_set(err, NX_ENOMEM, NULL, 0, -1, "out of memory pre-tokenizing the text");
}

void nx_tok__pre_release(struct tpre *p)
{
	size_t k;

	if (!p)
		return;
	for (k = 0; k < p->nkids; k++)
		nx_tok__pre_release(&p->kids[k]);
	free(p->kids);
	nx_tok__re_release(&p->re);
	for (k = 0; k < 2; k++) {
		free(p->scratch[k].v);
		free(p->scratch[k].text.p);
	}
}

/*
 * pylex.c - Python tokenizer (nexus/pylex.h).
 *
 * One call, one token: the byte class of the current byte picks the branch,
 * each branch consumes its token and returns.  Nothing is allocated; the
 * only look-ahead beyond a few bytes is the docstring test, which runs a
 * copy of the lexer state to the end of the current logical line.
 */
#include "nexus/pylex.h"

#include <string.h>

/* Nested replacement fields in one f-string, e.g. f"{a:{b:{c}}}". */
#define NX_PYLEX_FSTRING_NEST_MAX 16

/*
 * Byte classes of ASCII; bytes >= 0x80 are identifier bytes.
 * ' ' blank, 'n' newline, 'a' identifier, '0' digit, 'q' quote,
 * '#' comment, '\\' continuation, '.' dot, '(' open, ')' close,
 * '+' operator, 'x' illegal.
 */
static const char ascii_class[129] =
	"xxxxxxxxx nx nxx"  /* 0x00 */
	"xxxxxxxxxxxxxxxx"  /* 0x10 */
	" +q#x++q()++++.+"  /* 0x20  !"#$%&'()*+,-./ */
	"0000000000+++++x"  /* 0x30 0-9:;<=>? */
	"+aaaaaaaaaaaaaaa"  /* 0x40 @A-O */
	"aaaaaaaaaaa(\\)+a" /* 0x50 P-Z[\]^_ */
	"xaaaaaaaaaaaaaaa"  /* 0x60 `a-o */
	"aaaaaaaaaaa(+)+x"; /* 0x70 p-z{|}~ */

static char cls(unsigned char c)
{
	return c >= 0x80 ? 'a' : ascii_class[c];
}

static const char *const ops3[] = { "**=", "//=", ">>=", "<<=", "...", NULL };
static const char *const ops2[] = {
	"**", "//", ">>", "<<", "<=", ">=", "==", "!=", "->", "+=", "-=", "*=",
	"/=", "%=", "&=", "|=", "^=", "@=", ":=", NULL
};

void nx_pylex_init(nx_pylex *lx, const char *buf, size_t len)
{
	memset(lx, 0, sizeof(*lx));
	lx->buf = buf;
	lx->len = len;
	lx->line = 1;
}

const char *nx_py_kind_name(int kind)
{
	switch (kind) {
	case NX_PY_ENDMARKER: return "ENDMARKER";
	case NX_PY_NAME: return "NAME";
	case NX_PY_NUMBER: return "NUMBER";
	case NX_PY_STRING: return "STRING";
	case NX_PY_COMMENT: return "COMMENT";
	case NX_PY_OP: return "OP";
	case NX_PY_NEWLINE: return "NEWLINE";
	case NX_PY_NL: return "NL";
	default: return "ERROR";
	}
}

/* Length of the newline at p (\n, \r\n or a lone \r), 0 if none. */
static size_t nl_len(const nx_pylex *lx, size_t p)
{
	if (p >= lx->len)
		return 0;
	if (lx->buf[p] == '\n')
		return 1;
	if (lx->buf[p] == '\r')
		return p + 1 < lx->len && lx->buf[p + 1] == '\n' ? 2 : 1;
	return 0;
}

/* Account for a newline that ends just before p. */
static void new_line(nx_pylex *lx, size_t p)
{
	lx->line++;
	lx->line_start = p;
}

static int at(const nx_pylex *lx, size_t p, char c)
{
	return p < lx->len && lx->buf[p] == c;
}

static int is_triple(const nx_pylex *lx, size_t p, char q)
{
	return at(lx, p, q) && at(lx, p + 1, q) && at(lx, p + 2, q);
}

/* One open replacement field of an f-string. */
struct ffield {
	unsigned char spec;   /* in the format spec after ':' */
	unsigned char ended;  /* its expression was reported (at '!', ':' or '}') */
	long brackets;        /* open brackets of the expression */
	size_t start;         /* offset of the expression */
};

/* Where scan_quoted reports each replacement field's expression. */
struct fsink {
	nx_pylex_field_fn fn;
	void *ctx;
	int rc;
};

/* Report the expression of field f, which ends at p, once. */
static void field_end(struct fsink *out, struct ffield *f, size_t p)
{
	if (f->ended)
		return;
	f->ended = 1;
	if (out && !out->rc)
		out->rc = out->fn(out->ctx, f->start, p - f->start);
}

/*
 * Scan a string whose opening quote is at *pp; on success leave *pp after
 * the closing quote and return NULL.  On error return the message and leave
 * *pp where lexing should resume.  `fstr` turns on replacement fields, in
 * whose expressions a quote starts a nested (plain) string, as in 3.12.
 * `nest` bounds the recursion.
 */
static const char *scan_quoted(nx_pylex *lx, size_t *pp, int fstr, size_t *body,
			       size_t *body_len, int nest, struct fsink *out)
{
	struct ffield st[NX_PYLEX_FSTRING_NEST_MAX];
	int top = -1;
	size_t p = *pp, n, b, bl;
	char q = lx->buf[p];
	int triple = is_triple(lx, p, q);
	const char *msg;

	p += triple ? 3 : 1;
	*body = p;
	for (;;) {
		char c;

		if (p >= lx->len) {
			*pp = p;
			return triple ? "unterminated triple-quoted string"
				      : "unterminated string";
		}
		c = lx->buf[p];
		if ((n = nl_len(lx, p))) {
			if (!triple) {
				*pp = p;
				return "unterminated string";
			}
			p += n;
			new_line(lx, p);
			continue;
		}
		if (top >= 0 && !st[top].spec) {
			/* inside the expression of a replacement field */
			if (c == '\'' || c == '"') {
				if (nest >= NX_PYLEX_FSTRING_NEST_MAX) {
					*pp = p + 1;
					return "f-string nested too deeply";
				}
				msg = scan_quoted(lx, &p, 0, &b, &bl, nest + 1, NULL);
				if (msg) {
					*pp = p;
					return msg;
				}
				continue;
			}
			if (c == '(' || c == '[' || c == '{') {
				st[top].brackets++;
			} else if ((c == ')' || c == ']' || c == '}') && st[top].brackets > 0) {
				st[top].brackets--;
			} else if (c == '}') {
				field_end(out, &st[top], p);
				top--;
			} else if (c == ':' && st[top].brackets == 0) {
				field_end(out, &st[top], p);
				st[top].spec = 1;
			} else if (c == '!' && st[top].brackets == 0 && !at(lx, p + 1, '=')) {
				field_end(out, &st[top], p);   /* a conversion: !r, !s, !a */
			}
			p++;
			continue;
		}
		if (c == '\\') {
			p++;
			if ((n = nl_len(lx, p))) {
				p += n;
				new_line(lx, p);
			} else if (p < lx->len) {
				p++;
			}
			continue;
		}
		if (c == q && (!triple || is_triple(lx, p, q))) {
			*body_len = p - *body;
			*pp = p + (triple ? 3 : 1);
			return NULL;
		}
		if (fstr && c == '{') {
			if (top < 0 && at(lx, p + 1, '{')) {
				p += 2;
				continue;
			}
			if (top + 1 >= NX_PYLEX_FSTRING_NEST_MAX) {
				*pp = p + 1;
				return "f-string nested too deeply";
			}
			top++;
			st[top].spec = 0;
			st[top].ended = 0;
			st[top].brackets = 0;
			st[top].start = p + 1;
		} else if (fstr && c == '}' && top >= 0) {
			top--;    /* end of a field whose format spec we were in */
		}
		p++;
	}
}

/* Flags of a string prefix of n bytes, or -1 if s is not a prefix. */
static int str_prefix(const char *s, size_t n)
{
	int f = 0;
	size_t i;

	if (n == 0 || n > 2)
		return -1;
	for (i = 0; i < n; i++) {
		int add;

		switch (s[i] | 0x20) {
		case 'r': add = NX_PY_STR_RAW; break;
		case 'b': add = NX_PY_STR_BYTES; break;
		case 'f': case 't': add = NX_PY_STR_F; break;
		case 'u': add = n == 1 ? 0 : -1; break;
		default: add = -1;
		}
		if (add < 0 || (f & add))
			return -1;
		f |= add;
	}
	/* two letters: one must be r */
	if (n == 2 && !(f & NX_PY_STR_RAW))
		return -1;
	if ((f & NX_PY_STR_BYTES) && (f & NX_PY_STR_F))
		return -1;
	return f;
}

static int is_digit(const nx_pylex *lx, size_t p)
{
	return p < lx->len && cls((unsigned char)lx->buf[p]) == '0';
}

static size_t scan_number(const nx_pylex *lx, size_t p)
{
	const char *s = lx->buf;

	if (s[p] == '0' && p + 1 < lx->len && strchr("xXoObB", s[p + 1]) && s[p + 1]) {
		p += 2;
		while (p < lx->len && (strchr("0123456789abcdefABCDEF_", s[p]) && s[p]))
			p++;
		return p;
	}
	while (is_digit(lx, p) || at(lx, p, '_'))
		p++;
	if (at(lx, p, '.')) {
		p++;
		while (is_digit(lx, p) || at(lx, p, '_'))
			p++;
	}
	if (p < lx->len && (s[p] | 0x20) == 'e') {
		size_t e = p + 1;

		if (at(lx, e, '+') || at(lx, e, '-'))
			e++;
		if (is_digit(lx, e)) {
			p = e;
			while (is_digit(lx, p) || at(lx, p, '_'))
				p++;
		}
	}
	if (p < lx->len && (s[p] | 0x20) == 'j')
		p++;
	return p;
}

static size_t match_op(const nx_pylex *lx, size_t p)
{
	size_t left = lx->len - p;
	int i;

	for (i = 0; ops3[i]; i++)
		if (left >= 3 && memcmp(lx->buf + p, ops3[i], 3) == 0)
			return 3;
	for (i = 0; ops2[i]; i++)
		if (left >= 2 && memcmp(lx->buf + p, ops2[i], 2) == 0)
			return 2;
	return lx->buf[p] == '!' ? 0 : 1;
}

static void end_logical_line(nx_pylex *lx)
{
	lx->nlogical++;
	lx->doc_next = lx->head_kind == 1 && lx->last_colon;
	lx->head_kind = 0;
	lx->last_colon = 0;
	lx->line_has_tokens = 0;
}

static int tok_is(const nx_pylex *lx, const nx_py_token *t, const char *s)
{
	size_t n = strlen(s);

	return t->len == n && memcmp(lx->buf + t->start, s, n) == 0;
}

/* Does the logical line holding the string token just lexed hold nothing
 * but string literals (and a comment)? */
static int rest_is_strings(const nx_pylex *lx)
{
	nx_pylex copy = *lx;
	nx_py_token u;
	int k;

	copy.peeking = 1;
	while ((k = nx_pylex_next(&copy, &u)) == NX_PY_STRING || k == NX_PY_COMMENT)
		if (k == NX_PY_STRING && (u.flags & (NX_PY_STR_F | NX_PY_STR_BYTES)))
			return 0;   /* "doc" f"{x}" is a JoinedStr, run at import */
	return k == NX_PY_NEWLINE || k == NX_PY_ENDMARKER;
}

/* Bookkeeping for a significant token (anything but comments/newlines). */
static void significant(nx_pylex *lx, nx_py_token *t)
{
	if (!lx->line_has_tokens) {
		lx->line_has_tokens = 1;
		lx->lcol = t->col;
		t->first = 1;
		lx->head_kind = 0;
		if (t->kind == NX_PY_NAME)
			lx->head_kind = tok_is(lx, t, "def") || tok_is(lx, t, "class") ? 1 :
					tok_is(lx, t, "async") ? 2 : 0;
		if (t->kind == NX_PY_STRING && !(t->flags & (NX_PY_STR_F | NX_PY_STR_BYTES)) &&
		    !lx->peeking &&
		    (lx->nlogical == 0 || lx->doc_next) && rest_is_strings(lx))
			lx->head_kind = 3;  /* a docstring line */
	} else if (lx->head_kind == 2) {
		lx->head_kind = t->kind == NX_PY_NAME && tok_is(lx, t, "def") ? 1 : 0;
	}
	if (t->kind == NX_PY_STRING && lx->head_kind == 3)
		t->docstring = 1;
	lx->last_colon = t->kind == NX_PY_OP && tok_is(lx, t, ":");
	t->lcol = lx->lcol;
}

int nx_pylex_next(nx_pylex *lx, nx_py_token *t)
{
	size_t p, n;
	char c;
	int f;
	const char *msg;

	if (lx->ntokens++ == NX_PYLEX_TOKENS_MAX) {
		/* one ERROR, then the end: no caller holds more tokens */
		memset(t, 0, sizeof(*t));
		t->start = lx->pos;
		t->line = lx->line;
		t->col = (long)(lx->pos - lx->line_start) + 1;
		t->msg = "more than 1000000 tokens, more than any serving code holds";
		lx->pos = lx->len;
		lx->line_has_tokens = 0;
		return t->kind = NX_PY_ERROR;
	}
again:
	memset(t, 0, sizeof(*t));
	p = lx->pos;
	while (p < lx->len && cls((unsigned char)lx->buf[p]) == ' ')
		p++;
	lx->pos = p;
	t->start = p;
	t->line = lx->line;
	t->col = (long)(p - lx->line_start) + 1;
	t->lcol = t->col;
	t->depth = (int)(lx->depth > 0x7fffffff ? 0x7fffffff : lx->depth);
	if (p >= lx->len) {
		if (lx->line_has_tokens) {
			t->kind = NX_PY_NEWLINE;
			end_logical_line(lx);
			return t->kind;
		}
		lx->done = 1;
		return t->kind = NX_PY_ENDMARKER;
	}
	c = cls((unsigned char)lx->buf[p]);
	switch (c) {
	case 'n':
		n = nl_len(lx, p);
		lx->pos = p + n;
		t->len = n;
		new_line(lx, lx->pos);
		if (lx->depth == 0 && lx->line_has_tokens) {
			t->kind = NX_PY_NEWLINE;
			end_logical_line(lx);
		} else {
			t->kind = NX_PY_NL;
		}
		return t->kind;
	case '#':
		while (p < lx->len && !nl_len(lx, p))
			p++;
		t->kind = NX_PY_COMMENT;
		t->len = p - t->start;
		lx->pos = p;
		return t->kind;
	case '\\':
		if ((n = nl_len(lx, p + 1))) {
			lx->pos = p + 1 + n;
			new_line(lx, lx->pos);
			goto again;
		}
		t->kind = NX_PY_ERROR;
		t->msg = "unexpected character after line continuation";
		p++;
		break;
	case 'a':
		while (p < lx->len && (cls((unsigned char)lx->buf[p]) == 'a' ||
				       cls((unsigned char)lx->buf[p]) == '0'))
			p++;
		if (p < lx->len && cls((unsigned char)lx->buf[p]) == 'q' &&
		    (f = str_prefix(lx->buf + t->start, p - t->start)) >= 0) {
			t->flags = f;
			goto string;
		}
		t->kind = NX_PY_NAME;
		break;
	case '0':
		p = scan_number(lx, p);
		t->kind = NX_PY_NUMBER;
		break;
	case '.':
		if (is_digit(lx, p + 1)) {
			p = scan_number(lx, p);
			t->kind = NX_PY_NUMBER;
			break;
		}
		p += match_op(lx, p);
		t->kind = NX_PY_OP;
		break;
	case 'q':
	string:
		if (is_triple(lx, p, lx->buf[p]))
			t->flags |= NX_PY_STR_TRIPLE;
		msg = scan_quoted(lx, &p, t->flags & NX_PY_STR_F, &t->body, &t->body_len, 0, NULL);
		if (msg) {
			t->kind = NX_PY_ERROR;
			t->msg = msg;
			t->body = t->body_len = 0;
		} else {
			t->kind = NX_PY_STRING;
		}
		break;
	case '(':
		lx->depth++;
		p++;
		t->kind = NX_PY_OP;
		break;
	case ')':
		if (lx->depth > 0)
			lx->depth--;
		p++;
		t->kind = NX_PY_OP;
		break;
	case '+':
		if ((n = match_op(lx, p))) {
			p += n;
			t->kind = NX_PY_OP;
			break;
		}
		t->kind = NX_PY_ERROR;   /* a lone '!' */
		t->msg = "unexpected character";
		p++;
		break;
	default:
		t->kind = NX_PY_ERROR;
		t->msg = "unexpected character";
		p++;
		break;
	}
	t->len = p - t->start;
	lx->pos = p;
	significant(lx, t);
	return t->kind;
}

int nx_pylex_fstring_fields(const char *buf, size_t len, const nx_py_token *t,
			    nx_pylex_field_fn fn, void *ctx)
{
	struct fsink out = { fn, ctx, 0 };
	nx_pylex lx;
	size_t p, body, body_len;

	if (t->kind != NX_PY_STRING || !(t->flags & NX_PY_STR_F) || t->start + t->len > len)
		return 0;
	nx_pylex_init(&lx, buf, t->start + t->len);
	lx.pos = p = t->body - ((t->flags & NX_PY_STR_TRIPLE) ? 3 : 1);
	/* the token was lexed from this very text: the scan cannot fail */
	scan_quoted(&lx, &p, 1, &body, &body_len, 0, &out);
	return out.rc;
}

/*
 * chat_template.c - compiles a chat template: the text is cut into chunks
 * (text, {{ }}, {% %}, {# #}), Jinja's whitespace rules are applied to the
 * text chunks as transformers configures them (trim_blocks, lstrip_blocks,
 * the - and + markers), and each tag's contents are tokenized and parsed by
 * recursive descent into the tree of chat_int.h.  What the subset does not
 * hold is refused here, with its line.  Why hand-written: chat_int.h.
 */
#include "chat_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { K_TEXT, K_VAR, K_BLOCK, K_COMMENT };
enum { T_NAME, T_STRING, T_INT, T_FLOAT, T_OP, T_END };

struct chunk {
	int kind, line;
	size_t off, len;    /* text, or tag contents without markers */
	char lflag, rflag;  /* '-', '+' or 0 */
};

struct token {
	int type, line;
	const char *s;      /* source bytes */
	size_t len;
	json_t *val;        /* T_STRING, T_INT */
};

struct parser {
	const char *src;    /* normalized source */
	size_t n;
	struct chunk *ch;
	size_t nch, capch, ci;
	struct token *tok;
	size_t ntok, ti, captok;
	int depth, loops;
	const char *path;
	nx_error *err;
};

static const char *const FILTERS[] = { "trim", "length", "count", "tojson", "string", "first",
	"last", "join", "default", "d", "items", "list", "reverse", "replace", NULL };
static const char *const TESTS[] = { "defined", "undefined", "none", "string", "number", "integer",
	"boolean", "true", "false", "mapping", "sequence", "iterable", "odd", "even", NULL };
static const char *const METHODS[] = { "strip", "lstrip", "rstrip", "startswith", "endswith",
	"replace", "split", "items", "keys", "values", "get", NULL };
static const char *const CALLS[] = { "raise_exception", "namespace", "range", NULL };

static bool in_list(const char *const *l, const char *s, size_t n)
{
	for (; *l; l++)
		if (strlen(*l) == n && !memcmp(*l, s, n))
			return true;
	return false;
}

__attribute__((format(printf, 3, 4)))
static int fail(struct parser *p, int line, const char *fmt, ...)
{
	char msg[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return nx_error_set(p->err, NX_ECONFIG, p->path, line, -1,
			    "%s: chat template line %d: %s; the runtime renders only the Jinja subset "
			    "of nexus/chat_template.h, so this template cannot be used as it is",
			    p->path ? p->path : "chat_template", line, msg);
}

static int line_at(const struct parser *p, size_t off)
{
	size_t i;
	int line = 1;

	for (i = 0; i < off && i < p->n; i++)
		line += p->src[i] == '\n';
	return line;
}

/* ---- chunks ---- */

static int add_chunk(struct parser *p, int kind, size_t off, size_t len, char lf, char rf)
{
	struct chunk *c;

	if (NX_ARRAY_PUSH(p->ch, p->capch, p->nch))
		return nx_error_oom(p->err, p->path);
	c = &p->ch[p->nch++];
	*c = (struct chunk){ kind, line_at(p, off), off, len, lf, rf };
	return 0;
}

/* The end of a tag opened at `start` (just after its marker), skipping strings. */
static int find_end(struct parser *p, size_t start, int kind, size_t *end)
{
	char close = kind == K_VAR ? '}' : kind == K_BLOCK ? '%' : '#';
	size_t i = start;

	while (i + 1 < p->n) {
		char c = p->src[i];

		if (kind != K_COMMENT && (c == '\'' || c == '"')) {
			for (i++; i < p->n && p->src[i] != c; i++)
				if (p->src[i] == '\\')
					i++;
			i++;
			continue;
		}
		if (c == close && p->src[i + 1] == '}') {
			*end = i;
			return 0;
		}
		i++;
	}
	return fail(p, line_at(p, start), "a tag opened here is never closed");
}

static int cut_chunks(struct parser *p)
{
	size_t i = 0, text = 0;
	int rc;

	while (i + 1 < p->n) {
		int kind;
		size_t body, end = 0;
		char lf = 0, rf = 0;

		if (p->src[i] != '{' || (p->src[i + 1] != '{' && p->src[i + 1] != '%' && p->src[i + 1] != '#')) {
			i++;
			continue;
		}
		kind = p->src[i + 1] == '{' ? K_VAR : p->src[i + 1] == '%' ? K_BLOCK : K_COMMENT;
		if ((rc = add_chunk(p, K_TEXT, text, i - text, 0, 0)))
			return rc;
		body = i + 2;
		if (body < p->n && (p->src[body] == '-' || p->src[body] == '+'))
			lf = p->src[body++];
		if ((rc = find_end(p, body, kind, &end)))
			return rc;
		text = end + 2;
		if (end > body && (p->src[end - 1] == '-' || (p->src[end - 1] == '+' && kind != K_VAR)))
			rf = p->src[--end];
		if ((rc = add_chunk(p, kind, body, end > body ? end - body : 0, lf, rf)))
			return rc;
		i = text;
	}
	return add_chunk(p, K_TEXT, text, p->n - text, 0, 0);
}

static bool all_space(const char *s, size_t n)
{
	return n && nx_chat__space_after(s, n, 0) == n;
}

/* Jinja's lexer rules for the text between two tags (lexer.py, tokeniter). */
static void trim_text(struct parser *p, size_t i)
{
	struct chunk *t = &p->ch[i];
	const struct chunk *prev = i ? &p->ch[i - 1] : NULL, *next = i + 1 < p->nch ? &p->ch[i + 1] : NULL;
	const char *s = p->src + t->off;
	bool line_starting = !prev;
	size_t k, lpos;

	if (prev && prev->rflag == '-') {
		k = nx_chat__space_after(s, t->len, 0);
		line_starting = k && s[k - 1] == '\n';
		t->off += k;
		t->len -= k;
	} else if (prev && prev->kind != K_VAR && prev->rflag != '+' && t->len && s[0] == '\n') {
		line_starting = true;
		t->off++;
		t->len--;
	}
	s = p->src + t->off;
	if (!next)
		return;
	if (next->lflag == '-') {
		t->len = nx_chat__space_before(s, t->len, t->len);
	} else if (next->kind != K_VAR && next->lflag != '+') {
		for (lpos = t->len; lpos > 0 && s[lpos - 1] != '\n'; lpos--)
			;
		if ((lpos > 0 || line_starting) && all_space(s + lpos, t->len - lpos))
			t->len = lpos;
	}
}

/* ---- tokens of one tag ---- */

static int put_utf8(char *o, unsigned long c)
{
	if (c < 0x80) {
		o[0] = (char)c;
		return 1;
	}
	if (c < 0x800) {
		o[0] = (char)(0xc0 | (c >> 6));
		o[1] = (char)(0x80 | (c & 0x3f));
		return 2;
	}
	if (c < 0x10000) {
		o[0] = (char)(0xe0 | (c >> 12));
		o[1] = (char)(0x80 | ((c >> 6) & 0x3f));
		o[2] = (char)(0x80 | (c & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | (c >> 18));
	o[1] = (char)(0x80 | ((c >> 12) & 0x3f));
	o[2] = (char)(0x80 | ((c >> 6) & 0x3f));
	o[3] = (char)(0x80 | (c & 0x3f));
	return 4;
}

static int hexval(const char *s, size_t n, unsigned long *v)
{
	size_t i;

	*v = 0;
	for (i = 0; i < n; i++) {
		char c = s[i];
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
			c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;

		if (d < 0)
			return -1;
		*v = *v * 16 + (unsigned long)d;
	}
	return 0;
}

/* A string literal's value: Python's unicode-escape decoding, as Jinja does. */
static int string_value(struct parser *p, int line, const char *s, size_t n, json_t **out)
{
	char *o = malloc(n + 1);
	size_t i, k = 0;

	if (!o)
		return nx_error_oom(p->err, p->path);
	for (i = 0; i < n; i++) {
		unsigned long c;
		size_t w = 0;

		if (s[i] != '\\' || i + 1 == n) {
			o[k++] = s[i];
			continue;
		}
		switch (s[++i]) {
		case 'n': o[k++] = '\n'; continue;
		case 't': o[k++] = '\t'; continue;
		case 'r': o[k++] = '\r'; continue;
		case 'a': o[k++] = '\a'; continue;
		case 'b': o[k++] = '\b'; continue;
		case 'f': o[k++] = '\f'; continue;
		case 'v': o[k++] = '\v'; continue;
		case '\\': case '\'': case '"': o[k++] = s[i]; continue;
		case '\n': continue;
		case 'x': w = 2; break;
		case 'u': w = 4; break;
		case 'U': w = 8; break;
		default:
			if (s[i] >= '0' && s[i] <= '7') {
				for (c = 0, w = 0; w < 3 && i < n && s[i] >= '0' && s[i] <= '7'; w++, i++)
					c = c * 8 + (unsigned long)(s[i] - '0');
				i--;
				k += (size_t)put_utf8(o + k, c);
				continue;
			}
			if ((unsigned char)s[i] >= 0x80 || s[i] == 'N') {
				free(o);
				return fail(p, line, "the escape '\\%c' in a string is not supported", s[i]);
			}
			o[k++] = '\\';
			o[k++] = s[i];
			continue;
		}
		if (i + w >= n || hexval(s + i + 1, w, &c) || c > 0x10ffff || (c >= 0xd800 && c < 0xe000)) {
			free(o);
			return fail(p, line, "a bad \\%c escape in a string", s[i]);
		}
		/* \xNN is at most 2 bytes of UTF-8 and \uNNNN at most 3: it fits */
		k += (size_t)put_utf8(o + k, c);
		i += w;
	}
	*out = json_stringn_nocheck(o, k);
	free(o);
	return *out ? 0 : nx_error_oom(p->err, p->path);
}

static int push_tok(struct parser *p, int type, int line, const char *s, size_t len)
{
	if (NX_ARRAY_PUSH(p->tok, p->captok, p->ntok))
		return nx_error_oom(p->err, p->path);
	p->tok[p->ntok++] = (struct token){ type, line, s, len, NULL };
	return 0;
}

static void clear_tokens(struct parser *p)
{
	size_t i;

	for (i = 0; i < p->ntok; i++)
		json_decref(p->tok[i].val);
	p->ntok = p->ti = 0;
}

static int tokenize(struct parser *p, const struct chunk *c)
{
	static const char *const OPS2[] = { "//", "**", "==", "!=", ">=", "<=", NULL };
	const char *s = p->src + c->off, *e = s + c->len;
	int line = c->line, rc;

	clear_tokens(p);
	while (s < e) {
		const char *st = s;

		if (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == '\f' || *s == '\v') {
			line += *s++ == '\n';
			continue;
		}
		if ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_') {
			while (s < e && ((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_' ||
					 (*s >= '0' && *s <= '9')))
				s++;
			rc = push_tok(p, T_NAME, line, st, (size_t)(s - st));
		} else if (*s >= '0' && *s <= '9') {
			bool after_dot = p->ntok && p->tok[p->ntok - 1].type == T_OP &&
					 p->tok[p->ntok - 1].s[0] == '.';
			char num[32];
			long long v;

			while (s < e && *s >= '0' && *s <= '9')
				s++;
			if (s < e && (*s == '_' || *s == 'e' || *s == 'E' ||
				      (*s == '.' && !after_dot && s + 1 < e && s[1] >= '0' && s[1] <= '9')))
				return fail(p, line, "float and exotic number literals are not supported");
			if ((size_t)(s - st) >= sizeof(num))
				return fail(p, line, "an integer literal is too long");
			memcpy(num, st, (size_t)(s - st));
			num[s - st] = '\0';
			errno = 0;
			v = strtoll(num, NULL, 10);
			if (errno)
				return fail(p, line, "an integer literal is too large");
			if ((rc = push_tok(p, T_INT, line, st, (size_t)(s - st))))
				return rc;
			if (!(p->tok[p->ntok - 1].val = json_integer(v)))
				return nx_error_oom(p->err, p->path);
			continue;
		} else if (*s == '\'' || *s == '"') {
			char q = *s++;

			while (s < e && *s != q) {
				if (*s == '\\' && s + 1 < e)
					s++;
				line += *s++ == '\n';
			}
			if (s >= e)
				return fail(p, line, "a string is not closed");
			s++;
			if ((rc = push_tok(p, T_STRING, line, st, (size_t)(s - st))))
				return rc;
			rc = string_value(p, line, st + 1, (size_t)(s - st) - 2, &p->tok[p->ntok - 1].val);
		} else {
			const char *const *op;
			size_t len = 0;

			for (op = OPS2; *op; op++)
				if (e - s >= 2 && !memcmp(s, *op, 2))
					len = 2;
			if (!len && strchr("+-*/%~[](){}<>=.:|,", *s))
				len = 1;
			if (!len)
				return fail(p, line, "unexpected character '%c' in a tag", *s);
			s += len;
			rc = push_tok(p, T_OP, line, st, len);
		}
		if (rc)
			return rc;
	}
	return push_tok(p, T_END, line, e, 0);
}

/* ---- expressions ---- */

static struct token *cur(struct parser *p) { return &p->tok[p->ti]; }

static bool is_op(struct parser *p, const char *op)
{
	struct token *t = cur(p);

	return t->type == T_OP && t->len == strlen(op) && !memcmp(t->s, op, t->len);
}

static bool is_name(struct parser *p, const char *name)
{
	struct token *t = cur(p);

	return t->type == T_NAME && t->len == strlen(name) && !memcmp(t->s, name, t->len);
}

static bool is_name_at(struct parser *p, size_t ahead, const char *name)
{
	struct token *t;

	if (p->ti + ahead >= p->ntok)
		return false;
	t = &p->tok[p->ti + ahead];
	return t->type == T_NAME && t->len == strlen(name) && !memcmp(t->s, name, t->len);
}

static int expect_op(struct parser *p, const char *op)
{
	if (!is_op(p, op)) {
		struct token *t = cur(p);

		return fail(p, t->line, "expected '%s' but found '%.*s'", op, t->type == T_END ? 5 : (int)t->len,
			    t->type == T_END ? "end of tag" : t->s);
	}
	p->ti++;
	return 0;
}

static void expr_free(struct chat_expr *e)
{
	size_t i;

	if (!e)
		return;
	json_decref(e->lit);
	free(e->name);
	expr_free(e->a);
	expr_free(e->b);
	expr_free(e->c);
	for (i = 0; i < e->nargs; i++) {
		expr_free(e->args[i]);
		if (e->kw)
			free(e->kw[i]);
	}
	free(e->args);
	free(e->kw);
	free(e);
}

static struct chat_expr *mk(struct parser *p, int kind, int line)
{
	struct chat_expr *e = calloc(1, sizeof(*e));

	if (!e) {
		nx_error_oom(p->err, p->path);
		return NULL;
	}
	e->kind = kind;
	e->line = line;
	return e;
}

static int add_arg(struct parser *p, struct chat_expr *e, struct chat_expr *a, const char *kw, size_t kwlen)
{
	if (NX_ARRAY_PUSH(e->args, e->cap_args, e->nargs) ||
	    NX_ARRAY_PUSH(e->kw, e->cap_kw, e->nargs)) {
		expr_free(a);
		return nx_error_oom(p->err, p->path);
	}
	e->kw[e->nargs] = kw ? strndup(kw, kwlen) : NULL;
	e->args[e->nargs++] = a;
	if (kw && !e->kw[e->nargs - 1])
		return nx_error_oom(p->err, p->path);
	return 0;
}

static int parse_expr(struct parser *p, struct chat_expr **out, bool with_cond);
static int parse_unary(struct parser *p, struct chat_expr **out, bool with_filter);

/* ( [name=]expr, ... ) */
static int parse_args(struct parser *p, struct chat_expr *e)
{
	int rc;

	if ((rc = expect_op(p, "(")))
		return rc;
	while (!is_op(p, ")")) {
		struct chat_expr *a = NULL;
		const char *kw = NULL;
		size_t kwlen = 0;

		if (is_op(p, "*") || is_op(p, "**"))
			return fail(p, cur(p)->line, "*args and **kwargs are not supported");
		if (cur(p)->type == T_NAME && p->ti + 1 < p->ntok && p->tok[p->ti + 1].type == T_OP &&
		    p->tok[p->ti + 1].len == 1 && p->tok[p->ti + 1].s[0] == '=') {
			kw = cur(p)->s;
			kwlen = cur(p)->len;
			p->ti += 2;
		}
		if ((rc = parse_expr(p, &a, true)) || (rc = add_arg(p, e, a, kw, kwlen)))
			return rc;
		if (!is_op(p, ","))
			break;
		p->ti++;
	}
	return expect_op(p, ")");
}

static int parse_primary(struct parser *p, struct chat_expr **out)
{
	struct token *t = cur(p);
	struct chat_expr *e = NULL;
	int rc;

	if (t->type == T_NAME) {
		static const char *const LIT[] = { "true", "True", "false", "False", "none", "None" };
		size_t i;

		p->ti++;
		for (i = 0; i < 6; i++)
			if (t->len == strlen(LIT[i]) && !memcmp(t->s, LIT[i], t->len)) {
				if (!(e = mk(p, CE_LIT, t->line)))
					return p->err ? p->err->code : NX_ENOMEM;
				e->lit = i < 2 ? json_true() : i < 4 ? json_false() : json_null();
				*out = e;
				return 0;
			}
		if (!(e = mk(p, CE_NAME, t->line)) || !(e->name = strndup(t->s, t->len))) {
			expr_free(e);
			return nx_error_oom(p->err, p->path);
		}
		*out = e;
		return 0;
	}
	if (t->type == T_STRING || t->type == T_INT) {
		if (!(e = mk(p, CE_LIT, t->line)))
			return NX_ENOMEM;
		e->lit = json_incref(t->val);
		p->ti++;
		/* adjacent string literals join, as in Python */
		while (t->type == T_STRING && cur(p)->type == T_STRING) {
			json_t *j = json_pack("s++", json_string_value(e->lit), json_string_value(cur(p)->val));

			if (!j) {
				expr_free(e);
				return nx_error_oom(p->err, p->path);
			}
			json_decref(e->lit);
			e->lit = j;
			p->ti++;
		}
		*out = e;
		return 0;
	}
	if (is_op(p, "(")) {
		p->ti++;
		if ((rc = parse_expr(p, &e, true)))
			return rc;
		if (is_op(p, ",")) {
			expr_free(e);
			return fail(p, t->line, "tuples are not supported");
		}
		if ((rc = expect_op(p, ")"))) {
			expr_free(e);
			return rc;
		}
		*out = e;
		return 0;
	}
	if (is_op(p, "[") || is_op(p, "{")) {
		bool dict = is_op(p, "{");

		if (!(e = mk(p, dict ? CE_DICT : CE_LIST, t->line)))
			return NX_ENOMEM;
		p->ti++;
		while (!is_op(p, dict ? "}" : "]")) {
			struct chat_expr *a = NULL;

			if ((rc = parse_expr(p, &a, true)) || (rc = add_arg(p, e, a, NULL, 0)))
				goto fail_e;
			if (dict) {
				if ((rc = expect_op(p, ":")) || (rc = parse_expr(p, &a, true)) ||
				    (rc = add_arg(p, e, a, NULL, 0)))
					goto fail_e;
			}
			if (!is_op(p, ","))
				break;
			p->ti++;
		}
		if ((rc = expect_op(p, dict ? "}" : "]")))
			goto fail_e;
		*out = e;
		return 0;
	}
	return fail(p, t->line, "unexpected '%.*s'", t->type == T_END ? 10 : (int)t->len,
		    t->type == T_END ? "end of tag" : t->s);
fail_e:
	expr_free(e);
	return rc;
}

static int parse_postfix(struct parser *p, struct chat_expr **node)
{
	int rc;

	for (;;) {
		struct token *t = cur(p);
		struct chat_expr *e;

		if (is_op(p, ".")) {
			struct token *n = &p->tok[p->ti + 1];

			if (n->type != T_NAME && n->type != T_INT)
				return fail(p, t->line, "expected a name after '.'");
			p->ti += 2;
			if (n->type == T_INT) {
				if (!(e = mk(p, CE_INDEX, t->line)) || !(e->b = mk(p, CE_LIT, t->line)))
					goto oom;
				e->b->lit = json_incref(n->val);
			} else if (is_op(p, "(")) {
				if (!in_list(METHODS, n->s, n->len))
					return fail(p, t->line, "the method '%.*s' is not supported", (int)n->len, n->s);
				if (!(e = mk(p, CE_METHOD, t->line)) || !(e->name = strndup(n->s, n->len)))
					goto oom;
				e->a = *node;
				*node = e;
				if ((rc = parse_args(p, e)))
					return rc;
				continue;
			} else if (!(e = mk(p, CE_ATTR, t->line)) || !(e->name = strndup(n->s, n->len))) {
				goto oom;
			}
			e->a = *node;
			*node = e;
		} else if (is_op(p, "[")) {
			struct chat_expr *parts[3] = { NULL, NULL, NULL };
			int k = 0;

			p->ti++;
			for (;;) {
				if (!is_op(p, ":") && !is_op(p, "]") &&
				    (rc = parse_expr(p, &parts[k], true)))
					goto fail_parts;
				if (!is_op(p, ":") || k == 2)
					break;
				p->ti++;
				k++;
			}
			if ((rc = expect_op(p, "]")))
				goto fail_parts;
			if (!k && !parts[0]) {
				rc = fail(p, t->line, "an empty subscript");
				goto fail_parts;
			}
			if (!(e = mk(p, k ? CE_SLICE : CE_INDEX, t->line)))
				goto fail_parts_oom;
			e->a = *node;
			*node = e;
			if (!k) {
				e->b = parts[0];
				continue;
			}
			e->b = parts[0];
			e->c = parts[1];
			if ((rc = add_arg(p, e, parts[2], NULL, 0)))
				return rc;
			continue;
fail_parts_oom:
			rc = nx_error_oom(p->err, p->path);
fail_parts:
			expr_free(parts[0]);
			expr_free(parts[1]);
			expr_free(parts[2]);
			return rc;
		} else if (is_op(p, "(")) {
			struct chat_expr *f = *node;

			if (f->kind != CE_NAME || !in_list(CALLS, f->name, strlen(f->name)))
				return fail(p, t->line, "calling '%s' is not supported",
					    f->kind == CE_NAME ? f->name : "this expression");
			f->kind = CE_CALL;
			if ((rc = parse_args(p, f)))
				return rc;
		} else {
			return 0;
		}
		continue;
oom:
		expr_free(e);
		return nx_error_oom(p->err, p->path);
	}
}

static int parse_filters(struct parser *p, struct chat_expr **node)
{
	int rc;

	for (;;) {
		struct token *t = cur(p);
		struct chat_expr *e;
		bool test = is_name(p, "is");

		if (!is_op(p, "|") && !test)
			return 0;
		p->ti++;
		if (!(e = mk(p, test ? CE_TEST : CE_FILTER, t->line)))
			return NX_ENOMEM;
		e->a = *node;
		*node = e;
		if (test && is_name(p, "not")) {
			e->negate = true;
			p->ti++;
		}
		t = cur(p);
		if (t->type != T_NAME)
			return fail(p, t->line, "expected a %s name", test ? "test" : "filter");
		if (!in_list(test ? TESTS : FILTERS, t->s, t->len))
			return fail(p, t->line, "the %s '%.*s' is not supported", test ? "test" : "filter",
				    (int)t->len, t->s);
		if (!(e->name = strndup(t->s, t->len)))
			return nx_error_oom(p->err, p->path);
		p->ti++;
		if (is_op(p, "(")) {
			if ((rc = parse_args(p, e)))
				return rc;
		} else if (test && (cur(p)->type == T_STRING || cur(p)->type == T_INT || is_op(p, "[") ||
				    is_op(p, "{") || (cur(p)->type == T_NAME && !is_name(p, "else") &&
						      !is_name(p, "or") && !is_name(p, "and")))) {
			return fail(p, t->line, "a test argument without parentheses is not supported");
		}
	}
}

static int parse_unary(struct parser *p, struct chat_expr **out, bool with_filter)
{
	struct chat_expr *e = NULL;
	int rc, line = cur(p)->line;

	if (++p->depth > NX_CHAT_DEPTH_MAX)
		return fail(p, line, "expressions nest deeper than %d", NX_CHAT_DEPTH_MAX);
	if (is_op(p, "-") || is_op(p, "+")) {
		bool neg = is_op(p, "-");

		p->ti++;
		if ((rc = parse_unary(p, &e, false)))
			return rc;
		if (neg) {
			struct chat_expr *n = mk(p, CE_NEG, line);

			if (!n) {
				expr_free(e);
				return NX_ENOMEM;
			}
			n->a = e;
			e = n;
		}
	} else if ((rc = parse_primary(p, &e))) {
		return rc;
	}
	rc = parse_postfix(p, &e);
	if (!rc && with_filter)
		rc = parse_filters(p, &e);
	p->depth--;
	if (rc) {
		expr_free(e);
		return rc;
	}
	*out = e;
	return 0;
}

struct level {
	const char *ops[4];
	int codes[4];
};

static const struct level LEVELS[] = {
	{ { "+", "-" }, { CB_ADD, CB_SUB } },
	{ { "~" }, { CB_CONCAT } },
	{ { "*", "//", "%" }, { CB_MUL, CB_FLOORDIV, CB_MOD } },
};

static int parse_binary(struct parser *p, struct chat_expr **out, int lv)
{
	struct chat_expr *l = NULL;
	int rc;

	rc = lv == 3 ? parse_unary(p, &l, true) : parse_binary(p, &l, lv + 1);
	if (rc)
		return rc;
	for (;;) {
		const struct level *L = lv < 3 ? &LEVELS[lv] : NULL;
		int k, op = -1, line = cur(p)->line;
		struct chat_expr *e;

		if (is_op(p, "/") || is_op(p, "**")) {
			expr_free(l);
			return fail(p, line, "the operator '%.*s' is not supported", (int)cur(p)->len, cur(p)->s);
		}
		for (k = 0; L && k < 4 && L->ops[k]; k++)
			if (is_op(p, L->ops[k]))
				op = L->codes[k];
		if (op < 0)
			break;
		p->ti++;
		if (!(e = mk(p, CE_BIN, line))) {
			expr_free(l);
			return NX_ENOMEM;
		}
		e->op = op;
		e->a = l;
		l = e;
		if ((rc = lv == 2 ? parse_unary(p, &e->b, true) : parse_binary(p, &e->b, lv + 1))) {
			expr_free(l);
			return rc;
		}
	}
	*out = l;
	return 0;
}

static int parse_compare(struct parser *p, struct chat_expr **out)
{
	static const char *const OPS[] = { "==", "!=", "<", "<=", ">", ">=" };
	static const int CODES[] = { CB_EQ, CB_NE, CB_LT, CB_LE, CB_GT, CB_GE };
	struct chat_expr *l = NULL, *e;
	int rc, k, op = -1, line;

	if ((rc = parse_binary(p, &l, 0)))
		return rc;
	line = cur(p)->line;
	for (k = 0; k < 6; k++)
		if (is_op(p, OPS[k]))
			op = CODES[k];
	if (op < 0 && is_name(p, "in"))
		op = CB_IN;
	else if (op < 0 && is_name(p, "not") && is_name_at(p, 1, "in"))
		op = CB_NOTIN;
	if (op < 0) {
		*out = l;
		return 0;
	}
	p->ti += op == CB_NOTIN ? 2 : 1;
	if (!(e = mk(p, CE_BIN, line))) {
		expr_free(l);
		return NX_ENOMEM;
	}
	e->op = op;
	e->a = l;
	if ((rc = parse_binary(p, &e->b, 0))) {
		expr_free(e);
		return rc;
	}
	for (k = 0; k < 6; k++)
		if (is_op(p, OPS[k]) || is_name(p, "in") || (is_name(p, "not") && is_name_at(p, 1, "in"))) {
			expr_free(e);
			return fail(p, line, "chained comparisons are not supported");
		}
	*out = e;
	return 0;
}

static int parse_not(struct parser *p, struct chat_expr **out)
{
	struct chat_expr *e;
	int rc, line = cur(p)->line;

	if (!is_name(p, "not"))
		return parse_compare(p, out);
	p->ti++;
	if (++p->depth > NX_CHAT_DEPTH_MAX)
		return fail(p, line, "expressions nest deeper than %d", NX_CHAT_DEPTH_MAX);
	if (!(e = mk(p, CE_NOT, line)))
		return NX_ENOMEM;
	if ((rc = parse_not(p, &e->a))) {
		expr_free(e);
		return rc;
	}
	p->depth--;
	*out = e;
	return 0;
}

static int parse_logic(struct parser *p, struct chat_expr **out, bool is_or)
{
	struct chat_expr *l = NULL, *e;
	int rc;

	if ((rc = is_or ? parse_logic(p, &l, false) : parse_not(p, &l)))
		return rc;
	while (is_name(p, is_or ? "or" : "and")) {
		int line = cur(p)->line;

		p->ti++;
		if (!(e = mk(p, is_or ? CE_OR : CE_AND, line))) {
			expr_free(l);
			return NX_ENOMEM;
		}
		e->a = l;
		l = e;
		if ((rc = is_or ? parse_logic(p, &e->b, false) : parse_not(p, &e->b))) {
			expr_free(l);
			return rc;
		}
	}
	*out = l;
	return 0;
}

/* with_cond false: no `x if c else y` (a for loop's iterable, whose `if` filters) */
static int parse_expr(struct parser *p, struct chat_expr **out, bool with_cond)
{
	struct chat_expr *l = NULL, *e;
	int rc;

	if (++p->depth > NX_CHAT_DEPTH_MAX)
		return fail(p, cur(p)->line, "expressions nest deeper than %d", NX_CHAT_DEPTH_MAX);
	if ((rc = parse_logic(p, &l, true)))
		return rc;
	while (with_cond && is_name(p, "if")) {
		int line = cur(p)->line;

		p->ti++;
		if (!(e = mk(p, CE_COND, line))) {
			expr_free(l);
			return NX_ENOMEM;
		}
		e->a = l;
		l = e;
		if ((rc = parse_logic(p, &e->b, true)))
			goto fail_l;
		if (is_name(p, "else")) {
			p->ti++;
			if ((rc = parse_expr(p, &e->c, true)))
				goto fail_l;
		}
	}
	p->depth--;
	*out = l;
	return 0;
fail_l:
	expr_free(l);
	return rc;
}

/* ---- statements ---- */

static void node_free(struct chat_node *n)
{
	size_t i;

	if (!n)
		return;
	free(n->text);
	expr_free(n->e);
	expr_free(n->filter);
	for (i = 0; i < 4; i++)
		free(n->vars[i]);
	nx_chat__body_free(&n->body);
	nx_chat__body_free(&n->orelse);
	free(n);
}

void nx_chat__body_free(struct chat_body *b)
{
	size_t i;

	for (i = 0; i < b->n; i++)
		node_free(b->v[i]);
	free(b->v);
	b->v = NULL;
	b->n = b->cap = 0;
}

static struct chat_node *add_node(struct parser *p, struct chat_body *b, int kind, int line)
{
	struct chat_node *n;

	if (NX_ARRAY_PUSH(b->v, b->cap, b->n)) {
		nx_error_oom(p->err, p->path);
		return NULL;
	}
	if (!(n = calloc(1, sizeof(*n)))) {
		nx_error_oom(p->err, p->path);
		return NULL;
	}
	n->kind = kind;
	n->line = line;
	b->v[b->n++] = n;
	return n;
}

static int end_of_tag(struct parser *p)
{
	struct token *t = cur(p);

	if (t->type != T_END)
		return fail(p, t->line, "unexpected '%.*s' before the end of the tag", (int)t->len, t->s);
	return 0;
}

static int parse_body(struct parser *p, struct chat_body *b, const char *const *ends, int opened,
		      const char *what, int *which);

static int parse_if(struct parser *p, struct chat_node *n)
{
	int rc, which = -1;
	static const char *const ENDS[] = { "elif", "else", "endif", NULL };

	if ((rc = parse_expr(p, &n->e, true)) || (rc = end_of_tag(p)) ||
	    (rc = parse_body(p, &n->body, ENDS, n->line, "if", &which)))
		return rc;
	if (which == 0) {
		struct chat_node *elif = add_node(p, &n->orelse, CN_IF, cur(p)->line);

		if (!elif)
			return NX_ENOMEM;
		return parse_if(p, elif);
	}
	if (which == 1) {
		static const char *const END[] = { "endif", NULL };

		if ((rc = end_of_tag(p)) || (rc = parse_body(p, &n->orelse, END, n->line, "if", &which)))
			return rc;
	}
	return end_of_tag(p);
}

static int parse_for(struct parser *p, struct chat_node *n)
{
	static const char *const ENDS[] = { "else", "endfor", NULL };
	int rc, which = -1;

	for (;;) {
		struct token *t = cur(p);

		if (t->type != T_NAME)
			return fail(p, t->line, "expected a loop variable name");
		if (n->nvars == 4)
			return fail(p, t->line, "more than 4 loop variables");
		if (!(n->vars[n->nvars++] = strndup(t->s, t->len)))
			return nx_error_oom(p->err, p->path);
		p->ti++;
		if (!is_op(p, ","))
			break;
		p->ti++;
	}
	if (!is_name(p, "in"))
		return fail(p, cur(p)->line, "expected 'in' in the for tag");
	p->ti++;
	if ((rc = parse_expr(p, &n->e, false)))
		return rc;
	if (is_name(p, "if")) {
		p->ti++;
		if ((rc = parse_expr(p, &n->filter, true)))
			return rc;
	}
	if (is_name(p, "recursive"))
		return fail(p, n->line, "recursive loops are not supported");
	if ((rc = end_of_tag(p)))
		return rc;
	p->loops++;
	rc = parse_body(p, &n->body, ENDS, n->line, "for", &which);
	p->loops--;
	if (rc)
		return rc;
	if (which == 0) {
		static const char *const END[] = { "endfor", NULL };

		if ((rc = end_of_tag(p)) || (rc = parse_body(p, &n->orelse, END, n->line, "for", &which)))
			return rc;
	}
	return end_of_tag(p);
}

static int parse_set(struct parser *p, struct chat_node *n)
{
	struct token *t = cur(p);
	int rc;

	if (t->type != T_NAME)
		return fail(p, t->line, "expected a variable name after set");
	if (!(n->vars[0] = strndup(t->s, t->len)))
		return nx_error_oom(p->err, p->path);
	p->ti++;
	if (is_op(p, ".")) {
		p->ti++;
		t = cur(p);
		if (t->type != T_NAME)
			return fail(p, t->line, "expected an attribute name after '.'");
		if (!(n->vars[1] = strndup(t->s, t->len)))
			return nx_error_oom(p->err, p->path);
		p->ti++;
	}
	if (is_op(p, ","))
		return fail(p, t->line, "set with several targets is not supported");
	if (cur(p)->type == T_END)
		return fail(p, t->line, "block set ({%% set x %%}...{%% endset %%}) is not supported");
	if ((rc = expect_op(p, "=")) || (rc = parse_expr(p, &n->e, true)))
		return rc;
	return end_of_tag(p);
}

static int parse_body(struct parser *p, struct chat_body *b, const char *const *ends, int opened,
		      const char *what, int *which)
{
	static const char *const STMT_ENDS[] = { "elif", "else", "endif", "endfor", "endset", NULL };
	int rc;

	if (++p->depth > NX_CHAT_DEPTH_MAX)
		return fail(p, opened, "blocks nest deeper than %d", NX_CHAT_DEPTH_MAX);
	while (p->ci < p->nch) {
		const struct chunk *c = &p->ch[p->ci++];
		struct chat_node *n;
		struct token *t;
		int k;

		if (c->kind == K_COMMENT || (c->kind == K_TEXT && !c->len))
			continue;
		if (c->kind == K_TEXT) {
			if (!(n = add_node(p, b, CN_TEXT, c->line)) || !(n->text = strndup(p->src + c->off, c->len)))
				return nx_error_oom(p->err, p->path);
			n->len = c->len;
			continue;
		}
		if ((rc = tokenize(p, c)))
			return rc;
		if (c->kind == K_VAR) {
			if (!(n = add_node(p, b, CN_OUT, c->line)))
				return NX_ENOMEM;
			if ((rc = parse_expr(p, &n->e, true)) || (rc = end_of_tag(p)))
				return rc;
			continue;
		}
		t = cur(p);
		if (t->type != T_NAME)
			return fail(p, c->line, "a block tag must start with a name");
		for (k = 0; ends && ends[k]; k++)
			if (is_name(p, ends[k])) {
				p->ti++;
				*which = k;
				p->depth--;
				return 0;
			}
		if (in_list(STMT_ENDS, t->s, t->len))
			return fail(p, c->line, "unexpected '%.*s'", (int)t->len, t->s);
		p->ti++;
		if (t->len == 2 && !memcmp(t->s, "if", 2)) {
			rc = (n = add_node(p, b, CN_IF, c->line)) ? parse_if(p, n) : NX_ENOMEM;
		} else if (t->len == 3 && !memcmp(t->s, "for", 3)) {
			rc = (n = add_node(p, b, CN_FOR, c->line)) ? parse_for(p, n) : NX_ENOMEM;
		} else if (t->len == 3 && !memcmp(t->s, "set", 3)) {
			rc = (n = add_node(p, b, CN_SET, c->line)) ? parse_set(p, n) : NX_ENOMEM;
		} else if ((t->len == 5 && !memcmp(t->s, "break", 5)) ||
			   (t->len == 8 && !memcmp(t->s, "continue", 8))) {
			if (!p->loops)
				return fail(p, c->line, "'%.*s' outside a loop", (int)t->len, t->s);
			rc = (n = add_node(p, b, t->len == 5 ? CN_BREAK : CN_CONTINUE, c->line)) ?
				     end_of_tag(p) : NX_ENOMEM;
		} else {
			return fail(p, c->line, "the '%.*s' tag is not supported", (int)t->len, t->s);
		}
		if (rc)
			return rc;
	}
	if (ends)
		return fail(p, opened, "the '%s' opened here is never closed (end%s missing)", what, what);
	p->depth--;
	return 0;
}

int nx_chat_template_compile(nx_chat_template **out, const char *src, size_t len,
			     const char *path, nx_error *err)
{
	struct parser p = { .path = path ? path : "chat_template", .err = err };
	nx_chat_template *t = NULL;
	char *norm = NULL;
	size_t i, k = 0;
	int rc;

	if (len > NX_CHAT_TEMPLATE_MAX)
		return nx_error_set(err, NX_ELIMIT, path, 0, -1,
				    "%s: the chat template is %zu bytes, more than the %u allowed",
				    p.path, len, NX_CHAT_TEMPLATE_MAX);
	if (!(norm = malloc(len + 1)) || !(t = calloc(1, sizeof(*t))) ||
	    !(t->path = strdup(p.path)) || !(t->globals = json_object())) {
		rc = nx_error_oom(err, path);
		goto out_free;
	}
	/* Jinja's lexer turns \r\n and \r into \n and drops one final newline */
	for (i = 0; i < len; i++) {
		if (src[i] == '\0') {
			long line = 1;

			for (k = 0; k < i; k++)
				line += src[k] == '\n';
			rc = nx_error_set(err, NX_ECONFIG, path, line, -1,
					  "%s: chat template line %ld: a NUL byte", p.path, line);
			goto out_free;
		}
		if (src[i] == '\r') {
			norm[k++] = '\n';
			if (i + 1 < len && src[i + 1] == '\n')
				i++;
		} else {
			norm[k++] = src[i];
		}
	}
	if (k && norm[k - 1] == '\n')
		k--;
	norm[k] = '\0';
	p.src = norm;
	p.n = k;
	if ((rc = cut_chunks(&p)))
		goto out_free;
	for (i = 0; i < p.nch; i++)
		if (p.ch[i].kind == K_TEXT)
			trim_text(&p, i);
	if ((rc = parse_body(&p, &t->root, NULL, 1, NULL, NULL)))
		goto out_free;
	*out = t;
	t = NULL;
out_free:
	clear_tokens(&p);
	free(p.tok);
	free(p.ch);
	free(norm);
	nx_chat_template_free(t);
	return rc;
}

void nx_chat_template_free(nx_chat_template *t)
{
	if (!t)
		return;
	nx_chat__body_free(&t->root);
	json_decref(t->globals);
	free(t->path);
	free(t);
}

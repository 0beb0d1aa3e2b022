/*
 * pyfilter.c - remove forbidden imports (nexus/pyfilter.h).
 *
 * Three steps: tokenize the whole file; walk its simple statements and turn
 * every import of a forbidden module into an edit (byte range + text);
 * then look for uses of the names those imports bound.  Edits are emitted
 * in source order while copying, so the output is built in one pass.
 */
#include "nexus/pyfilter.h"
#include "nexus/pylex.h"
#include "util/array_int.h"
#include "util/strset_int.h"

#include <stdlib.h>
#include <string.h>

struct sbuf {
	char *p;
	size_t len, cap;
};

struct item {
	size_t first, last;   /* tokens of the dotted name (first..last) */
	size_t bind;          /* token of the name it binds */
	int gone;
};

struct bound {
	size_t tok;           /* token holding the bound name */
	size_t removed;       /* index into removed[] */
};

struct filt {
	const char *src;
	nx_py_token *tok;
	size_t ntok;
	const char *const *forbidden;
	size_t nforbidden;
	const char *path;
	nx_error *err;
	unsigned char *in_import;       /* per token */
	struct sbuf out;
	size_t copied;
	struct item *items;
	size_t nitems, capitems;
	struct nx_pyfilter_removed *removed;
	size_t nremoved, capremoved;
	struct bound *bound;
	size_t nbound, capbound;
};

static int grow(void *pp, size_t *cap, size_t need, size_t size)
{
	return nx_array_grow(pp, cap, need, size, SIZE_MAX) ? NX_ENOMEM : 0;
}

static int sb_add(struct sbuf *b, const char *s, size_t n)
{
	if (grow(&b->p, &b->cap, b->len + n + 1, 1))
		return NX_ENOMEM;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

static int sb_str(struct sbuf *b, const char *s)
{
	return sb_add(b, s, strlen(s));
}

static int is_name(const struct filt *f, size_t i, const char *s)
{
	const nx_py_token *t = &f->tok[i];

	return t->kind == NX_PY_NAME && t->len == strlen(s) &&
	       memcmp(f->src + t->start, s, t->len) == 0;
}

static int is_op(const struct filt *f, size_t i, const char *s)
{
	const nx_py_token *t = &f->tok[i];

	return t->kind == NX_PY_OP && t->len == strlen(s) &&
	       memcmp(f->src + t->start, s, t->len) == 0;
}

/* Next token at or after i that is not a comment or an NL. */
static size_t sig(const struct filt *f, size_t i)
{
	while (i < f->ntok && (f->tok[i].kind == NX_PY_NL || f->tok[i].kind == NX_PY_COMMENT))
		i++;
	return i;
}

/* End of the simple statement starting at s: its ';', NEWLINE or ENDMARKER. */
static size_t stmt_end(const struct filt *f, size_t s)
{
	while (s < f->ntok && f->tok[s].kind != NX_PY_NEWLINE &&
	       f->tok[s].kind != NX_PY_ENDMARKER &&
	       !(f->tok[s].depth == 0 && is_op(f, s, ";")))
		s++;
	return s;
}

/* Index just after the ':' ending the compound header starting at s, or 0. */
static size_t header_end(const struct filt *f, size_t s, size_t e)
{
	long lambdas = 0;

	for (; s < e; s++) {
		if (f->tok[s].depth != 0)
			continue;
		if (is_name(f, s, "lambda"))
			lambdas++;
		else if (is_op(f, s, ":") && lambdas-- == 0)
			return s + 1;
	}
	return 0;
}

static int is_compound(const struct filt *f, size_t s)
{
	static const char *const kw[] = { "if", "elif", "else", "while", "for", "try",
		"except", "finally", "with", "def", "class", "async", NULL };
	int i;

	for (i = 0; kw[i]; i++)
		if (is_name(f, s, kw[i]))
			return 1;
	return 0;
}

static int forbidden_module(const struct filt *f, const char *m)
{
	size_t i, n;

	for (i = 0; i < f->nforbidden; i++) {
		n = strlen(f->forbidden[i]);
		if (n && strncmp(m, f->forbidden[i], n) == 0 && (m[n] == '\0' || m[n] == '.'))
			return 1;
	}
	return 0;
}

/* Append the dotted name of tokens first..last to b. */
/* " as NAME" when the kept item binds a name of its own. */
static int alias(const struct filt *f, struct sbuf *b, const struct item *it)
{
	int rc;

	if (it->bind == it->first)
		return 0;
	if ((rc = sb_str(b, " as ")))
		return rc;
	return sb_add(b, f->src + f->tok[it->bind].start, f->tok[it->bind].len);
}

static int dotted(const struct filt *f, struct sbuf *b, size_t first, size_t last)
{
	size_t i;

	for (i = first; i <= last; i++)
		if (f->tok[i].kind == NX_PY_NAME || is_op(f, i, "."))
			if (sb_add(b, f->src + f->tok[i].start, f->tok[i].len))
				return NX_ENOMEM;
	return 0;
}

static int syntax(struct filt *f, size_t i)
{
	return nx_error_set(f->err, NX_EFORMAT, f->path, f->tok[i].line, (long long)f->tok[i].start,
			    "%s:%ld: cannot parse this import statement; fix its syntax",
			    f->path ? f->path : "<source>", f->tok[i].line);
}

/* Parse `NAME(.NAME)* [as NAME]` (dotted) or `NAME [as NAME]` at *pi. */
static int parse_item(struct filt *f, size_t *pi, size_t e, int allow_dots)
{
	size_t i = *pi;
	struct item it = { 0 };

	if (i >= e || f->tok[i].kind != NX_PY_NAME || is_name(f, i, "as"))
		return syntax(f, i);
	it.first = it.last = it.bind = i;
	i = sig(f, i + 1);
	while (allow_dots && i < e && is_op(f, i, ".")) {
		i = sig(f, i + 1);
		if (i >= e || f->tok[i].kind != NX_PY_NAME)
			return syntax(f, i);
		it.last = i;
		i = sig(f, i + 1);
	}
	if (i < e && is_name(f, i, "as")) {
		i = sig(f, i + 1);
		if (i >= e || f->tok[i].kind != NX_PY_NAME)
			return syntax(f, i);
		it.bind = i;
		i = sig(f, i + 1);
	}
	if (grow(&f->items, &f->capitems, f->nitems + 1, sizeof(*f->items)))
		return NX_ENOMEM;
	f->items[f->nitems++] = it;
	*pi = i;
	return 0;
}

static int add_removed(struct filt *f, long line, const char *module, const char *kind)
{
	struct nx_pyfilter_removed *r;

	if (grow(&f->removed, &f->capremoved, f->nremoved + 1, sizeof(*f->removed)))
		return NX_ENOMEM;
	r = &f->removed[f->nremoved];
	r->line = line;
	r->module = strdup(module);
	r->statement_kind = strdup(kind);
	if (!r->module || !r->statement_kind) {
		free(r->module);
		free(r->statement_kind);
		return NX_ENOMEM;
	}
	f->nremoved++;
	return 0;
}

static int add_bound(struct filt *f, size_t tok)
{
	if (grow(&f->bound, &f->capbound, f->nbound + 1, sizeof(*f->bound)))
		return NX_ENOMEM;
	f->bound[f->nbound].tok = tok;
	f->bound[f->nbound].removed = f->nremoved - 1;
	f->nbound++;
	return 0;
}

/*
 * Replace the statement tokens s..last with `text` (or, if NULL, `pass`),
 * padded with newlines so that line numbers after it do not move.  A
 * removed statement alone on its lines at the top level (column 0, where
 * no block can become empty) leaves nothing behind: not `pass`, nor its
 * comment (`# noqa: F401` spoke of the import), only empty lines.
 */
static int emit_edit(struct filt *f, size_t s, size_t last, const char *text)
{
	size_t a = f->tok[s].start, b = f->tok[last].start + f->tok[last].len, p;
	size_t after = sig(f, last + 1);
	int plain = after >= f->ntok || f->tok[after].kind == NX_PY_NEWLINE ||
		    f->tok[after].kind == NX_PY_ENDMARKER;
	int top = plain && (a == 0 || f->src[a - 1] == '\n' || f->src[a - 1] == '\r');

	if (sb_add(&f->out, f->src + f->copied, a - f->copied) ||
	    sb_str(&f->out, text ? text : top ? "" : "pass"))
		return NX_ENOMEM;
	/* a newline ends the statement unless more code follows on its line */
	for (p = a; p < b; p++) {
		if (f->src[p] == '\r' && p + 1 < b && f->src[p + 1] == '\n')
			continue;
		if ((f->src[p] == '\n' || f->src[p] == '\r') &&
		    sb_str(&f->out, plain ? "\n" : " \\\n"))
			return NX_ENOMEM;
	}
	f->copied = b;
	if (!text && top && last + 1 < f->ntok && f->tok[last + 1].kind == NX_PY_COMMENT)
		f->copied = f->tok[last + 1].start + f->tok[last + 1].len;
	return 0;
}

/* `import` statement s..e (e excluded). */
static int do_import(struct filt *f, size_t s, size_t e, size_t last)
{
	struct sbuf m = { 0 }, text = { 0 };
	size_t i = sig(f, s + 1), k, kept = 0;
	int rc = 0;

	f->nitems = 0;
	for (;;) {
		if ((rc = parse_item(f, &i, e, 1)))
			goto out;
		if (i >= e)
			break;
		if (!is_op(f, i, ",")) {
			rc = syntax(f, i);
			goto out;
		}
		i = sig(f, i + 1);
	}
	for (k = 0; k < f->nitems; k++) {
		struct item *it = &f->items[k];

		m.len = 0;
		if ((rc = sb_str(&m, "")) || (rc = dotted(f, &m, it->first, it->last)))
			goto out;
		if (!forbidden_module(f, m.p)) {
			kept++;
			continue;
		}
		it->gone = 1;
		if ((rc = add_removed(f, f->tok[s].line, m.p, "import")) ||
		    (rc = add_bound(f, it->bind)))
			goto out;
	}
	if (kept == f->nitems)
		goto out;
	if (kept && (rc = sb_str(&text, "import ")))
		goto out;
	for (k = 0; kept && k < f->nitems; k++) {
		struct item *it = &f->items[k];

		if (it->gone)
			continue;
		if ((text.len > 7 && (rc = sb_str(&text, ", "))) ||
		    (rc = dotted(f, &text, it->first, it->last)))
			goto out;
		if ((rc = alias(f, &text, it)))
			goto out;
	}
	rc = emit_edit(f, s, last, kept ? text.p : NULL);
out:
	free(m.p);
	free(text.p);
	return rc;
}

/* `from` statement s..e (e excluded). */
static int do_from(struct filt *f, size_t s, size_t e, size_t last)
{
	struct sbuf mod = { 0 }, m = { 0 }, text = { 0 };
	size_t i = sig(f, s + 1), k, kept = 0, path_first = 0, path_last = 0;
	int rc = 0, has_path = 0, paren = 0, star = 0, whole;

	f->nitems = 0;
	if ((rc = sb_str(&mod, "")))
		goto out;
	while (i < e && (is_op(f, i, ".") || is_op(f, i, "..."))) {
		if ((rc = sb_add(&mod, f->src + f->tok[i].start, f->tok[i].len)))
			goto out;
		i = sig(f, i + 1);
	}
	if (i < e && f->tok[i].kind == NX_PY_NAME && !is_name(f, i, "import")) {
		has_path = 1;
		path_first = path_last = i;
		for (i = sig(f, i + 1); i < e && is_op(f, i, "."); i = sig(f, i + 1)) {
			i = sig(f, i + 1);
			if (i >= e || f->tok[i].kind != NX_PY_NAME) {
				rc = syntax(f, i < e ? i : s);
				goto out;
			}
			path_last = i;
		}
	}
	if ((!has_path && mod.len == 0) || i >= e || !is_name(f, i, "import")) {
		rc = syntax(f, i < e ? i : s);
		goto out;
	}
	i = sig(f, i + 1);
	if (i < e && is_op(f, i, "*")) {
		star = 1;
		i = sig(f, i + 1);
	} else {
		if (i < e && is_op(f, i, "(")) {
			paren = 1;
			i = sig(f, i + 1);
		}
		for (;;) {
			if ((rc = parse_item(f, &i, e, 0)))
				goto out;
			if (i < e && is_op(f, i, ",")) {
				i = sig(f, i + 1);
				if (paren && i < e && is_op(f, i, ")"))
					break;
				continue;
			}
			break;
		}
		if (paren) {
			if (i >= e || !is_op(f, i, ")")) {
				rc = syntax(f, i < e ? i : s);
				goto out;
			}
			i = sig(f, i + 1);
		}
	}
	if (i < e) {
		rc = syntax(f, i);
		goto out;
	}
	if (has_path && (rc = dotted(f, &mod, path_first, path_last)))
		goto out;
	whole = has_path && forbidden_module(f, mod.p + strspn(mod.p, "."));
	if (whole) {
		if ((rc = add_removed(f, f->tok[s].line, mod.p, "from")))
			goto out;
		for (k = 0; !star && k < f->nitems; k++)
			if ((rc = add_bound(f, f->items[k].bind)))
				goto out;
		rc = emit_edit(f, s, last, NULL);
		goto out;
	}
	if (has_path || star)
		goto out;
	/* `from . import X`: each name is a module of the package */
	for (k = 0; k < f->nitems; k++) {
		struct item *it = &f->items[k];

		m.len = 0;
		if ((rc = sb_str(&m, "")) ||
		    (rc = sb_add(&m, f->src + f->tok[it->first].start, f->tok[it->first].len)))
			goto out;
		if (!forbidden_module(f, m.p)) {
			kept++;
			continue;
		}
		it->gone = 1;
		if ((rc = sb_str(&text, "")) || (rc = sb_str(&text, mod.p)) ||
		    (rc = sb_str(&text, m.p)) ||
		    (rc = add_removed(f, f->tok[s].line, text.p, "from")) ||
		    (rc = add_bound(f, it->bind)))
			goto out;
		text.len = 0;
	}
	if (kept == f->nitems)
		goto out;
	text.len = 0;
	if (kept && ((rc = sb_str(&text, "from ")) || (rc = sb_str(&text, mod.p)) ||
		     (rc = sb_str(&text, " import "))))
		goto out;
	for (k = 0; kept && k < f->nitems; k++) {
		struct item *it = &f->items[k];

		if (it->gone)
			continue;
		if (text.p[text.len - 1] != ' ' && (rc = sb_str(&text, ", ")))
			goto out;
		if ((rc = sb_add(&text, f->src + f->tok[it->first].start, f->tok[it->first].len)))
			goto out;
		if ((rc = alias(f, &text, it)))
			goto out;
	}
	rc = emit_edit(f, s, last, kept ? text.p : NULL);
out:
	free(mod.p);
	free(m.p);
	free(text.p);
	return rc;
}

static int walk(struct filt *f)
{
	size_t i = 0, e, h, last, k;
	int rc;

	while (i < f->ntok) {
		int kind = f->tok[i].kind;

		if (kind == NX_PY_ENDMARKER)
			break;
		if (kind == NX_PY_NL || kind == NX_PY_COMMENT || kind == NX_PY_NEWLINE ||
		    is_op(f, i, ";")) {
			i++;
			continue;
		}
		e = stmt_end(f, i);
		if (is_compound(f, i) && (h = header_end(f, i, e))) {
			i = h;
			continue;
		}
		if (is_name(f, i, "import") || is_name(f, i, "from")) {
			for (last = e - 1; f->tok[last].kind == NX_PY_NL ||
			     f->tok[last].kind == NX_PY_COMMENT; last--)
				;
			for (k = i; k < e; k++)
				f->in_import[k] = 1;
			rc = is_name(f, i, "import") ? do_import(f, i, e, last)
						     : do_from(f, i, e, last);
			if (rc)
				return rc;
		}
		i = e;
	}
	return 0;
}

/* A NAME token that reads the value of a name (not `.x`, not `f(x=1)`). */
static int is_use(const struct filt *f, size_t i)
{
	size_t n;

	if (f->tok[i].kind != NX_PY_NAME || f->in_import[i])
		return 0;
	if (i > 0 && is_op(f, i - 1, "."))
		return 0;
	n = sig(f, i + 1);
	if (f->tok[i].depth > 0 && n < f->ntok && is_op(f, n, "="))
		return 0;
	return 1;
}

/* A name bound by a removed import and still used is an error.  The bound
 * names go into a keyed set first: comparing every use with every bound
 * name was quadratic (`from teacher_model import` 20,000 names: seconds). */
static int check_uses(struct filt *f)
{
	struct strset names = { 0 };
	char *name = NULL;
	size_t i, b;
	int rc = 0;

	for (b = 0; b < f->nbound && !rc; b++) {
		const nx_py_token *t = &f->tok[f->bound[b].tok];

		if (!(name = strndup(f->src + t->start, t->len)) ||
		    nx_strset_add(&names, name, NULL))
			rc = NX_ENOMEM;
		free(name);
	}
	for (i = 0; i < f->ntok && !rc; i++) {
		if (!is_use(f, i) || !nx_strset_find(&names, f->src + f->tok[i].start, f->tok[i].len))
			continue;
		for (b = 0; b < f->nbound; b++) {
			const nx_py_token *t = &f->tok[f->bound[b].tok];
			const struct nx_pyfilter_removed *r = &f->removed[f->bound[b].removed];

			if (t->len != f->tok[i].len ||
			    memcmp(f->src + t->start, f->src + f->tok[i].start, t->len) != 0)
				continue;
			rc = nx_error_set(f->err, NX_ECHECK, f->path, f->tok[i].line,
					  (long long)f->tok[i].start,
					  "%s:%ld: name '%.*s' is still used, but its import of "
					  "forbidden module '%s' (line %ld) is removed; remove the "
					  "use from the serving code",
					  f->path ? f->path : "<source>", f->tok[i].line,
					  (int)t->len, f->src + t->start, r->module, r->line);
			break;
		}
	}
	nx_strset_release(&names);
	return rc;
}

static int tokenize(struct filt *f, const char *src, size_t len)
{
	nx_pylex lx;
	size_t cap = 0;
	int k;

	nx_pylex_init(&lx, src, len);
	do {
		if (grow(&f->tok, &cap, f->ntok + 1, sizeof(*f->tok)))
			return NX_ENOMEM;
		k = nx_pylex_next(&lx, &f->tok[f->ntok]);
		if (k == NX_PY_ERROR)
			return nx_error_set(f->err, NX_EFORMAT, f->path, f->tok[f->ntok].line,
					    (long long)f->tok[f->ntok].start,
					    "%s:%ld: %s; fix the python source",
					    f->path ? f->path : "<source>",
					    f->tok[f->ntok].line, f->tok[f->ntok].msg);
		f->ntok++;
	} while (k != NX_PY_ENDMARKER);
	return 0;
}

int nx_pyfilter_run(struct nx_pyfilter_result *out, const char *src, size_t len,
		    const char *const *forbidden, size_t nforbidden,
		    const char *path, nx_error *err)
{
	struct filt f = { 0 };
	size_t i;
	int rc;

	if (len > NX_PYFILTER_SRC_MAX)
		return nx_error_set(err, NX_ELIMIT, path, 0, -1,
				    "%s: source file larger than %u bytes; split it",
				    path ? path : "<source>", NX_PYFILTER_SRC_MAX);
	f.src = src;
	f.forbidden = forbidden;
	f.nforbidden = nforbidden;
	f.path = path;
	f.err = err;
	if ((rc = tokenize(&f, src, len)))
		goto out;
	rc = NX_ENOMEM;
	if (!(f.in_import = calloc(f.ntok, 1)))
		goto out;
	if ((rc = walk(&f)) || (rc = check_uses(&f)))
		goto out;
	if ((rc = sb_add(&f.out, src + f.copied, len - f.copied)))
		goto out;
	out->text = f.out.p;
	out->len = f.out.len;
	out->removed = f.removed;
	out->nremoved = f.nremoved;
	f.out.p = NULL;
	f.removed = NULL;
	f.nremoved = 0;
out:
	if (rc == NX_ENOMEM)
		nx_error_set(err, rc, path, 0, -1, "%s: out of memory while filtering imports",
			     path ? path : "<source>");
	for (i = 0; i < f.nremoved; i++) {
		free(f.removed[i].module);
		free(f.removed[i].statement_kind);
	}
	free(f.removed);
	free(f.out.p);
	free(f.tok);
	free(f.in_import);
	free(f.items);
	free(f.bound);
	return rc;
}

void nx_pyfilter_result_release(struct nx_pyfilter_result *r)
{
	size_t i;

	if (!r)
		return;
	for (i = 0; i < r->nremoved; i++) {
		free(r->removed[i].module);
		free(r->removed[i].statement_kind);
	}
	free(r->removed);
	free(r->text);
	memset(r, 0, sizeof(*r));
}

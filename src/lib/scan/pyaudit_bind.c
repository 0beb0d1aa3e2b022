/*
 * pyaudit_bind.c - the audit's statement rules that look past one name:
 * the names `self` and `cls` bound other than as a def's first parameter,
 * and positional sub-patterns of class patterns (red team 9 review, #22).
 *
 * The names pass trusts `self` and `cls` by name (their private
 * attributes); that trust holds only while nothing but a def's first
 * parameter binds them.  Even then a caller passes any object as a def's
 * first parameter (`View.opts(z)`), so the forms that re-make or rewrite
 * an object - __dict__, __init__, __class__(...), type() - are not
 * trusted on self or cls at all (pyaudit_names.c, red team 10).  A positional class pattern
 * `case Step(step):` reads the attribute __match_args__ names, which a
 * @dataclass or a string sets where no name token shows it.
 */
#include "pyaudit_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static bool trusted_name(const struct audit *a, size_t i)
{
	return name_is(a, i, "self") || name_is(a, i, "cls");
}

/* Is token i one of the NAMEs (or, with op, the operators) of list? */
static bool in_list(const struct audit *a, size_t i, const char *const *list, bool op)
{
	for (; *list; list++)
		if (op ? is_op(a, i, *list) : name_is(a, i, *list))
			return true;
	return false;
}

/* Keywords after which an open bracket is a display, not a call or a
 * subscript. */
static bool keyword(const struct audit *a, size_t i)
{
	static const char *const kw[] = { "and", "as", "assert", "await", "case", "del", "elif",
		"else", "for", "from", "if", "import", "in", "is", "lambda", "match", "not",
		"or", "return", "while", "with", "yield", NULL };

	return in_list(a, i, kw, false);
}

/* How far back or ahead one look goes: a bound that keeps the pass
 * linear on a crafted file (a target list or a line of thousands of
 * items); past it a name counts as bound. */
#define REACH 4096
#define FAR (SIZE_MAX - 1)

/* The unmatched open bracket around token i, from token lo; NONE if none,
 * FAR if it is more than REACH steps back. */
static size_t enclosing(const struct audit *a, size_t lo, size_t i)
{
	size_t steps = 0;

	while (i > lo) {
		if (++steps > REACH)
			return FAR;
		i--;
		if (is_op(a, i, ")") || is_op(a, i, "]") || is_op(a, i, "}")) {
			if (a->match[i] == NONE || a->match[i] < lo)
				return NONE;
			i = a->match[i];
		} else if (is_op(a, i, "(") || is_op(a, i, "[") || is_op(a, i, "{")) {
			return i;
		}
	}
	return NONE;
}

/* Is NAME i, inside a target list starting at token lo, a name the
 * statement binds?  Not an attribute (self.x), a subscript (self[0]), a
 * call, or anything inside a call's or a subscript's brackets. */
static bool target(const struct audit *a, size_t lo, size_t i)
{
	size_t o;

	if (is_op(a, i + 1, ".") || is_op(a, i + 1, "[") || is_op(a, i + 1, "(") ||
	    (i && is_op(a, i - 1, ".")))
		return false;
	for (o = enclosing(a, lo, i); o != NONE; o = enclosing(a, lo, o))
		if (o == FAR)
			return true;
		else if (o > lo && (is_op(a, o, "{") ||
			       (is_name(a, o - 1) && !keyword(a, o - 1)) || is_op(a, o - 1, ")") ||
			       is_op(a, o - 1, "]") || a->t[o - 1].t.kind == NX_PY_STRING))
			return false;
	return true;
}

static int refuse(struct audit *a, size_t i, const char *how)
{
	return nx_pyaudit__report(a, NX_F_PYTHON_REFLECTIVE, i, "'%.*s' bound %s refused: the "
				  "audit trusts self and cls by name (type(self), self.__dict__), "
				  "so only a def's first parameter may bind them", (int)a->t[i].nlen,
				  a->t[i].name, how);
}

static int refuse_far(struct audit *a, size_t i, const char *kw)
{
	return nx_pyaudit__report(a, NX_F_PYTHON_REFLECTIVE, i, "'%s' whose %s is not within %d "
				  "tokens on its line refused: the audit cannot see whether it "
				  "binds self or cls", kw, !strcmp(kw, "for") ? "'in'" : "':'", REACH);
}

/* Tokens [lo, hi): a target list; refuse self or cls bound in it. */
static int targets(struct audit *a, size_t lo, size_t hi, const char *how)
{
	size_t k;

	for (k = lo; k < hi && k < a->n; k++)
		if (trusted_name(a, k) && target(a, lo, k))
			return refuse(a, k, how);
	return 0;
}

static bool assign_op(const struct audit *a, size_t i)
{
	static const char *const ops[] = { "=", "+=", "-=", "*=", "/=", "//=", "%=", "@=", "&=",
		"|=", "^=", ">>=", "<<=", "**=", NULL };

	return in_list(a, i, ops, true);
}

/* The first token after i, within the line, at i's bracket depth and
 * within REACH tokens, that is NAME kw (or op when kw is NULL); NONE if
 * none (Python has one: the caller refuses). */
static size_t find_at_depth(const struct audit *a, size_t i, const char *kw, const char *op)
{
	int32_t d = a->t[i].t.depth;
	size_t end = i + REACH;

	for (i++; i < a->n && i < end && a->t[i].t.kind != NX_PY_NEWLINE &&
	     a->t[i].t.depth >= d; i++)
		if (a->t[i].t.depth == d && (kw ? name_is(a, i, kw) : is_op(a, i, op)))
			return i;
	return NONE;
}

/* def NAME(...): self or cls only as the first parameter. */
static int def_params(struct audit *a, size_t i)
{
	size_t o = i + 2, c, k;

	if (!is_op(a, o, "(") || (c = a->match[o]) == NONE)
		return 0;
	for (k = o + 1; k < c; k++)
		if (trusted_name(a, k) && k != o + 1 &&
		    (is_op(a, k - 1, ",") || is_op(a, k - 1, "*") || is_op(a, k - 1, "**") ||
		     is_op(a, k - 1, "(")))
			return refuse(a, k, "as a parameter other than a def's first");
	return 0;
}

static int self_bindings(struct audit *a)
{
	size_t i, stmt = 0, done = 0, e = 0;
	int rc = 0;

	for (i = 0; !rc && i < a->n; i++) {
		if (stmt_start(a, i))
			stmt = done = i;
		if (a->t[i].t.kind == NX_PY_OP) {
			/* a = self = x; self += 1; a, self = x; self: T = x */
			if (a->t[i].t.depth == a->t[stmt].t.depth && assign_op(a, i)) {
				rc = targets(a, done, i, "by assignment");
				done = i + 1;
			} else if (is_op(a, i, ":=") && i && trusted_name(a, i - 1)) {
				rc = refuse(a, i - 1, "by ':='");
			}
			continue;
		}
		if (!is_name(a, i))
			continue;
		if (trusted_name(a, i) && stmt_start(a, i) && is_op(a, i + 1, ":"))
			rc = refuse(a, i, "by an annotated assignment");
		else if (trusted_name(a, i) && a->skip[i])
			rc = refuse(a, i, "by an import");
		else if (trusted_name(a, i) && i &&
			 (name_is(a, i - 1, "def") || name_is(a, i - 1, "class")))
			rc = refuse(a, i, "as a def or class name");
		else if (name_is(a, i, "def") && is_name(a, i + 1))
			rc = def_params(a, i);
		else if (name_is(a, i, "for") && (e = find_at_depth(a, i, "in", NULL)) == NONE)
			rc = refuse_far(a, i, "for");
		else if (name_is(a, i, "for"))
			rc = targets(a, i + 1, e, "as a for target");
		else if (name_is(a, i, "as") && is_op(a, i + 1, "(") && a->match[i + 1] != NONE)
			rc = targets(a, i + 1, a->match[i + 1], "by 'as'");
		else if (name_is(a, i, "as") && trusted_name(a, i + 1) && target(a, i + 1, i + 1))
			rc = refuse(a, i + 1, "by 'as'");
		else if (name_is(a, i, "lambda") && (e = find_at_depth(a, i, NULL, ":")) == NONE)
			rc = refuse_far(a, i, "lambda");
		else if (name_is(a, i, "lambda")) {
			size_t k;

			for (k = i + 1; !rc && k < e; k++)
				if (trusted_name(a, k) && !is_op(a, k - 1, "="))
					rc = refuse(a, k, "as a lambda parameter");
		} else if ((name_is(a, i, "global") || name_is(a, i, "nonlocal")) && stmt_start(a, i)) {
			size_t k;

			for (k = i + 1; !rc && k < a->n && a->t[k].t.kind != NX_PY_NEWLINE &&
			     !is_op(a, k, ";"); k++)
				if (trusted_name(a, k))
					rc = refuse(a, k, "by a global or nonlocal statement");
		}
	}
	return rc;
}

/* A def's first parameter is whatever its caller passes: self and cls are
 * trusted only in a method, a def directly in a class body that is not a
 * @staticmethod (red team 10: a module-level function, a nested one or a
 * static method given np.load's NpzFile as self re-made it with
 * allow_pickle).  Each logical line opens a block at its column (one whose
 * body is on the same line closes at the next line), so the block a def
 * is in is the top of a stack of columns, popped at each line start. */
struct block {
	int32_t col;
	bool is_class;
};

static int method_self(struct audit *a)
{
	struct block *st;
	size_t i, k, sp = 0;
	bool is_static = false;
	int rc = 0;

	if (a->depth || !a->n)
		return 0;
	if (!(st = malloc(a->n * sizeof(*st))))
		return nx_pyaudit__oom(a);
	for (i = 0; !rc && i < a->n; i++) {
		if (i && a->t[i - 1].t.kind != NX_PY_NEWLINE)
			continue;
		while (sp && st[sp - 1].col >= a->t[i].t.col)
			sp--;
		k = name_is(a, i, "async") ? i + 1 : i;
		if (name_is(a, k, "def") && is_op(a, k + 2, "(") && trusted_name(a, k + 3) &&
		    (is_static || !sp || !st[sp - 1].is_class))
			rc = refuse(a, k + 3, "as the first parameter of a def outside a class "
				    "body, or of a @staticmethod (its caller passes any object)");
		if (is_op(a, i, "@")) {
			is_static |= name_is(a, i + 1, "staticmethod") && i + 2 < a->n &&
				     a->t[i + 2].t.kind == NX_PY_NEWLINE;
			continue;
		}
		is_static = false;
		st[sp++] = (struct block){ a->t[i].t.col, name_is(a, i, "class") };
	}
	free(st);
	return rc;
}

/* The builtin classes that match themselves: their one positional
 * sub-pattern is the subject, no attribute is read. */
static bool self_matching(const struct audit *a, size_t i)
{
	static const char *const cls[] = { "bool", "bytearray", "bytes", "dict", "float",
		"frozenset", "int", "list", "set", "str", "tuple", NULL };

	return !(i && is_op(a, i - 1, ".")) && in_list(a, i, cls, false);
}

/* A case clause's pattern [lo, hi): a positional sub-pattern of a class
 * pattern reads the attribute the class's __match_args__ names. */
static int class_patterns(struct audit *a, size_t lo, size_t hi)
{
	size_t i, start, c;

	for (i = lo; i < hi; i++) {
		size_t o = i + 1;

		if (!is_name(a, i) || !is_op(a, o, "(") || a->match[o] == NONE ||
		    a->match[o] == o + 1 || self_matching(a, i))
			continue;
		for (start = o + 1, c = a->next[o]; c != NONE; start = c + 1, c = a->next[c]) {
			if (start < c && !(is_name(a, start) && is_op(a, start + 1, "=")))
				return nx_pyaudit__report(a, NX_F_PYTHON_REFLECTIVE, start,
					"positional sub-pattern of class pattern '%.*s(...)' refused: "
					"it reads the attribute __match_args__ names, which a "
					"dataclass or a string sets unseen; match by keyword "
					"(case %.*s(name=x):)", (int)a->t[i].nlen, a->t[i].name,
					(int)a->t[i].nlen, a->t[i].name);
			if (c == a->match[o])
				break;
		}
	}
	return 0;
}

static int case_clauses(struct audit *a)
{
	size_t i, k;
	int rc = 0;

	for (i = 0; !rc && i < a->n; i++) {
		if (!name_is(a, i, "case") || i + 1 >= a->n || a->param[i + 1] != PARAM_CASE)
			continue;
		for (k = i + 1; k < a->n && a->param[k] == PARAM_CASE &&
		     !(name_is(a, k, "if") && a->t[k].t.depth == a->t[i].t.depth); k++)
			if (trusted_name(a, k) && !is_op(a, k + 1, ".") && !is_op(a, k + 1, "(") &&
			    !is_op(a, k + 1, "=") && !is_op(a, k - 1, "."))
				return refuse(a, k, "by a case pattern");
		rc = class_patterns(a, i + 1, k);
		i = k;
	}
	return rc;
}

/* Defining these makes isinstance() true of any object: a class pattern
 * then matches a tensor. */
static const char *const checks[] = { "__instancecheck__", "__subclasscheck__",
	"__subclasshook__", NULL };

static int instance_checks(struct audit *a)
{
	size_t i;
	const char *const *k;

	for (i = 0; i < a->n; i++) {
		const struct ctok *t = &a->t[i].t;

		for (k = checks; *k; k++)
			if (name_is(a, i, *k) ||
			    (t->kind == NX_PY_STRING && t->body_len == strlen(*k) &&
			     !memcmp(a->buf + t->body, *k, t->body_len)))
				return nx_pyaudit__report(a, NX_F_PYTHON_REFLECTIVE, i, "'%s' refused: "
					"it makes isinstance() true of objects of other types, so that "
					"a class pattern matches a tensor", *k);
	}
	return 0;
}

int nx_pyaudit__binds(struct audit *a)
{
	int rc = self_bindings(a);

	if (!rc)
		rc = method_self(a);
	if (!rc)
		rc = case_clauses(a);
	if (!rc)
		rc = instance_checks(a);
	return rc;
}

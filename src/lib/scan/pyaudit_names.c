/*
 * pyaudit_names.c - the second pass of the Python import audit
 * (nexus/pyaudit.h): every name with the tokens around it.  A bare name
 * (builtins, getattr, a module used as a value), an attribute (what it
 * reaches: the dotted path of a chain that starts at an imported module
 * is carried along the chain, through other bundle modules' imports too),
 * a keyword argument, an f-string field or an annotation string (audited
 * as code).  pyaudit.c lexes, pairs brackets and resolves the imports.
 */
#include "pyaudit_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool name_eq(const char *s, size_t n, const char *lit)
{
	return strlen(lit) == n && !memcmp(s, lit, n);
}

/* Is attribute NAME i read straight off super() (not super().z.__class__)?
 * Not off self or cls: a def's first parameter is whatever its caller
 * passes - `View.opts(z)`, `OPTS = View.opts`, functools.partial, a
 * decorator's wrapper (under @classmethod too) - so self.__dict__,
 * self.__init__, cls.__init__ and type(cls)(...) of np.load's NpzFile
 * switched allow_pickle on (red team 10 and its review).  super() checks
 * isinstance(self, the class). */
static bool self_attr(const struct audit *a, size_t i, enum root root)
{
	size_t m;

	if (root != R_SELF || i < 2 || !is_op(a, i - 1, "."))
		return false;
	m = a->match[i - 2];
	return is_op(a, i - 2, ")") && m != NONE && m > 0 && name_is(a, m - 1, "super");
}

/* Is the object before token i+1 only read for its name: `.__name__` or
 * `.__qualname__` (a string; the class itself goes no further)? */
static bool name_read(const struct audit *a, size_t i)
{
	return is_op(a, i + 1, ".") &&
	       (name_is(a, i + 2, "__name__") || name_is(a, i + 2, "__qualname__"));
}

static bool one_of(const struct audit *a, size_t i, const char *const *names);
static bool is_assign(const struct audit *a, size_t i);

/* Does an assignment's target start at token head (`x.y = ...`), not an
 * annotated assignment's annotation (`m: np.linalg = None`, which stores
 * the module in __annotations__, where dataclasses.fields() hands it
 * out)?  stmt_start takes `try:`'s ':' for a statement start. */
static bool assign_target(const struct audit *a, size_t head)
{
	static const char *const blocks[] = { "try", "except", "else", "finally", NULL };

	return stmt_start(a, head) &&
	       !(head > 1 && is_op(a, head - 1, ":") && is_name(a, head - 2) &&
		 stmt_start(a, head - 2) && !one_of(a, head - 2, blocks));
}

/*
 * Is the `and`/`or` at token op part of an expression that is only tested:
 * looking back (64 tokens at most, over operands, comparisons, `not` and
 * bracketed parts), does an `if`, `elif` or `while` start it?  `and` and
 * `or` return an operand: `m = None or np.linalg or None` binds the module.
 */
static bool in_test(const struct audit *a, size_t op)
{
	static const char *const stop[] = { "lambda", "return", "yield", "else", "for", "await",
		"assert", "del", "raise", "from", "import", "as", "with", "async", "def",
		"class", "global", "nonlocal", "case", "match", "pass", NULL };
	static const char *const test[] = { "if", "elif", "while", NULL };
	static const char *const ops[] = { ".", "==", "!=", "<", ">", "<=", ">=", "+", "-",
		"*", "/", "//", "%", "@", "|", "&", "^", "~", "**", "<<", ">>", NULL };
	size_t j = op, steps;

	for (steps = 0; j > 0 && steps < 64; steps++) {
		const char *const *o;
		bool cont = false;

		j--;
		if (one_of(a, j, test))
			return true;
		if (a->match[j] != NONE && a->match[j] < j) {
			j = a->match[j];   /* a bracketed operand, a call or subscript */
			continue;
		}
		if (stmt_start(a, j + 1) && j + 1 != op)
			return false;
		if (is_name(a, j))
			cont = !one_of(a, j, stop);
		else if (a->t[j].t.kind == NX_PY_NUMBER || a->t[j].t.kind == NX_PY_STRING)
			cont = true;
		else
			for (o = ops; *o && !cont; o++)
				cont = is_op(a, j, *o);
		if (!cont)
			return false;
	}
	return false;
}

/*
 * Is the value of tokens [head, last] only tested, deleted or, where
 * assign, written: `x is None`, `if x:`, `del x`, `x = ...` (as
 * module_value lets a bare name be)?  `if args.test:`, `self.trace =
 * None`, `np.random is None`; `t = m.test` and `m.test(...)` are no such use.
 */
static bool value_ok(const struct audit *a, size_t head, size_t last, bool assign)
{
	static const char *const cond[] = { "if", "elif", "while", "not", NULL };
	static const char *const after[] = { "del", NULL };
	static const char *const logic[] = { "and", "or", NULL };

	if (is_op(a, last + 1, ".") || is_op(a, last + 1, "(") || is_op(a, last + 1, "["))
		return false;
	if (name_is(a, last + 1, "is"))
		return true;
	if (head == NONE || head == 0)
		return false;
	return (assign && is_assign(a, last + 1) && assign_target(a, head)) ||
	       name_is(a, head - 1, "is") || one_of(a, head - 1, after) ||
	       (head > 1 && name_is(a, head - 1, "not") && name_is(a, head - 2, "is")) ||
	       ((one_of(a, head - 1, cond) || (one_of(a, head - 1, logic) && in_test(a, head - 1))) &&
		(is_op(a, last + 1, ":") || one_of(a, last + 1, logic)));
}

/* The chain is on a module pymodattr.h knows, whose runners the denied
 * list judges exactly on the path (np.linalg.test; np.trace stays). */
static bool known_module(const struct audit *a, enum root root, const char *module)
{
	size_t k, live = 0;

	if (module)
		return nx_pyaudit__table_knows(module);
	/* H.json may be any object: its attribute named like an import */
	if (root != R_MODULE || a->bvalid || a->rebound)
		return false;
	for (k = 0; k < a->ntargets; k++) {
		if (a->cdead[k])
			continue;
		if (!nx_pyaudit__table_knows(a->cpath[k]))
			return false;
		live++;
	}
	return live > 0;
}

/* What attribute s[0..n) of a chain with this root reaches; module is the
 * dotted path it is an attribute of when that is an imported module. */
int nx_pyaudit__name_rules(struct audit *a, size_t i, const char *s, size_t n, enum root root,
		      const char *module)
{
	const char *why;

	/* `z.__init__(f, False, True)`, `g = z.__init__`, `C = z.__class__`:
	 * a re-made object (np.load's NpzFile) with arguments the audit
	 * cannot type, however it is reached, self.__init__ too (red team
	 * 10); cls.__class__, super().__init__ and `Base.__init__(self, ...)`
	 * stay, and so does x.__class__.__name__ (red team 9) */
	if ((name_eq(s, n, "__init__") || (name_eq(s, n, "__class__") && !name_read(a, i))) &&
	    !self_attr(a, i, root) &&
	    !(is_op(a, i + 1, "(") && name_is(a, i + 2, "self") &&
	      (is_op(a, i + 3, ",") || is_op(a, i + 3, ")"))))
		return nx_pyaudit__report(a, NX_F_PYTHON_REFLECTIVE, i, "'%.*s' of an object other "
			      "than super() refused (self and cls too: a caller can pass any object "
			      "as a def's first parameter): it makes an object of a type the audit cannot "
			      "see, with arguments it cannot judge; call the class by its name", (int)n, s);
	if (is_dunder(s, n)) {
		if (nx_pyaudit__dunder_ok(s, n) || (n == 8 && !memcmp(s, "__dict__", 8) &&
						    self_attr(a, i, root)))
			return 0;
		if (n == 8 && !memcmp(s, "__dict__", 8) && i >= 2 && is_op(a, i - 1, ".") &&
		    (name_is(a, i - 2, "self") || name_is(a, i - 2, "cls")))
			return nx_pyaudit__report(a, NX_F_PYTHON_REFLECTIVE, i, "'%.*s.__dict__' "
				      "refused: a caller can pass any object as a def's first "
				      "parameter "
				      "(`View.opts(z)`: np.load's NpzFile, whose attributes switch "
				      "unpickling on); set attributes by name, or keep a dict "
				      "attribute", (int)a->t[i - 2].nlen, a->t[i - 2].name);
		return nx_pyaudit__report(a, NX_F_PYTHON_REFLECTIVE, i, "'%.*s' refused: a dunder outside the data "
			      "model reaches namespaces, frames or the import system", (int)n, s);
	}
	if (n > 1 && s[0] == '_' && root != R_SELF && root != R_BUNDLE &&
	    !nx_pyaudit__private_ok(s, n))
		return nx_pyaudit__report(a, NX_F_PYTHON_REFLECTIVE, i, "private attribute '%.*s' of an object that "
			      "is not self, cls, super() or a bundle module refused: library "
			      "internals reach modules and importers", (int)n, s);
	if ((why = nx_pyaudit__attr(s, n)))
		return nx_pyaudit__report(a, NX_F_PYTHON_REFLECTIVE, i, "'%.*s' refused: %s", (int)n, s, why);
	if (module && (why = nx_pyaudit__member(module, s, n)))
		return nx_pyaudit__report(a, NX_F_PYTHON_REFLECTIVE, i, "'%s.%.*s' refused: %s", module, (int)n, s,
			      why);
	/* a parameter, self or a list's element may be a module passed from
	 * where the audit does not see it (red team 11: `View.run(np.linalg,
	 * p)`, then `self.test(...)` runs pytest): a runner's name is refused
	 * on any object the audit does not follow, as methodcaller's is */
	if ((why = nx_pyaudit__runner_name(s, n)) && !known_module(a, root, module) &&
	    !value_ok(a, a->head, i, true) &&
	    !(is_op(a, i + 1, "(") && nx_pyaudit__runner_module(s, n)))
		return nx_pyaudit__report(a, NX_F_PYTHON_REFLECTIVE, i, "'%.*s' of an object the "
			      "audit does not follow refused (a parameter, self, an element, a "
			      "bundle module's global, a path the module table does not know: a "
			      "module may be put there): %s", (int)n, s, why);
	return 0;
}

/* The export bundle name p (a "<stem>.<name>") leads to, following
 * re-exports between bundle modules; NULL when p is no import binding. */
static const struct nx_pyaudit_export *exported(const struct audit *a, const char *p)
{
	int hops;

	for (hops = 0; hops < 8 && a->b->nex; hops++) {
		size_t l = 0, h = a->b->nex;

		while (l < h) {
			size_t m = l + (h - l) / 2;

			if (strcmp(a->b->ex[m]->name, p) < 0)
				l = m + 1;
			else
				h = m;
		}
		if (l == a->b->nex || strcmp(a->b->ex[l]->name, p))
			return NULL;
		if (!a->b->ex[l]->bundle)
			return a->b->ex[l];
		p = a->b->ex[l]->target;
	}
	return NULL;
}

/* The chain follows one more module path (there is room: the caller
 * checks ntargets), as the module it is (`import os.path as p`: p is
 * posixpath), so that each step judges only the name it adds. */
static void push_target(struct audit *a, const char *target)
{
	char *p = a->cpath[a->ntargets];

	snprintf(p, sizeof(a->cpath[0]), "%s", target);
	a->cunder[a->ntargets] = nx_pyaudit__under_package(target);
	nx_pyaudit__canonical(p, sizeof(a->cpath[0]), a->cunder[a->ntargets]);
	a->cdead[a->ntargets++] = false;
}

/* The chain reached a module through a bundle module's import of it. */
static void add_target(struct audit *a, const struct nx_pyaudit_export *e)
{
	if (a->ntargets < TARGETS_MAX)
		push_target(a, e->target);
	a->on_module |= e->module;
	a->root = R_MODULE;
}

/* Start a chain at NAME i. */
static void chain_start(struct audit *a, size_t i)
{
	const struct nx_pyaudit_export *e;
	size_t lo, cnt, k;

	a->chain = i;
	a->head = i;
	a->rebound = false;
	a->ntargets = 0;
	a->root = R_UNKNOWN;
	a->on_module = false;
	a->bvalid = false;
	if (name_is(a, i, "self") || name_is(a, i, "cls")) {
		a->root = R_SELF;
		return;
	}
	cnt = nx_pyaudit__lookup(a->b, a->t[i].name, a->t[i].nlen, &lo);
	if (cnt)
		a->root = R_BUNDLE;
	for (k = lo; k < lo + cnt; k++) {
		const struct binding *v = &a->b->v[k];

		if (v->origin == O_BUNDLE && (e = exported(a, v->target))) {
			add_target(a, e);
		} else if (v->origin == O_BUNDLE) {
			if (!a->bvalid)
				snprintf(a->bpath, sizeof(a->bpath), "%s", v->target);
			a->bvalid = true;
		} else if (a->ntargets < TARGETS_MAX) {
			push_target(a, v->target);
			a->on_module |= v->module;
			a->root = R_MODULE;
		}
	}
}

/*
 * Follow the bundle name of the chain to attribute NAME i, s[0..n).  A
 * bundle module named like a package (src/torch.py) is judged as that
 * package, since production may import the real one under its name.
 */
static int bundle_step(struct audit *a, size_t i, const char *s, size_t n)
{
	const struct nx_pyaudit_export *e;
	size_t len = strlen(a->bpath);
	const char *why;

	if (!a->bvalid)
		return 0;
	if (!strcmp(a->bpath, "__init__") && nx_pyaudit__bundle_module(a, s, n)) {
		memcpy(a->bpath, s, n);
		a->bpath[n] = '\0';
		return 0;
	}
	if (len + 1 + n > NX_PYAUDIT_DOTTED_MAX) {
		a->bvalid = false;
		return 0;
	}
	a->bpath[len] = '.';
	memcpy(a->bpath + len + 1, s, n);
	a->bpath[len + 1 + n] = '\0';
	if ((e = exported(a, a->bpath))) {
		add_target(a, e);
		a->bvalid = false;
	} else if ((why = nx_pyaudit_training(a->bpath))) {
		a->bvalid = false;
		return nx_pyaudit__report(a, NX_F_IMPORT_TRAINING, i, "'%s' refused: %s (a bundle module named "
			      "like the package it shadows)", a->bpath, why);
	} else if ((why = nx_pyaudit__denied(a->bpath))) {
		a->bvalid = false;
		return nx_pyaudit__report(a, NX_F_IMPORT_DENIED, i, "'%s' refused: %s (a bundle module named like "
			      "the package it shadows)", a->bpath, why);
	}
	return 0;
}

/* The chain ends here: a module, or a package holding training or denied
 * modules, is a value the audit would stop following. */
static bool is_assign(const struct audit *a, size_t i);

/* A call of a function with an allow_pickle parameter (np.load) given
 * that parameter by position, or arguments splatted from a list: the
 * keyword rule would not see it. */
static int positional_keyword(struct audit *a, size_t i, const char *path)
{
	size_t o = i + 1, c, start, npos = 0;
	int before = nx_pyaudit__keyword_position(path);

	if (before < 0 || !is_op(a, o, "(") || a->match[o] == NONE)
		return 0;
	for (start = o + 1, c = a->next[o]; c != NONE; start = c + 1, c = a->next[c]) {
		if (start < c && (is_op(a, start, "*") || is_op(a, start, "**")))
			return nx_pyaudit__report(a, NX_F_PYTHON_REFLECTIVE, i, "'%s' called with "
				      "arguments from a %s: allow_pickle could be among them", path,
				      is_op(a, start, "*") ? "list" : "mapping");
		if (start < c && !is_op(a, start, "**") &&
		    !(a->t[start].t.kind == NX_PY_NAME && is_assign(a, start + 1)) &&
		    npos++ == (size_t)before && !(c == start + 1 && name_is(a, start, "False")))
			return nx_pyaudit__report(a, NX_F_PYTHON_REFLECTIVE, i, "'%s' given allow_pickle "
				      "by position (argument %d) other than as False: it unpickles, "
				      "importing and calling what the data names", path, before + 1);
		if (c == a->match[o])
			break;
	}
	return 0;
}

/* The chain's dotted path, for a message: getattr's last step is a
 * STRING token, which has no name. */
static const char *chain_path(struct audit *a, size_t i)
{
	size_t k;

	for (k = 0; k < a->ntargets; k++)
		if (!a->cdead[k])
			return a->cpath[k];
	if (a->bvalid)
		return a->bpath;
	if (is_name(a, i) && a->t[i].nlen < sizeof(a->bpath)) {
		memcpy(a->bpath, a->t[i].name, a->t[i].nlen);
		a->bpath[a->t[i].nlen] = '\0';
		return a->bpath;
	}
	return "?";
}

/* The token before i that opens the brackets i is in, looking back at
 * most 64 tokens (bounded: the callers ask once a chain); NONE if none. */
static size_t enclosing_open(const struct audit *a, size_t i)
{
	size_t j, steps;

	for (j = i, steps = 0; j > 0 && steps < 64; steps++) {
		j--;
		if (a->match[j] == NONE)
			continue;
		if (a->match[j] > i)
			return j;
		j = a->match[j];   /* a closed pair before i: step over it */
	}
	return NONE;
}

/* Is the chain [head, last] a class where only a class is taken and
 * nothing is kept: `except X:`, `except (X, Y) as e:`, `isinstance(x, X)`,
 * `isinstance(x, (X, Y))` (a module there raises TypeError)? */
static bool class_position(const struct audit *a, size_t head, size_t last)
{
	size_t o, p;

	if (name_is(a, head - 1, "except"))
		return is_op(a, last + 1, ":") || name_is(a, last + 1, "as");
	if (!(is_op(a, head - 1, "(") || is_op(a, head - 1, ",")) ||
	    !(is_op(a, last + 1, ")") || is_op(a, last + 1, ",")) ||
	    (o = enclosing_open(a, head)) == NONE || !is_op(a, o, "(") || o == 0)
		return false;
	if (name_is(a, o - 1, "except"))
		return is_op(a, a->match[o] + 1, ":") || name_is(a, a->match[o] + 1, "as");
	/* isinstance(x, X): X is the call's second and last argument */
	if (a->next[o] == head - 1 && a->next[head - 1] == last + 1 && is_op(a, last + 1, ")"))
		return name_is(a, o - 1, "isinstance") || name_is(a, o - 1, "issubclass");
	/* isinstance(x, (X, Y)): the tuple is that argument */
	return o > 1 && is_op(a, o - 1, ",") && is_op(a, a->match[o] + 1, ")") &&
	       (p = a->match[a->match[o] + 1]) != NONE && p > 0 && a->next[p] == o - 1 &&
	       (name_is(a, p - 1, "isinstance") || name_is(a, p - 1, "issubclass"));
}

/* A CamelCase class's CONSTANT_CASE member at NAME i
 * (`ort.GraphOptimizationLevel.ORT_ENABLE_ALL`): an enum's value. */
static bool enum_member(const struct audit *a, size_t i)
{
	const char *s = a->t[i].name, *c;
	size_t n = a->t[i].nlen, k;
	bool lower = false;

	if (!is_name(a, i) || n < 2 || !(s[0] >= 'A' && s[0] <= 'Z') || i < 2 ||
	    !is_op(a, i - 1, ".") || !is_name(a, i - 2))
		return false;
	for (k = 0; k < n; k++)
		if (!((s[k] >= 'A' && s[k] <= 'Z') || (s[k] >= '0' && s[k] <= '9') || s[k] == '_'))
			return false;
	c = a->t[i - 2].name;
	for (k = 0; k < a->t[i - 2].nlen; k++)
		lower |= c[k] >= 'a' && c[k] <= 'z';
	return c[0] >= 'A' && c[0] <= 'Z' && lower;
}

/* Does dotted path p lie under a declared package pymodattr.h holds no
 * rows for (onnxruntime, scipy, tokenizers, transformers)? */
static bool uncovered(const char *p)
{
	char top[NX_PYAUDIT_DOTTED_MAX + 1];
	size_t n = strcspn(p, ".");

	if (!p[n] || n >= sizeof(top) || !nx_pyaudit__under_package(p))
		return false;
	memcpy(top, p, n);
	top[n] = '\0';
	return !nx_pyaudit__table_knows(top);
}

/*
 * The chain ends at NAME i (head: a->head) on an attribute of a declared
 * package the module table does not hold, or a name from-imported from
 * one: any of them may be a module (onnxruntime's
 * tools.onnx_model_utils.np is numpy, review C), which the audit follows
 * only through its attributes.  Allowed where no value is handed on:
 * called (a module is not callable) or subscripted, as a decorator, a
 * def's plain parameter or return annotation (read back only through
 * `__annotations__`, inspect or get_type_hints, all refused), a class
 * where only a class is taken (except, isinstance), or a CamelCase
 * class's CONSTANT_CASE member.
 */
static bool uncovered_value(const struct audit *a, size_t i)
{
	size_t k, head = a->head;
	bool any = false;

	for (k = 0; k < a->ntargets; k++)
		any |= !a->cdead[k] && uncovered(a->cpath[k]);
	if (!any || a->root != R_MODULE || is_op(a, i + 1, "(") || is_op(a, i + 1, "["))
		return false;
	/* a module's own name and version are strings (review C of stop 22:
	 * `print(ort.__version__)` was a false alarm) */
	if (name_is(a, i, "__version__") || name_is(a, i, "__name__"))
		return false;
	if (head == NONE || head == 0)
		return true;
	if (is_op(a, head - 1, "@") && stmt_start(a, head - 1) &&
	    i + 1 < a->n && a->t[i + 1].t.kind == NX_PY_NEWLINE)
		return false;
	if ((is_op(a, head - 1, "->") && is_op(a, i + 1, ":")) ||
	    (is_op(a, head - 1, ":") && a->param[head - 1] == PARAM_ANNOT &&
	     (is_op(a, i + 1, ",") || is_op(a, i + 1, ")") || is_op(a, i + 1, "="))))
		return false;
	return !class_position(a, head, i) && !enum_member(a, i);
}

static int chain_end(struct audit *a, size_t i)
{
	size_t k;
	int rc;

	/* a bundle module is a namespace of modules too (utils.torch); a
	 * module is not callable, so `resp.json()` is no module */
	if ((a->on_module || (a->bvalid && !strchr(a->bpath, '.'))) && !is_op(a, i + 1, "("))
		return nx_pyaudit__report(a, NX_F_PYTHON_REFLECTIVE, i, "module '%s' used as a value (passed, "
			      "stored or returned) refused: the audit follows a module only through "
			      "its attributes", chain_path(a, i));
	if (uncovered_value(a, i))
		return nx_pyaudit__report(a, NX_F_PYTHON_REFLECTIVE, i, "'%s' used as a value "
			      "(passed, stored or returned) refused: the module table does not hold "
			      "its package, so it may be a module (onnxruntime's "
			      "tools.onnx_model_utils.np is numpy), which the audit follows only "
			      "through its attributes; call it, or name it only as a def's "
			      "annotation or an except or isinstance class", chain_path(a, i));
	/* `L = np.load; L(p, None, True)`: such a function is only called,
	 * where its arguments are seen (red team 9) */
	for (k = 0; k < a->ntargets; k++)
		if (!a->cdead[k] && nx_pyaudit__keyword_function(a->cpath[k]) &&
		    (nx_pyaudit__keyword_position(a->cpath[k]) < 0 || !is_op(a, i + 1, "(")))
			return nx_pyaudit__report(a, NX_F_PYTHON_REFLECTIVE, i, "'%s' used other than "
				      "called refused: it has an allow_pickle parameter, which a call "
				      "the audit does not see could set", a->cpath[k]);
	for (k = 0; k < a->ntargets; k++)
		if (!a->cdead[k] && (rc = positional_keyword(a, i, a->cpath[k])))
			return rc;
	for (k = 0; k < a->ntargets; k++)
		if (!a->cdead[k] && nx_pyaudit__holds(a->cpath[k]))
			return nx_pyaudit__report(a, NX_F_PYTHON_REFLECTIVE, i, "'%s' used as a value refused: it "
				      "holds training or denied modules the audit would stop "
				      "following", a->cpath[k]);
	return 0;
}

/*
 * Attribute NAME i of an object the audit does not follow, named like a
 * name some import binds (here, or in another bundle module): `class A:
 * import torch` makes A.torch (and self.torch) that module.  Continue the
 * chain as that module; false when no import binds the name.
 */
static bool rebind(struct audit *a, size_t i)
{
	const struct nx_pyaudit_export *e;
	const char *s = a->t[i].name;
	size_t n = a->t[i].nlen, lo, cnt, k, l = 0, h = a->b->nex;

	cnt = nx_pyaudit__lookup(a->b, s, n, &lo);
	for (k = lo; k < lo + cnt && a->ntargets < TARGETS_MAX; k++)
		if (a->b->v[k].origin != O_BUNDLE) {
			push_target(a, a->b->v[k].target);
			a->on_module |= a->b->v[k].module;
		}
	while (l < h) {
		size_t m = l + (h - l) / 2;
		if (strncmp(bound_name(a->b->exb[m]), s, n) < 0)
			l = m + 1;
		else
			h = m;
	}
	for (k = l; k < a->b->nex && !strncmp(bound_name(a->b->exb[k]), s, n) &&
	     bound_name(a->b->exb[k])[n] == '\0'; k++)
		if ((e = exported(a, a->b->exb[k]->name)))
			add_target(a, e);
	if (a->ntargets)
		a->root = R_MODULE;
	a->rebound |= a->ntargets > 0;
	return a->ntargets > 0;
}

/*
 * `torch.jit.is_tracing()` or `torch.jit.is_scripting()` at the chain's
 * NAME i (p: "torch.jit"): serving code asks whether it is being traced
 * or scripted, to take a plain path.  Both take no argument and return a
 * bool, so that call, with empty parentheses, is all that is allowed:
 * torch.jit stays refused in every other spelling (imported,
 * from-imported, a value, assigned to, given arguments, any other
 * attribute).
 */
static bool jit_probe(const struct audit *a, size_t i, const char *p)
{
	size_t o = i + 3;

	return !strcmp(p, "torch.jit") && is_op(a, i + 1, ".") &&
	       (name_is(a, i + 2, "is_tracing") || name_is(a, i + 2, "is_scripting")) &&
	       is_op(a, o, "(") && a->match[o] == o + 1;
}

/* Extend the chain by attribute NAME i: judge what the path reaches. */
static int chain_step(struct audit *a, size_t i, const char *s, size_t n)
{
	const char *why;
	size_t k, len;
	int rc = 0;

	for (k = 0; !rc && k < a->ntargets; k++) {
		char *p = a->cpath[k];

		if (a->cdead[k])
			continue;
		len = strlen(p);
		if ((why = nx_pyaudit__member(p, s, n)))
			rc = nx_pyaudit__report(a, NX_F_PYTHON_REFLECTIVE, i, "'%s.%.*s' refused: %s", p, (int)n, s,
				    why);
		if (rc || len + 1 + n > NX_PYAUDIT_DOTTED_MAX) {
			/* no list entry is this long: nothing further can match */
			a->cdead[k] = true;
			continue;
		}
		p[len] = '.';
		memcpy(p + len + 1, s, n);
		p[len + 1 + n] = '\0';
		/* process.mp is multiprocessing: judged, and followed, as it;
		 * np.linalg is a module too, refused as a value (red team 11) */
		if (nx_pyaudit__canonical_last(p, sizeof(a->cpath[0]), a->cunder[k]) ||
		    nx_pyaudit__is_module(p))
			a->on_module = true;
		if ((why = nx_pyaudit_training(p))) {
			rc = nx_pyaudit__report(a, NX_F_IMPORT_TRAINING, i, "'%s' refused: %s; a training package or "
				    "submodule is refused even when python_packages declares its "
				    "package", p, why);
			a->cdead[k] = true;
		} else if (jit_probe(a, i, p)) {
			a->cdead[k] = true;     /* judged whole: nothing further to follow */
		} else if ((why = nx_pyaudit__denied(p))) {
			rc = nx_pyaudit__report(a, NX_F_IMPORT_DENIED, i, "'%s' refused: %s", p, why);
			a->cdead[k] = true;
		} else if (!a->bvalid && (why = nx_pyaudit__framework_inside(p))) {
			/* followed on: `ort.torch.optim` is also import-training */
			rc = nx_pyaudit__report(a, NX_F_PYTHON_REFLECTIVE, i, "'%s' refused: %s", p, why);
		}
	}
	return rc;
}

/* Tokens [lo, hi): one literal (adjacent literals joined) naming an
 * attribute, identifier characters and dots only, into out. */
static bool plain_literal(const struct audit *a, size_t lo, size_t hi, char *out, size_t cap)
{
	size_t o = 0, i, k;

	if (lo >= hi)
		return false;
	for (i = lo; i < hi; i++) {
		const struct ctok *t = &a->t[i].t;

		if (t->kind != NX_PY_STRING || (t->flags & (NX_PY_STR_F | NX_PY_STR_BYTES)))
			return false;
		for (k = 0; k < t->body_len; k++) {
			char c = a->buf[t->body + k];

			if (!(c == '_' || c == '.' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			      (c >= '0' && c <= '9')) || o + 1 >= cap)
				return false;
			out[o++] = c;
		}
	}
	out[o] = '\0';
	return o > 0;
}

/* Tokens [lo, hi): NAME, or NAME . NAME ... (`np.linalg`). */
static bool dotted_names(const struct audit *a, size_t lo, size_t hi)
{
	size_t k;

	if (lo >= hi || (hi - lo) % 2 == 0)
		return false;
	for (k = lo; k < hi; k++)
		if ((k - lo) % 2 ? !is_op(a, k, ".") : !is_name(a, k))
			return false;
	return true;
}

/* getattr/setattr/delattr/hasattr at NAME i: only called, with a plain
 * literal name, which is judged as an attribute of the first argument. */
static int getattr_call(struct audit *a, size_t i)
{
	char lit[NX_PYAUDIT_DOTTED_MAX + 1];
	size_t o = i + 1, c, e, k, first = i + 2;
	enum root root = R_UNKNOWN;
	int rc;

	if (!is_op(a, o, "(") || a->match[o] == NONE)
		return nx_pyaudit__report(a, NX_F_PYTHON_REFLECTIVE, i, "'%.*s' used other than called with a "
			      "literal attribute name: a lookup by computed name", (int)a->t[i].nlen,
			      a->t[i].name);
	c = a->next[o];
	e = c != NONE && c != a->match[o] ? a->next[c] : NONE;
	if (e == NONE || !plain_literal(a, c + 1, e, lit, sizeof(lit)) || strchr(lit, '.'))
		return nx_pyaudit__report(a, NX_F_PYTHON_REFLECTIVE, i, "'%.*s' with a computed attribute name "
			      "refused: the audit cannot see what it reaches; use the attribute "
			      "itself", (int)a->t[i].nlen, a->t[i].name);
	if (dotted_names(a, first, c)) {
		/* getattr(module, "name"): the module is not passed on;
		 * getattr(np.linalg, "test") follows the chain to the name
		 * (each step is judged again when the loop reaches it) */
		chain_start(a, first);
		/* the module argument is judged here, step by step; its last
		 * name is not passed on as a value (hasattr(torch.backends,
		 * "mps")): what getattr returns is judged below */
		a->skip[c - 1] = 1;
		for (k = first + 2; k < c; k += 2) {
			const char *s = a->t[k].name;
			size_t n = a->t[k].nlen;

			if ((rc = nx_pyaudit__name_rules(a, k, s, n, a->root, NULL)))
				return rc;
			a->on_module = false;
			if ((rc = chain_step(a, k, s, n)) || (rc = bundle_step(a, k, s, n)))
				return rc;
		}
		root = a->root;
		if ((rc = nx_pyaudit__name_rules(a, c + 1, lit, strlen(lit), root, NULL)))
			return rc;
		a->on_module = false;
		if ((rc = chain_step(a, c + 1, lit, strlen(lit))) ||
		    (rc = bundle_step(a, c + 1, lit, strlen(lit))))
			return rc;
		/* what getattr returns is a value; hasattr's is a bool
		 * (`hasattr(torch.backends, "mps")`) */
		return name_is(a, i, "hasattr") || value_ok(a, i, a->match[o], false) ? 0 :
		       chain_end(a, c + 1);
	}
	return nx_pyaudit__name_rules(a, c + 1, lit, strlen(lit), root, NULL);
}

/* operator.attrgetter / methodcaller at NAME i: literal names only. */
static int getter_call(struct audit *a, size_t i, bool all)
{
	char lit[NX_PYAUDIT_DOTTED_MAX + 1];
	size_t o = i + 1, c, start;
	int rc = 0;

	if (!is_op(a, o, "(") || a->match[o] == NONE)
		return nx_pyaudit__report(a, NX_F_PYTHON_REFLECTIVE, i, "'%.*s' used other than called with "
			      "literal attribute names: a lookup by computed name",
			      (int)a->t[i].nlen, a->t[i].name);
	for (start = o + 1, c = a->next[o]; !rc && c != NONE; start = c + 1, c = a->next[c]) {
		char *p, *dot;

		if (!plain_literal(a, start, c, lit, sizeof(lit)))
			return nx_pyaudit__report(a, NX_F_PYTHON_REFLECTIVE, i, "'%.*s' with a computed attribute "
				      "name refused", (int)a->t[i].nlen, a->t[i].name);
		for (p = lit; !rc && p; p = dot ? dot + 1 : NULL) {
			size_t n;
			const char *why;

			dot = strchr(p, '.');
			n = dot ? (size_t)(dot - p) : strlen(p);
			rc = nx_pyaudit__name_rules(a, start, p, n, R_UNKNOWN, NULL);
			/* methodcaller("test")(np.linalg): the object is not seen */
			if (!rc && (why = nx_pyaudit__runner_name(p, n)))
				rc = nx_pyaudit__report(a, NX_F_PYTHON_REFLECTIVE, start, "'%.*s' "
					    "in '%.*s' refused: the object is not seen, and the name "
					    "is a runner's: %s", (int)n, p, (int)a->t[i].nlen,
					    a->t[i].name, why);
		}
		if (!all || c == a->match[o])
			break;
	}
	return rc;
}

static bool one_of(const struct audit *a, size_t i, const char *const *names)
{
	for (; *names; names++)
		if (name_is(a, i, *names))
			return true;
	return false;
}

static bool is_assign(const struct audit *a, size_t i)
{
	return is_op(a, i, "=");
}

/* An imported module used other than through its attributes. */
static int module_value(struct audit *a, size_t i)
{
	static const char *const cond[] = { "if", "elif", "while", "not", NULL };
	static const char *const after[] = { "del", "global", "nonlocal", NULL };
	static const char *const logic[] = { "and", "or", NULL };

	if ((a->root != R_MODULE && !a->bvalid) || a->skip[i] || is_op(a, i + 1, "."))
		return 0;
	if ((is_assign(a, i + 1) && assign_target(a, i)) || (i && one_of(a, i - 1, after)) ||
	    name_is(a, i + 1, "is") || (i && name_is(a, i - 1, "is")) ||
	    (i > 1 && name_is(a, i - 1, "not") && name_is(a, i - 2, "is")) ||
	    (i && (one_of(a, i - 1, cond) || (one_of(a, i - 1, logic) && in_test(a, i - 1))) &&
	     (is_op(a, i + 1, ":") || one_of(a, i + 1, logic))))
		return 0;
	return chain_end(a, i);
}

/* NAME i followed by '=' inside a call: a keyword argument. */
static bool keyword_arg(const struct audit *a, size_t i)
{
	return a->t[i].t.depth > 0 && is_assign(a, i + 1) && i &&
	       (is_op(a, i - 1, "(") || is_op(a, i - 1, ","));
}

/*
 * NAME i, `type` not called, is one of the uses that hand it to nothing
 * that calls it: an annotation (`-> type`, `x: type[T]`), a class
 * statement's base or metaclass, isinstance(x, type) / issubclass.
 */
static bool type_value_ok(const struct audit *a, size_t i)
{
	size_t k, o;

	if (i && is_op(a, i - 1, "->"))
		return true;
	if (i > 1 && is_op(a, i - 1, ":") && is_name(a, i - 2) &&
	    (a->param[i - 1] == PARAM_ANNOT || (a->t[i - 1].t.depth == 0 && stmt_start(a, i - 2))))
		return true;
	if (i > 1 && is_op(a, i - 1, ",") && is_op(a, i + 1, ")") &&
	    (o = a->match[i + 1]) != NONE && o > 0 &&
	    (name_is(a, o - 1, "isinstance") || name_is(a, o - 1, "issubclass")))
		return true;
	/* class A(type): / class B(metaclass=type): on its header line */
	if (a->t[i].t.depth != 1 || !(is_op(a, i + 1, ")") || is_op(a, i + 1, ",")))
		return false;
	for (k = i; k > 0 && i - k < 64 && !stmt_start(a, k); k--)
		;
	return stmt_start(a, k) && name_is(a, k, "class") && is_name(a, k + 1) &&
	       is_op(a, k + 2, "(") && a->match[k + 2] != NONE && a->match[k + 2] > i;
}

static int bare_name(struct audit *a, size_t i)
{
	const char *s = a->t[i].name, *why;
	size_t n = a->t[i].nlen;

	/* a class pattern's keyword is an attribute read of the subject */
	if (keyword_arg(a, i) && a->param[i] == PARAM_CASE)
		return nx_pyaudit__name_rules(a, i, s, n, R_UNKNOWN, NULL);
	if (keyword_arg(a, i)) {
		if ((why = nx_pyaudit__keyword(s, n)) &&
		    !(name_is(a, i + 2, "False") && (is_op(a, i + 3, ",") || is_op(a, i + 3, ")"))))
			return nx_pyaudit__report(a, NX_F_PYTHON_REFLECTIVE, i, "keyword '%.*s' refused unless False: "
				      "%s", (int)n, s, why);
		return 0;
	}
	if (i && (name_is(a, i - 1, "def") || name_is(a, i - 1, "class")))
		return 0;
	if ((why = nx_pyaudit__builtin(s, n)))
		return nx_pyaudit__report(a, NX_F_PYTHON_REFLECTIVE, i, "'%.*s' refused: %s; serving code must "
			      "import and call only what the audit can see", (int)n, s, why);
	if (is_dunder(s, n) && !nx_pyaudit__dunder_ok(s, n))
		return nx_pyaudit__report(a, NX_F_PYTHON_REFLECTIVE, i, "'%.*s' refused: a dunder outside the data "
			      "model reaches namespaces, frames or the import system", (int)n, s);
	/* `T = type(z); T(f, False, True)`: the class of an object the audit
	 * cannot type, whatever follows (red team 9), type(self) and
	 * type(cls) too (red team 10: a def's first parameter is what its
	 * caller passes); type of a literal, and type(x).__name__ /
	 * .__qualname__ (a string read, no call) stay */
	if (name_is(a, i, "type") && is_op(a, i + 1, "(") && a->match[i + 1] != NONE &&
	    a->next[i + 1] == a->match[i + 1] && a->match[i + 1] > i + 2 &&
	    !(a->match[i + 1] == i + 3 &&
	      (a->t[i + 2].t.kind == NX_PY_NUMBER ||
	       (a->t[i + 2].t.kind == NX_PY_STRING && !(a->t[i + 2].t.flags & NX_PY_STR_F)))) &&
	    !name_read(a, a->match[i + 1]))
		return nx_pyaudit__report(a, NX_F_PYTHON_REFLECTIVE, i, "'type(...)' of an object "
			      "refused (self and cls too: a caller can pass any object as a def's "
			      "first parameter): it is the class of an object the "
			      "audit cannot type, which a later call would make with arguments it "
			      "cannot judge");
	if (name_is(a, i, "type") && !is_op(a, i + 1, "(") && !type_value_ok(a, i))
		return nx_pyaudit__report(a, NX_F_PYTHON_REFLECTIVE, i, "'type' used other than "
			      "called refused: `T = type; T(z)` and `type.__call__` are type(z) "
			      "where the audit does not see it (an annotation, a class's base or "
			      "metaclass and isinstance(x, type) stay)");
	if (name_is(a, i, "getattr") || name_is(a, i, "setattr") || name_is(a, i, "delattr") ||
	    name_is(a, i, "hasattr"))
		return getattr_call(a, i);
	/* `from operator import attrgetter as ag`: ag is attrgetter */
	if (a->root == R_MODULE && a->ntargets &&
	    (!strcmp(a->cpath[0], "operator.attrgetter") ||
	     !strcmp(a->cpath[0], "operator.methodcaller")))
		return getter_call(a, i, !strcmp(a->cpath[0], "operator.attrgetter"));
	return module_value(a, i);
}

/* Audit an f-string's replacement field as code. */
static int field(void *arg, size_t start, size_t n)
{
	struct audit *a = arg;
	const struct ctok *t = &a->t[a->field_of].t;
	char *code;
	size_t i;
	long line, col;
	int rc;

	if (a->depth >= NX_PYAUDIT_FSTRING_DEPTH_MAX)
		return nx_error_set(a->err, NX_EFORMAT, a->path, t->line, (long long)start,
				    "%s:%ld: f-strings nested deeper than %d; the file cannot be "
				    "audited", a->path ? a->path : "<source>", (long)t->line,
				    NX_PYAUDIT_FSTRING_DEPTH_MAX);
	for (i = a->field_pos; i < start; i++)
		if (a->buf[i] == '\n') {
			a->field_line++;
			a->field_line_start = i + 1;
		}
	a->field_pos = start;
	line = a->line0 + a->field_line - 1;
	col = (long)(start - a->field_line_start) + (a->field_line == 1 ? a->col0 : 1);
	if (!(code = malloc(n + 2)))
		return nx_pyaudit__oom(a);
	code[0] = '(';
	memcpy(code + 1, a->buf + start, n);
	code[n + 1] = ')';
	rc = a->text(code, n + 2, a->o, a->b, a->fn, a->ctx, a->path, a->err, a->depth + 1,
			line, col - 1);
	free(code);
	return rc;
}

/* STRING i is an annotation: `-> "T"`, `def f(x: "T")`, `x: "T" = ...`. */
static bool annotation(const struct audit *a, size_t i)
{
	const struct ctok *t = &a->t[i].t;

	if (!i || (t->flags & (NX_PY_STR_F | NX_PY_STR_BYTES)) || is_name(a, i + 1))
		return false;
	if (is_op(a, i - 1, "->"))
		return true;
	return i > 1 && is_op(a, i - 1, ":") && is_name(a, i - 2) &&
	       (a->param[i - 1] == PARAM_ANNOT ||
		(a->t[i - 1].t.depth == 0 && stmt_start(a, i - 2)));
}

/* Typing tools evaluate an annotation string: audit it as code.  One that
 * is not an expression cannot be evaluated either. */
static int annotation_code(struct audit *a, size_t i)
{
	const struct ctok *t = &a->t[i].t;
	nx_error sub;
	char *code;
	int rc;

	/* escapes and pieces are decoded and joined before evaluation */
	if (memchr(a->buf + t->body, '\\', t->body_len) ||
	    (i + 1 < a->n && a->t[i + 1].t.kind == NX_PY_STRING) ||
	    a->depth >= NX_PYAUDIT_FSTRING_DEPTH_MAX)
		return nx_pyaudit__report(a, NX_F_PYTHON_REFLECTIVE, i, "annotation string with escapes or in "
			      "pieces refused: typing tools evaluate it as code, and the audit "
			      "reads only plain annotation strings");
	if (!(code = malloc((size_t)t->body_len + 2)))
		return nx_pyaudit__oom(a);
	code[0] = '(';
	memcpy(code + 1, a->buf + t->body, t->body_len);
	code[t->body_len + 1] = ')';
	nx_error_clear(&sub);
	rc = a->text(code, (size_t)t->body_len + 2, a->o, a->b, a->fn, a->ctx, a->path, &sub,
			a->depth + 1, a->line0 + t->line - 1, a->col0 + t->col - 1);
	free(code);
	if (rc == NX_EFORMAT)
		return 0;   /* not an expression: it cannot be evaluated either */
	if (rc < 0 && a->err)
		*a->err = sub;
	return rc;
}

int nx_pyaudit__names(struct audit *a)
{
	size_t i;
	int rc = 0;

	a->chain = NONE;
	for (i = 0; !rc && i < a->n; i++) {
		const struct ctok *t = &a->t[i].t;

		if (t->kind == NX_PY_STRING && (t->flags & NX_PY_STR_F)) {
			nx_py_token full = { .kind = t->kind, .start = t->start, .len = t->len,
					     .line = t->line, .col = t->col, .flags = t->flags,
					     .body = t->body, .body_len = t->body_len };

			a->field_of = i;
			a->field_pos = t->start;
			a->field_line = t->line;
			a->field_line_start = t->start - (size_t)(t->col - 1);
			rc = nx_pylex_fstring_fields(a->buf, t->start + t->len, &full, field, a);
			continue;
		}
		if (t->kind == NX_PY_STRING && annotation(a, i)) {
			rc = annotation_code(a, i);
			continue;
		}
		/* **{"allow_pickle": True}: the keyword spelled as a string */
		if (t->kind == NX_PY_STRING && !(t->flags & NX_PY_STR_F) &&
		    nx_pyaudit__keyword(a->buf + t->body, t->body_len)) {
			rc = nx_pyaudit__report(a, NX_F_PYTHON_REFLECTIVE, i, "'%.*s' refused as a string: %s",
				    (int)t->body_len, a->buf + t->body,
				    nx_pyaudit__keyword(a->buf + t->body, t->body_len));
			continue;
		}
		if (t->kind != NX_PY_NAME)
			continue;
		/* isinstance/issubclass are trusted where only a class is
		 * taken (class_position, type_value_ok): a file binding either
		 * name made that a door (review C of stop 22: `def
		 * isinstance(a, b): return b`, then `isinstance(0, u.np)` handed
		 * the module out), so any use but a plain call is refused */
		if ((name_is(a, i, "isinstance") || name_is(a, i, "issubclass")) &&
		    (!is_op(a, i + 1, "(") ||
		     (i && (is_op(a, i - 1, ".") || name_is(a, i - 1, "def") ||
			    name_is(a, i - 1, "class") || name_is(a, i - 1, "as") ||
			    name_is(a, i - 1, "import"))))) {
			rc = nx_pyaudit__report(a, NX_F_PYTHON_REFLECTIVE, i, "'%.*s' other than "
						"called as the builtin refused: the audit trusts it to "
						"take only a class, which a def, an import or an "
						"assignment of that name would break", (int)a->t[i].nlen,
						a->t[i].name);
			continue;
		}
		if (a->skip[i])
			continue;
		if (name_is(a, i, "attrgetter") || name_is(a, i, "methodcaller")) {
			rc = getter_call(a, i, name_is(a, i, "attrgetter"));
			if (rc)
				break;
		}
		if (i && is_op(a, i - 1, ".")) {
			enum root root = R_UNKNOWN;
			bool cont = i > 1 && a->chain == i - 2;

			if (cont)
				root = a->root;
			else if (i > 1 && is_op(a, i - 2, ")") && a->match[i - 2] != NONE &&
				 a->match[i - 2] > 0 && name_is(a, a->match[i - 2] - 1, "super"))
				root = R_SELF;
			rc = nx_pyaudit__name_rules(a, i, a->t[i].name, a->t[i].nlen, root, NULL);
			if (rc)
				continue;
			if (!cont) {
				a->head = NONE;
				a->rebound = false;
				a->ntargets = 0;
				a->bvalid = false;
				a->root = R_UNKNOWN;
			}
			a->chain = i;
			a->on_module = false;
			rc = chain_step(a, i, a->t[i].name, a->t[i].nlen);
			if (!rc)
				rc = bundle_step(a, i, a->t[i].name, a->t[i].nlen);
			/* an object the audit does not follow (A.torch, self.torch,
			 * f().torch): an attribute named like an imported module is
			 * judged as that module */
			if (!rc && a->root != R_MODULE)
				rebind(a, i);
			if (!rc && !is_op(a, i + 1, ".") && !a->skip[i] &&
			    !value_ok(a, a->head, i, true))
				rc = chain_end(a, i);
			continue;
		}
		chain_start(a, i);
		rc = bare_name(a, i);
	}
	return rc;
}


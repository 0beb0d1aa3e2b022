/*
 * chat_render.c - renders a compiled chat template: a walk of the tree with
 * a stack of scopes (a for loop's body is its own scope, as in Jinja, which
 * is why templates use namespace()), Python's semantics for the operators,
 * filters, tests and methods the subset holds, and the caps of
 * nexus/chat_template.h on output, string sizes and loop iterations.
 */
#include "chat_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHAT_SPECIAL_MAX 4096 /* namespace() calls and live loops in one render */

struct scope {
	json_t *vars;
	struct scope *up;
};

struct rctx {
	const nx_chat_template *t;
	json_t *globals;
	struct scope *sc;
	struct chat_sb out;
	size_t iterations;
	const json_t *special[CHAT_SPECIAL_MAX]; /* namespaces and loop objects */
	size_t nspecial;
	/* Python's dict views (1) and iterators (2) are held as lists; these may
	 * only be iterated, counted (views), listed or joined: anything else
	 * would render what Jinja cannot, so it is an error */
	const json_t *views[CHAT_SPECIAL_MAX];
	unsigned char view_kind[CHAT_SPECIAL_MAX];
	size_t nviews;
	int flow;                                /* 1 break, 2 continue */
	nx_error *err;
};

__attribute__((format(printf, 4, 5)))
static int rfail(struct rctx *r, int code, int line, const char *fmt, ...)
{
	char msg[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return nx_error_set(r->err, code, r->t->path, line, -1, "%s: chat template line %d: %s",
			    r->t->path, line, msg);
}

static bool is_special(const struct rctx *r, const json_t *v)
{
	size_t i;

	for (i = 0; v && i < r->nspecial; i++)
		if (r->special[i] == v)
			return true;
	return false;
}

static int view_of(const struct rctx *r, const json_t *v)
{
	size_t i;

	for (i = 0; v && i < r->nviews; i++)
		if (r->views[i] == v)
			return r->view_kind[i];
	return 0;
}

static int mark_view(struct rctx *r, json_t *v, int kind, int line)
{
	if (r->nviews == CHAT_SPECIAL_MAX)
		return rfail(r, NX_ELIMIT, line, "more than %d dict views or iterators", CHAT_SPECIAL_MAX);
	r->views[r->nviews] = json_incref(v);
	r->view_kind[r->nviews++] = (unsigned char)kind;
	return 0;
}

static bool truthy(const struct rctx *r, const json_t *v)
{
	return view_of(r, v) == 2 || nx_chat__truthy(v);
}

static int put(struct rctx *r, const char *s, size_t len, int line)
{
	int rc = nx_chat__sb_put(&r->out, s, len);

	if (rc == NX_ELIMIT)
		return rfail(r, NX_ELIMIT, line, "the prompt would exceed %u bytes", NX_CHAT_OUTPUT_MAX);
	return rc ? nx_error_oom(r->err, r->t->path) : 0;
}

static json_t *lookup(struct rctx *r, const char *name)
{
	struct scope *s;
	json_t *v;

	for (s = r->sc; s; s = s->up)
		if ((v = json_object_get(s->vars, name)))
			return v;
	return json_object_get(r->globals, name);
}

static const char *type_name(const struct rctx *r, const json_t *v)
{
	if (!v)
		return "undefined";
	if (is_special(r, v))
		return "namespace or loop";
	switch (json_typeof(v)) {
	case JSON_STRING: return "str";
	case JSON_INTEGER: return "int";
	case JSON_REAL: return "float";
	case JSON_TRUE: case JSON_FALSE: return "bool";
	case JSON_NULL: return "None";
	case JSON_ARRAY: return "list";
	default: return "dict";
	}
}

static bool is_int(const json_t *v) { return v && (json_is_integer(v) || json_is_boolean(v)); }
static long long int_of(const json_t *v) { return json_is_integer(v) ? json_integer_value(v) : json_is_true(v); }

static int to_str(struct rctx *r, const json_t *v, int line, char **s, size_t *n)
{
	const char *why = NULL;
	int rc;

	if (is_special(r, v))
		return rfail(r, NX_ECHECK, line, "a namespace or loop object cannot be printed");
	if (view_of(r, v))
		return rfail(r, NX_ECHECK, line, "a dict view, range or iterator cannot be printed or "
			     "joined to a string as Jinja would (use | list | tojson)");
	rc = nx_chat__str(v, s, n, &why);
	if (rc == NX_ENOMEM)
		return nx_error_oom(r->err, r->t->path);
	if (rc)
		return rfail(r, rc, line, "%s", why ? why : "value too long");
	return 0;
}

static json_t *new_str(const char *s, size_t n)
{
	return json_stringn_nocheck(s, n);
}

static int eval(struct rctx *r, const struct chat_expr *e, json_t **out);

/* ---- subscripts ---- */

static json_t *char_at(const char *s, size_t n, long long i)
{
	size_t len = nx_chat__utf8_len(s, n), a, b;

	if (i < 0)
		i += (long long)len;
	if (i < 0 || (size_t)i >= len)
		return NULL;
	a = nx_chat__utf8_offset(s, n, (size_t)i);
	b = nx_chat__utf8_offset(s, n, (size_t)i + 1);
	return new_str(s + a, b - a);
}

static bool dict_method(const char *name)
{
	static const char *const M[] = { "items", "keys", "values", "get", "pop", "copy", "update",
		"clear", "setdefault", "popitem", "fromkeys", NULL };
	const char *const *m;

	for (m = M; *m; m++)
		if (!strcmp(*m, name))
			return true;
	return false;
}

static int get_item(struct rctx *r, json_t *a, json_t *k, int line, json_t **out)
{
	*out = NULL;
	if (!a)
		return rfail(r, NX_ECHECK, line, "an undefined value is subscripted");
	if (view_of(r, a))
		return rfail(r, NX_ECHECK, line, "a dict view, range or iterator is subscripted");
	if (json_is_object(a) && json_is_string(k)) {
		*out = json_incref(json_object_get(a, json_string_value(k)));
		if (!*out && !is_special(r, a) && dict_method(json_string_value(k)))
			return rfail(r, NX_ECHECK, line, "'%s' is a dict method here; call it",
				     json_string_value(k));
		return 0;
	}
	if (json_is_array(a) && is_int(k)) {
		long long i = int_of(k), n = (long long)json_array_size(a);

		if (i < 0)
			i += n;
		if (i >= 0 && i < n)
			*out = json_incref(json_array_get(a, (size_t)i));
		return 0;
	}
	if (json_is_string(a) && is_int(k)) {
		*out = char_at(json_string_value(a), json_string_length(a), int_of(k));
		return 0;
	}
	if (json_is_string(k) && json_is_string(a) && !strcmp(json_string_value(k), "strip"))
		return rfail(r, NX_ECHECK, line, "a string method used without a call");
	return 0; /* Jinja: undefined */
}

static long long clamp_index(long long i, long long len, long long step, bool is_start)
{
	if (i < 0) {
		i += len;
		if (i < 0)
			i = step < 0 ? -1 : 0;
	} else if (i >= len) {
		i = step < 0 ? len - 1 : len;
	}
	(void)is_start;
	return i;
}

static int slice(struct rctx *r, const struct chat_expr *e, json_t **out)
{
	json_t *a = NULL, *b = NULL, *c = NULL, *st = NULL, *res = NULL;
	long long len, start, stop, step = 1, i;
	int rc;

	if ((rc = eval(r, e->a, &a)) || (e->b && (rc = eval(r, e->b, &b))) ||
	    (e->c && (rc = eval(r, e->c, &c))) || (e->args[0] && (rc = eval(r, e->args[0], &st))))
		goto out_free;
	if ((b && !json_is_null(b) && !is_int(b)) || (c && !json_is_null(c) && !is_int(c)) ||
	    (st && !json_is_null(st) && !is_int(st))) {
		rc = rfail(r, NX_ECHECK, e->line, "slice indices must be integers or None");
		goto out_free;
	}
	if (st && is_int(st))
		step = int_of(st);
	if (!step) {
		rc = rfail(r, NX_ECHECK, e->line, "slice step cannot be zero");
		goto out_free;
	}
	if (!a || (!json_is_array(a) && !json_is_string(a))) {
		rc = rfail(r, NX_ECHECK, e->line, "cannot slice a %s", type_name(r, a));
		goto out_free;
	}
	len = json_is_array(a) ? (long long)json_array_size(a) :
				 (long long)nx_chat__utf8_len(json_string_value(a), json_string_length(a));
	start = b && is_int(b) ? clamp_index(int_of(b), len, step, true) : step < 0 ? len - 1 : 0;
	stop = c && is_int(c) ? clamp_index(int_of(c), len, step, false) : step < 0 ? -1 : len;
	if (json_is_array(a)) {
		if (!(res = json_array()))
			goto oom;
		for (i = start; step > 0 ? i < stop : i > stop; i += step)
			if (json_array_append(res, json_array_get(a, (size_t)i)))
				goto oom;
	} else {
		const char *s = json_string_value(a);
		size_t n = json_string_length(a);
		char *buf = malloc(n + 1);
		size_t k = 0;

		if (!buf)
			goto oom;
		for (i = start; step > 0 ? i < stop : i > stop; i += step) {
			size_t x = nx_chat__utf8_offset(s, n, (size_t)i), y = nx_chat__utf8_offset(s, n, (size_t)i + 1);

			if (k + (y - x) > n)
				break;
			memcpy(buf + k, s + x, y - x);
			k += y - x;
		}
		res = new_str(buf, k);
		free(buf);
		if (!res)
			goto oom;
	}
	*out = res;
	res = NULL;
	goto out_free;
oom:
	rc = nx_error_oom(r->err, r->t->path);
out_free:
	json_decref(a);
	json_decref(b);
	json_decref(c);
	json_decref(st);
	json_decref(res);
	return rc;
}

/* ---- operators ---- */

static int binop(struct rctx *r, int op, json_t *a, json_t *b, int line, json_t **out)
{
	char *x = NULL, *y = NULL;
	size_t xn, yn;
	int rc = 0;

	*out = NULL;
	if (view_of(r, a) || view_of(r, b))
		return rfail(r, NX_ECHECK, line, "operators on a dict view, range or iterator are not supported");
	switch (op) {
	case CB_EQ: case CB_NE:
		*out = json_boolean(nx_chat__equal(a, b) == (op == CB_EQ));
		return 0;
	case CB_CONCAT:
		if ((rc = to_str(r, a, line, &x, &xn)) || (rc = to_str(r, b, line, &y, &yn)))
			break;
		if (xn + yn > NX_CHAT_OUTPUT_MAX) {
			rc = rfail(r, NX_ELIMIT, line, "a string would exceed %u bytes", NX_CHAT_OUTPUT_MAX);
			break;
		}
		{
			char *xy = realloc(x, xn + yn + 1);   /* x stays ours if this fails */

			if (!xy) {
				rc = nx_error_oom(r->err, r->t->path);
				break;
			}
			x = xy;
		}
		memcpy(x + xn, y, yn);
		*out = new_str(x, xn + yn);
		rc = *out ? 0 : nx_error_oom(r->err, r->t->path);
		break;
	case CB_IN: case CB_NOTIN: {
		bool found = false;
		size_t i;

		if (!b || json_is_array(b)) {
			for (i = 0; b && i < json_array_size(b) && !found; i++)
				found = nx_chat__equal(a, json_array_get(b, i));
		} else if (json_is_object(b) && !is_special(r, b)) {
			found = json_is_string(a) && json_object_get(b, json_string_value(a));
		} else if (json_is_string(b) && json_is_string(a)) {
			found = memmem(json_string_value(b), json_string_length(b), json_string_value(a),
				       json_string_length(a)) != NULL;
		} else {
			return rfail(r, NX_ECHECK, line, "'in' between a %s and a %s", type_name(r, a),
				     type_name(r, b));
		}
		*out = json_boolean(found == (op == CB_IN));
		return 0;
	}
	case CB_LT: case CB_LE: case CB_GT: case CB_GE: {
		int c;

		if (is_int(a) && is_int(b)) {
			c = int_of(a) < int_of(b) ? -1 : int_of(a) > int_of(b);
		} else if (json_is_string(a) && json_is_string(b)) {
			size_t m = json_string_length(a) < json_string_length(b) ? json_string_length(a) :
										  json_string_length(b);

			c = memcmp(json_string_value(a), json_string_value(b), m);
			if (!c)
				c = json_string_length(a) < json_string_length(b) ? -1 :
				    json_string_length(a) > json_string_length(b);
		} else {
			return rfail(r, NX_ECHECK, line, "cannot order a %s and a %s", type_name(r, a),
				     type_name(r, b));
		}
		*out = json_boolean(op == CB_LT ? c < 0 : op == CB_LE ? c <= 0 : op == CB_GT ? c > 0 : c >= 0);
		return 0;
	}
	default:
		break;
	}
	if (rc || *out) {
		free(x);
		free(y);
		return rc;
	}
	if (is_int(a) && is_int(b)) {
		long long u = int_of(a), v = int_of(b), w;

		switch (op) {
		case CB_ADD: rc = __builtin_add_overflow(u, v, &w); break;
		case CB_SUB: rc = __builtin_sub_overflow(u, v, &w); break;
		case CB_MUL: rc = __builtin_mul_overflow(u, v, &w); break;
		default:
			if (!v)
				return rfail(r, NX_ECHECK, line, "integer division or modulo by zero");
			if (u == -__LONG_LONG_MAX__ - 1 && v == -1)
				return rfail(r, NX_ECHECK, line, "integer overflow");
			w = u / v;
			if ((u % v) && ((u < 0) != (v < 0)))
				w--; /* Python floors */
			if (op == CB_MOD)
				w = u - w * v;
		}
		if (rc)
			return rfail(r, NX_ECHECK, line, "integer overflow");
		*out = json_integer(w);
		return *out ? 0 : nx_error_oom(r->err, r->t->path);
	}
	if (op == CB_ADD && a && b && json_is_string(a) && json_is_string(b))
		return binop(r, CB_CONCAT, a, b, line, out);
	if (op == CB_ADD && a && b && json_is_array(a) && json_is_array(b)) {
		if (json_array_size(a) + json_array_size(b) > NX_CHAT_LOOP_MAX)
			return rfail(r, NX_ELIMIT, line, "a list would exceed %u items", NX_CHAT_LOOP_MAX);
		if (!(*out = json_copy(a)) || json_array_extend(*out, b))
			return nx_error_oom(r->err, r->t->path);
		return 0;
	}
	if (op == CB_MUL && ((json_is_string(a) && is_int(b)) || (is_int(a) && json_is_string(b)))) {
		json_t *s = json_is_string(a) ? a : b;
		long long k = int_of(json_is_string(a) ? b : a), i;
		size_t n = json_string_length(s);
		char *buf;

		if (k < 0)
			k = 0;
		if (n && (unsigned long long)k > NX_CHAT_OUTPUT_MAX / n)
			return rfail(r, NX_ELIMIT, line, "a string would exceed %u bytes", NX_CHAT_OUTPUT_MAX);
		if (!(buf = malloc(n * (size_t)k + 1)))
			return nx_error_oom(r->err, r->t->path);
		for (i = 0; i < k; i++)
			memcpy(buf + (size_t)i * n, json_string_value(s), n);
		*out = new_str(buf, n * (size_t)k);
		free(buf);
		return *out ? 0 : nx_error_oom(r->err, r->t->path);
	}
	return rfail(r, NX_ECHECK, line, "unsupported operand types: %s and %s", type_name(r, a),
		     type_name(r, b));
}

/* ---- strings ---- */

static bool in_chars(const char *set, size_t setn, const char *s, size_t n, size_t i, size_t *clen)
{
	size_t k = 0, c;

	if (!set)
		return nx_chat__is_space(s, n, i, clen);
	for (*clen = 1; i + *clen < n && ((unsigned char)s[i + *clen] & 0xc0) == 0x80; (*clen)++)
		;
	while (k < setn) {
		for (c = 1; k + c < setn && ((unsigned char)set[k + c] & 0xc0) == 0x80; c++)
			;
		if (c == *clen && !memcmp(set + k, s + i, c))
			return true;
		k += c;
	}
	return false;
}

/* str.strip / lstrip / rstrip, of whitespace or of the characters in `set` */
static json_t *strip(const char *s, size_t n, const char *set, size_t setn, bool left, bool right)
{
	size_t a = 0, b = n, clen;

	while (left && a < b && in_chars(set, setn, s, n, a, &clen))
		a += clen;
	while (right && b > a) {
		size_t st = b - 1;

		while (st > a && ((unsigned char)s[st] & 0xc0) == 0x80)
			st--;
		if (!in_chars(set, setn, s, n, st, &clen))
			break;
		b = st;
	}
	return new_str(s + a, b - a);
}

static json_t *replace(const char *s, size_t n, const char *old, size_t on, const char *nw, size_t nn,
		       long long count)
{
	char *buf = NULL;
	size_t cap = n + 1, k = 0, i = 0;
	json_t *res;

	if (!(buf = malloc(cap)))
		return NULL;
	while (i < n) {
		const char *hit = count ? memmem(s + i, n - i, old, on) : NULL;
		size_t pre = hit ? (size_t)(hit - s) - i : n - i, need = k + pre + (hit ? nn : 0) + 1;

		if (need > NX_CHAT_OUTPUT_MAX) {
			free(buf);
			return NULL;
		}
		if (nx_array_grow(&buf, &cap, need, 1, NX_CHAT_OUTPUT_MAX)) {
			free(buf);
			return NULL;
		}
		memcpy(buf + k, s + i, pre);
		k += pre;
		i += pre;
		if (!hit)
			break;
		memcpy(buf + k, nw, nn);
		k += nn;
		i += on;
		if (count > 0)
			count--;
	}
	res = new_str(buf, k);
	free(buf);
	return res;
}

static json_t *split(const char *s, size_t n, const char *sep, size_t sn)
{
	json_t *res = json_array();
	size_t i = 0, clen;

	while (res && i <= n) {
		size_t j;

		if (!sep) {
			i = nx_chat__space_after(s, n, i);
			if (i >= n)
				break;
			for (j = i; j < n && !nx_chat__is_space(s, n, j, &clen); j++)
				;
		} else {
			const char *hit = memmem(s + i, n - i, sep, sn);

			j = hit ? (size_t)(hit - s) : n;
		}
		if (json_array_append_new(res, new_str(s + i, j - i))) {
			json_decref(res);
			return NULL;
		}
		i = j + (sep ? sn : 0);
		if (sep && j == n)
			break;
	}
	return res;
}

/* ---- filters, tests, methods, calls ---- */

static const json_t *arg(json_t **args, char **kw, size_t nargs, size_t pos, const char *name, bool *given)
{
	size_t i, p = 0;

	for (i = 0; i < nargs; i++) {
		if (kw && kw[i]) {
			if (!strcmp(kw[i], name)) {
				*given = true;
				return args[i];
			}
		} else if (p++ == pos) {
			*given = true;
			return args[i];
		}
	}
	*given = false;
	return NULL;
}

static int filter(struct rctx *r, const struct chat_expr *e, json_t *v, json_t **args, json_t **out)
{
	const char *f = e->name;
	const json_t *x, *y;
	bool g1, g2;
	char *s = NULL;
	size_t n, i;
	int rc = 0;

	*out = NULL;
	if (view_of(r, v) && strcmp(f, "list") && strcmp(f, "join") && strcmp(f, "first") &&
	    strcmp(f, "default") && strcmp(f, "d") && strcmp(f, "reverse") &&
	    (view_of(r, v) == 2 || (strcmp(f, "length") && strcmp(f, "count") && strcmp(f, "last"))))
		return rfail(r, NX_ECHECK, e->line, "the filter '%s' on a dict view, range or iterator "
			     "is not supported", f);
	if (!strcmp(f, "default") || !strcmp(f, "d")) {
		x = arg(args, e->kw, e->nargs, 0, "default_value", &g1);
		y = arg(args, e->kw, e->nargs, 1, "boolean", &g2);
		if (!v || (g2 && nx_chat__truthy(y) && !truthy(r, v)))
			*out = g1 ? json_incref((json_t *)x) : new_str("", 0);
		else
			*out = json_incref(v);
		return 0;
	}
	if (!strcmp(f, "length") || !strcmp(f, "count")) {
		if (!v)
			n = 0;
		else if (json_is_string(v))
			n = nx_chat__utf8_len(json_string_value(v), json_string_length(v));
		else if (json_is_array(v))
			n = json_array_size(v);
		else if (json_is_object(v) && !is_special(r, v))
			n = json_object_size(v);
		else
			return rfail(r, NX_ECHECK, e->line, "a %s has no length", type_name(r, v));
		*out = json_integer((json_int_t)n);
		return 0;
	}
	if (!strcmp(f, "tojson")) {
		const char *why = NULL;
		int indent = -1;

		x = arg(args, e->kw, e->nargs, 0, "indent", &g1);
		if (g1 && x && !json_is_null(x)) {
			if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > 16)
				return rfail(r, NX_ECHECK, e->line, "tojson: indent must be an integer 0..16");
			indent = (int)json_integer_value(x);
		}
		for (i = 0; i < e->nargs; i++)
			if (!e->kw || !e->kw[i] || strcmp(e->kw[i], "indent"))
				if (i > 0 || (e->kw && e->kw[i]))
					return rfail(r, NX_ECHECK, e->line, "tojson: only indent is supported");
		if (is_special(r, v))
			return rfail(r, NX_ECHECK, e->line, "tojson of a namespace or loop object");
		rc = nx_chat__tojson(v, indent, &s, &n, &why);
		if (rc == NX_ENOMEM)
			return nx_error_oom(r->err, r->t->path);
		if (rc)
			return rfail(r, rc, e->line, "%s", why ? why : "tojson failed");
		*out = new_str(s, n);
		free(s);
		return 0;
	}
	if (!strcmp(f, "items")) {
		const char *k;
		json_t *val;

		if (!(*out = json_array()))
			return NX_ENOMEM;
		if (!v)
			return 0;
		if (!json_is_object(v) || is_special(r, v))
			return rfail(r, NX_ECHECK, e->line, "items of a %s", type_name(r, v));
		json_object_foreach(v, k, val)
			if (json_array_append_new(*out, json_pack("[sO]", k, val)))
				return NX_ENOMEM;
		return mark_view(r, *out, 2, e->line);
	}
	if (!strcmp(f, "first") || !strcmp(f, "last")) {
		bool first = f[0] == 'f';

		if (!v)
			return 0;
		if (json_is_array(v))
			*out = json_incref(json_array_get(v, first ? 0 : json_array_size(v) - 1));
		else if (json_is_string(v))
			*out = char_at(json_string_value(v), json_string_length(v), first ? 0 : -1);
		else
			return rfail(r, NX_ECHECK, e->line, "%s of a %s", f, type_name(r, v));
		return 0;
	}
	if (!strcmp(f, "list") || !strcmp(f, "reverse")) {
		json_t *l;

		if (!v && f[0] == 'l')
			return (*out = json_array()) ? 0 : NX_ENOMEM;
		if (v && json_is_array(v)) {
			l = json_copy(v);
		} else if (v && json_is_string(v)) {
			const char *str = json_string_value(v);
			size_t len = json_string_length(v), cps = nx_chat__utf8_len(str, len);

			l = json_array();
			for (i = 0; l && i < cps; i++)
				if (json_array_append_new(l, char_at(str, len, (long long)i)))
					return NX_ENOMEM;
		} else if (v && json_is_object(v) && !is_special(r, v) && f[0] == 'l') {
			const char *k;
			json_t *val;

			l = json_array();
			json_object_foreach(v, k, val)
				if (l && json_array_append_new(l, json_string(k)))
					return NX_ENOMEM;
		} else {
			return rfail(r, NX_ECHECK, e->line, "%s of a %s", f, type_name(r, v));
		}
		if (!l)
			return NX_ENOMEM;
		if (f[0] == 'r') {
			size_t m = json_array_size(l);
			json_t *rev = json_array();

			for (i = m; rev && i > 0; i--)
				json_array_append(rev, json_array_get(l, i - 1));
			json_decref(l);
			if (!rev)
				return NX_ENOMEM;
			if (json_is_string(v)) {
				json_t *sv = NULL;

				rc = 0;
				s = NULL;
				l = rev;
				for (i = 0; i < m && !rc; i++) {
					json_t *nv = NULL;

					rc = binop(r, CB_CONCAT, sv, json_array_get(l, i), e->line, &nv);
					json_decref(sv);
					sv = nv;
				}
				json_decref(l);
				*out = sv ? sv : new_str("", 0);
				return rc;
			}
			*out = rev;
			return mark_view(r, rev, 2, e->line);
		}
		*out = l;
		return 0;
	}
	if (!strcmp(f, "join")) {
		json_t *acc = new_str("", 0), *sep;
		bool gs;

		x = arg(args, e->kw, e->nargs, 0, "d", &gs);
		sep = gs ? (json_t *)x : NULL;
		if (v && json_is_string(v)) {
			json_t *l = NULL;
			struct chat_expr le = *e;

			le.name = (char *)"list";
			le.nargs = 0;
			if ((rc = filter(r, &le, v, NULL, &l))) {
				json_decref(acc);
				return rc;
			}
			rc = filter(r, e, l, args, out);
			json_decref(l);
			json_decref(acc);
			return rc;
		}
		if (v && !json_is_array(v)) {
			json_decref(acc);
			return rfail(r, NX_ECHECK, e->line, "join of a %s", type_name(r, v));
		}
		for (i = 0; v && i < json_array_size(v) && !rc; i++) {
			json_t *nv = NULL;

			if (i && sep) {
				rc = binop(r, CB_CONCAT, acc, sep, e->line, &nv);
				json_decref(acc);
				acc = nv;
				nv = NULL;
			}
			if (!rc)
				rc = binop(r, CB_CONCAT, acc, json_array_get(v, i), e->line, &nv);
			json_decref(acc);
			acc = nv;
		}
		*out = acc;
		return rc;
	}
	/* trim, string, replace: on str(value) */
	if ((rc = to_str(r, v, e->line, &s, &n)))
		return rc;
	if (!strcmp(f, "string")) {
		*out = new_str(s, n);
	} else if (!strcmp(f, "trim")) {
		x = arg(args, e->kw, e->nargs, 0, "chars", &g1);
		if (g1 && x && !json_is_null(x) && !json_is_string(x))
			rc = rfail(r, NX_ECHECK, e->line, "trim: chars must be a string");
		else
			*out = g1 && json_is_string(x) ?
				       strip(s, n, json_string_value(x), json_string_length(x), true, true) :
				       strip(s, n, NULL, 0, true, true);
	} else { /* replace */
		const json_t *cnt;
		bool g3;

		x = arg(args, e->kw, e->nargs, 0, "old", &g1);
		y = arg(args, e->kw, e->nargs, 1, "new", &g2);
		cnt = arg(args, e->kw, e->nargs, 2, "count", &g3);
		if (!json_is_string(x) || !json_is_string(y) || !json_string_length(x) ||
		    (g3 && !json_is_null(cnt) && !json_is_integer(cnt)))
			rc = rfail(r, NX_ECHECK, e->line, "replace needs two strings (the first not empty)");
		else if (!(*out = replace(s, n, json_string_value(x), json_string_length(x), json_string_value(y),
					  json_string_length(y), g3 && json_is_integer(cnt) ? json_integer_value(cnt) : -1)))
			rc = rfail(r, NX_ELIMIT, e->line, "replace: the string would exceed %u bytes",
				   NX_CHAT_OUTPUT_MAX);
	}
	free(s);
	if (!rc && !*out)
		rc = nx_error_oom(r->err, r->t->path);
	return rc;
}

static int test(struct rctx *r, const struct chat_expr *e, json_t *v, bool *res)
{
	const char *t = e->name;
	bool sp = is_special(r, v) || view_of(r, v);

	if (!strcmp(t, "defined") || !strcmp(t, "undefined"))
		*res = (v != NULL) == (t[0] == 'd');
	else if (!strcmp(t, "none"))
		*res = v && json_is_null(v);
	else if (!strcmp(t, "string"))
		*res = v && json_is_string(v);
	else if (!strcmp(t, "number"))
		*res = v && (json_is_number(v) || json_is_boolean(v));
	else if (!strcmp(t, "integer"))
		*res = v && json_is_integer(v);
	else if (!strcmp(t, "boolean"))
		*res = v && json_is_boolean(v);
	else if (!strcmp(t, "true"))
		*res = v && json_is_true(v);
	else if (!strcmp(t, "false"))
		*res = v && json_is_false(v);
	else if (!strcmp(t, "mapping"))
		*res = v && json_is_object(v) && !sp;
	else if (!strcmp(t, "sequence"))
		*res = view_of(r, v) == 1 || (!sp && (!v || json_is_string(v) || json_is_array(v) || json_is_object(v)));
	else if (!strcmp(t, "iterable"))
		*res = !v || json_is_string(v) || json_is_array(v) || json_is_object(v);
	else if (is_int(v) && (!strcmp(t, "odd") || !strcmp(t, "even")))
		*res = (int_of(v) % 2 != 0) == (t[0] == 'o');
	else
		return rfail(r, NX_ECHECK, e->line, "the test '%s' on a %s", t, type_name(r, v));
	if (e->nargs)
		return rfail(r, NX_ECHECK, e->line, "the test '%s' takes no argument", t);
	*res ^= e->negate;
	return 0;
}

static int method(struct rctx *r, const struct chat_expr *e, json_t *v, json_t **args, json_t **out)
{
	const char *m = e->name;
	const json_t *x, *y;
	bool g1, g2;

	*out = NULL;
	if (view_of(r, v))
		return rfail(r, NX_ECHECK, e->line, "a dict view, range or iterator has no method '%s'", m);
	if (v && json_is_string(v)) {
		const char *s = json_string_value(v);
		size_t n = json_string_length(v);

		x = arg(args, e->kw, e->nargs, 0, "", &g1);
		if (!strcmp(m, "strip") || !strcmp(m, "lstrip") || !strcmp(m, "rstrip")) {
			if (g1 && x && !json_is_null(x) && !json_is_string(x))
				return rfail(r, NX_ECHECK, e->line, "%s: chars must be a string", m);
			*out = g1 && json_is_string(x) ?
				       strip(s, n, json_string_value(x), json_string_length(x), m[0] != 'r', m[0] != 'l') :
				       strip(s, n, NULL, 0, m[0] != 'r', m[0] != 'l');
		} else if (!strcmp(m, "startswith") || !strcmp(m, "endswith")) {
			size_t k;

			if (!g1 || !json_is_string(x) || e->nargs != 1)
				return rfail(r, NX_ECHECK, e->line, "%s takes one string", m);
			k = json_string_length(x);
			*out = json_boolean(k <= n && !memcmp(m[0] == 's' ? s : s + n - k, json_string_value(x), k));
		} else if (!strcmp(m, "split")) {
			if (g1 && x && !json_is_null(x) && (!json_is_string(x) || !json_string_length(x)))
				return rfail(r, NX_ECHECK, e->line, "split: the separator must be a non-empty string");
			if (e->nargs > 1)
				return rfail(r, NX_ECHECK, e->line, "split: maxsplit is not supported");
			*out = g1 && json_is_string(x) ? split(s, n, json_string_value(x), json_string_length(x)) :
							 split(s, n, NULL, 0);
		} else if (!strcmp(m, "replace")) {
			y = arg(args, e->kw, e->nargs, 1, "", &g2);
			if (!g1 || !g2 || !json_is_string(x) || !json_is_string(y) || !json_string_length(x) ||
			    e->nargs > 2)
				return rfail(r, NX_ECHECK, e->line, "replace needs two strings (the first not empty)");
			if (!(*out = replace(s, n, json_string_value(x), json_string_length(x), json_string_value(y),
					     json_string_length(y), -1)))
				return rfail(r, NX_ELIMIT, e->line, "replace: the string is too long");
		} else {
			return rfail(r, NX_ECHECK, e->line, "str has no method '%s'", m);
		}
		return *out ? 0 : nx_error_oom(r->err, r->t->path);
	}
	if (v && json_is_object(v) && !is_special(r, v)) {
		const char *k;
		json_t *val;

		if (!strcmp(m, "get")) {
			x = arg(args, e->kw, e->nargs, 0, "", &g1);
			y = arg(args, e->kw, e->nargs, 1, "", &g2);
			if (!g1 || e->nargs > 2)
				return rfail(r, NX_ECHECK, e->line, "get takes a key and an optional default");
			val = json_is_string(x) ? json_object_get(v, json_string_value(x)) : NULL;
			*out = json_incref(val ? val : g2 ? (json_t *)y : json_null());
			return 0;
		}
		if (e->nargs)
			return rfail(r, NX_ECHECK, e->line, "%s takes no argument", m);
		if (!strcmp(m, "items") || !strcmp(m, "keys") || !strcmp(m, "values")) {
			if (!(*out = json_array()))
				return NX_ENOMEM;
			json_object_foreach(v, k, val) {
				json_t *item = m[0] == 'i' ? json_pack("[sO]", k, val) :
					       m[0] == 'k' ? json_string(k) : json_incref(val);

				if (json_array_append_new(*out, item))
					return nx_error_oom(r->err, r->t->path);
			}
			return mark_view(r, *out, 1, e->line);
		}
	}
	return rfail(r, NX_ECHECK, e->line, "a %s has no method '%s'", type_name(r, v), m);
}

static int call(struct rctx *r, const struct chat_expr *e, json_t **args, json_t **out)
{
	size_t i;

	*out = NULL;
	if (!strcmp(e->name, "raise_exception")) {
		char *s = NULL;
		size_t n;
		int rc;

		if (e->nargs != 1 || (rc = to_str(r, args[0], e->line, &s, &n)))
			return rfail(r, NX_ECHECK, e->line, "the template raised an exception");
		rc = rfail(r, NX_ECHECK, e->line, "the template raised: %s", s);
		free(s);
		return rc;
	}
	if (!strcmp(e->name, "namespace")) {
		if (r->nspecial == CHAT_SPECIAL_MAX)
			return rfail(r, NX_ELIMIT, e->line, "more than %d namespace() calls", CHAT_SPECIAL_MAX);
		if (!(*out = json_object()))
			return NX_ENOMEM;
		for (i = 0; i < e->nargs; i++) {
			if (!e->kw || !e->kw[i])
				return rfail(r, NX_ECHECK, e->line, "namespace() takes keyword arguments only");
			if (json_object_set(*out, e->kw[i], args[i] ? args[i] : json_null()))
				return NX_ENOMEM;
		}
		r->special[r->nspecial++] = json_incref(*out);
		return 0;
	}
	/* range */
	{
		long long a = 0, b, st = 1, k;

		for (i = 0; i < e->nargs; i++)
			if (!is_int(args[i]) || (e->kw && e->kw[i]))
				return rfail(r, NX_ECHECK, e->line, "range() takes 1 to 3 integers");
		if (e->nargs < 1 || e->nargs > 3)
			return rfail(r, NX_ECHECK, e->line, "range() takes 1 to 3 integers");
		b = int_of(args[0]);
		if (e->nargs > 1) {
			a = b;
			b = int_of(args[1]);
		}
		if (e->nargs > 2 && !(st = int_of(args[2])))
			return rfail(r, NX_ECHECK, e->line, "range() step must not be zero");
		if (!(*out = json_array()))
			return NX_ENOMEM;
		for (k = a; st > 0 ? k < b : k > b; k += st) {
			if (json_array_size(*out) >= NX_CHAT_LOOP_MAX)
				return rfail(r, NX_ELIMIT, e->line, "range() of more than %u items", NX_CHAT_LOOP_MAX);
			if (json_array_append_new(*out, json_integer(k)))
				return NX_ENOMEM;
		}
		return mark_view(r, *out, 1, e->line);
	}
}

static int eval_args(struct rctx *r, const struct chat_expr *e, json_t ***out)
{
	json_t **a = calloc(e->nargs + 1, sizeof(*a));
	size_t i;
	int rc = 0;

	if (!a)
		return nx_error_oom(r->err, r->t->path);
	for (i = 0; i < e->nargs && !rc; i++)
		if (e->args[i])
			rc = eval(r, e->args[i], &a[i]);
	*out = a;
	return rc;
}

static void free_args(json_t **a, size_t n)
{
	size_t i;

	for (i = 0; a && i < n; i++)
		json_decref(a[i]);
	free(a);
}

static int eval(struct rctx *r, const struct chat_expr *e, json_t **out)
{
	json_t *a = NULL, *b = NULL, **args = NULL;
	bool res;
	int rc = 0;

	*out = NULL;
	switch (e->kind) {
	case CE_LIT:
		*out = json_incref(e->lit);
		return 0;
	case CE_NAME:
		*out = json_incref(lookup(r, e->name));
		return 0;
	case CE_ATTR:
		if ((rc = eval(r, e->a, &a)))
			break;
		if (!a) {
			rc = rfail(r, NX_ECHECK, e->line, "'.%s' of an undefined value", e->name);
		} else if (view_of(r, a)) {
			rc = rfail(r, NX_ECHECK, e->line, "'.%s' of a dict view, range or iterator", e->name);
		} else if (json_is_object(a)) {
			*out = json_incref(json_object_get(a, e->name));
			if (!is_special(r, a) && dict_method(e->name))
				rc = rfail(r, NX_ECHECK, e->line, "'.%s' is a dict method; call it", e->name);
		} else if (json_is_string(a) && (!strcmp(e->name, "strip") || !strcmp(e->name, "split") ||
						   !strcmp(e->name, "startswith") || !strcmp(e->name, "endswith"))) {
			rc = rfail(r, NX_ECHECK, e->line, "'.%s' is a string method; call it", e->name);
		}
		break;
	case CE_INDEX:
		if (!(rc = eval(r, e->a, &a)) && !(rc = eval(r, e->b, &b)))
			rc = get_item(r, a, b, e->line, out);
		break;
	case CE_SLICE:
		return slice(r, e, out);
	case CE_LIST: case CE_DICT: {
		size_t i;

		if ((rc = eval_args(r, e, &args)))
			break;
		if (!(*out = e->kind == CE_LIST ? json_array() : json_object())) {
			rc = NX_ENOMEM;
			break;
		}
		for (i = 0; i < e->nargs && !rc; i += e->kind == CE_LIST ? 1 : 2) {
			json_t *v = e->kind == CE_LIST ? args[i] : args[i + 1];

			if (!v || is_special(r, v))
				rc = rfail(r, NX_ECHECK, e->line, "an undefined or special value in a literal");
			else if (e->kind == CE_LIST)
				rc = json_array_append(*out, v) ? NX_ENOMEM : 0;
			else if (!json_is_string(args[i]))
				rc = rfail(r, NX_ECHECK, e->line, "dict keys must be strings");
			else
				rc = json_object_set(*out, json_string_value(args[i]), v) ? NX_ENOMEM : 0;
		}
		break;
	}
	case CE_NOT:
		if (!(rc = eval(r, e->a, &a)))
			*out = json_boolean(!truthy(r, a));
		break;
	case CE_NEG:
		if ((rc = eval(r, e->a, &a)))
			break;
		if (!is_int(a) || int_of(a) == -__LONG_LONG_MAX__ - 1)
			rc = rfail(r, NX_ECHECK, e->line, "bad operand for unary -: %s", type_name(r, a));
		else
			*out = json_integer(-int_of(a));
		break;
	case CE_AND: case CE_OR:
		if ((rc = eval(r, e->a, &a)))
			break;
		if (truthy(r, a) == (e->kind == CE_OR)) {
			*out = a;
			return 0;
		}
		json_decref(a);
		return eval(r, e->b, out);
	case CE_COND:
		if ((rc = eval(r, e->b, &a)))
			break;
		if (truthy(r, a))
			rc = eval(r, e->a, out);
		else if (e->c)
			rc = eval(r, e->c, out);
		break;
	case CE_BIN:
		if (!(rc = eval(r, e->a, &a)) && !(rc = eval(r, e->b, &b)))
			rc = binop(r, e->op, a, b, e->line, out);
		break;
	case CE_FILTER:
		if (!(rc = eval(r, e->a, &a)) && !(rc = eval_args(r, e, &args)))
			rc = filter(r, e, a, args, out);
		break;
	case CE_TEST:
		if (!(rc = eval(r, e->a, &a)) && !(rc = test(r, e, a, &res)))
			*out = json_boolean(res);
		break;
	case CE_METHOD:
		if (!(rc = eval(r, e->a, &a)) && !(rc = eval_args(r, e, &args)))
			rc = method(r, e, a, args, out);
		break;
	case CE_CALL:
		if (!(rc = eval_args(r, e, &args)))
			rc = call(r, e, args, out);
		break;
	default:
		rc = rfail(r, NX_EINTERNAL, e->line, "unknown expression kind %d", e->kind);
	}
	json_decref(a);
	json_decref(b);
	free_args(args, e->nargs);
	if (rc) {
		json_decref(*out);
		*out = NULL;
	}
	return rc;
}

/* ---- statements ---- */

static int exec_body(struct rctx *r, const struct chat_body *b);

static int iterable(struct rctx *r, json_t *v, int line, json_t **out)
{
	json_t *l = NULL;
	struct chat_expr fake = { .kind = CE_FILTER, .line = line, .name = (char *)"list" };

	*out = NULL;
	if (v && json_is_array(v)) {
		*out = json_incref(v);
		return 0;
	}
	if (v && (is_special(r, v) || (!json_is_string(v) && !json_is_object(v))))
		return rfail(r, NX_ECHECK, line, "a %s is not iterable", type_name(r, v));
	if (filter(r, &fake, v, NULL, &l))
		return r->err ? r->err->code : NX_ECHECK;
	*out = l;
	return 0;
}

static int bind(struct rctx *r, const struct chat_node *n, json_t *vars, json_t *item)
{
	size_t i;

	if (n->nvars == 1)
		return json_object_set(vars, n->vars[0], item ? item : json_null()) ? NX_ENOMEM : 0;
	if (!item || !json_is_array(item) || json_array_size(item) != n->nvars)
		return rfail(r, NX_ECHECK, n->line, "cannot unpack a %s into %zu loop variables",
			     type_name(r, item), n->nvars);
	for (i = 0; i < n->nvars; i++)
		if (json_object_set(vars, n->vars[i], json_array_get(item, i)))
			return NX_ENOMEM;
	return 0;
}

static int exec_for(struct rctx *r, const struct chat_node *n)
{
	json_t *v = NULL, *items = NULL, *kept = NULL, *loop = NULL;
	struct scope sc = { NULL, r->sc };
	size_t i, len;
	int rc;

	if ((rc = eval(r, n->e, &v)) || (rc = iterable(r, v, n->line, &items)))
		goto out_free;
	if (n->filter) {
		if (!(kept = json_array()))
			goto oom;
		for (i = 0; i < json_array_size(items) && !rc; i++) {
			json_t *ok = NULL;

			/* a filtered item costs an iteration too: loops of filters stay bounded */
			if (++r->iterations > NX_CHAT_LOOP_MAX) {
				rc = rfail(r, NX_ELIMIT, n->line, "more than %u loop iterations", NX_CHAT_LOOP_MAX);
				break;
			}
			if (!(sc.vars = json_object()))
				goto oom;
			r->sc = &sc;
			if (!(rc = bind(r, n, sc.vars, json_array_get(items, i))) &&
			    !(rc = eval(r, n->filter, &ok)) && truthy(r, ok))
				rc = json_array_append(kept, json_array_get(items, i)) ? NX_ENOMEM : 0;
			json_decref(ok);
			r->sc = sc.up;
			json_decref(sc.vars);
			sc.vars = NULL;
		}
		if (rc)
			goto out_free;
		json_decref(items);
		items = kept;
		kept = NULL;
	}
	len = json_array_size(items);
	if (!len) {
		rc = exec_body(r, &n->orelse);
		goto out_free;
	}
	if (r->nspecial == CHAT_SPECIAL_MAX) {
		rc = rfail(r, NX_ELIMIT, n->line, "loops nest too deep");
		goto out_free;
	}
	for (i = 0; i < len && !rc; i++) {
		if (++r->iterations > NX_CHAT_LOOP_MAX) {
			rc = rfail(r, NX_ELIMIT, n->line, "more than %u loop iterations", NX_CHAT_LOOP_MAX);
			break;
		}
		loop = json_pack("{sIsIsIsIsbsbsI}", "index", (json_int_t)i + 1, "index0", (json_int_t)i,
				 "revindex", (json_int_t)(len - i), "revindex0", (json_int_t)(len - i - 1),
				 "first", i == 0, "last", i + 1 == len, "length", (json_int_t)len);
		if (!loop || !(sc.vars = json_object()))
			goto oom;
		if ((i > 0 && json_object_set(loop, "previtem", json_array_get(items, i - 1))) ||
		    (i + 1 < len && json_object_set(loop, "nextitem", json_array_get(items, i + 1))) ||
		    json_object_set(sc.vars, "loop", loop))
			goto oom;
		r->special[r->nspecial++] = loop;
		r->sc = &sc;
		rc = bind(r, n, sc.vars, json_array_get(items, i));
		if (!rc)
			rc = exec_body(r, &n->body);
		r->sc = sc.up;
		r->nspecial--;
		json_decref(sc.vars);
		sc.vars = NULL;
		json_decref(loop);
		loop = NULL;
		if (r->flow == 1) {
			r->flow = 0;
			break;
		}
		r->flow = 0;
	}
	goto out_free;
oom:
	rc = nx_error_oom(r->err, r->t->path);
	r->sc = sc.up;
out_free:
	json_decref(sc.vars);
	json_decref(loop);
	json_decref(kept);
	json_decref(items);
	json_decref(v);
	return rc;
}

static int exec_set(struct rctx *r, const struct chat_node *n)
{
	json_t *v = NULL, *ns;
	int rc;

	if ((rc = eval(r, n->e, &v)))
		return rc;
	if (!n->vars[1]) {
		json_t *vars = r->sc->vars;

		rc = json_object_set(vars, n->vars[0], v ? v : json_null()) ? NX_ENOMEM : 0;
		/* Jinja stores the Undefined itself; null stands in for it only if defined */
		if (!rc && !v)
			json_object_del(vars, n->vars[0]), rc = 0;
		json_decref(v);
		return rc;
	}
	ns = lookup(r, n->vars[0]);
	if (!ns || !json_is_object(ns) || !is_special(r, ns) || json_object_get(ns, "index0"))
		rc = rfail(r, NX_ECHECK, n->line, "set %s.%s: '%s' is not a namespace()", n->vars[0],
			   n->vars[1], n->vars[0]);
	else if (v && is_special(r, v) && json_object_get(v, "index0"))
		rc = rfail(r, NX_ECHECK, n->line, "storing a loop object is not supported");
	else if (!v)
		rc = rfail(r, NX_ECHECK, n->line, "storing an undefined value in a namespace is not supported");
	else
		rc = json_object_set(ns, n->vars[1], v) ? NX_ENOMEM : 0;
	json_decref(v);
	return rc;
}

static int exec_body(struct rctx *r, const struct chat_body *b)
{
	size_t i;
	int rc = 0;

	for (i = 0; i < b->n && !rc && !r->flow; i++) {
		const struct chat_node *n = b->v[i];
		json_t *v = NULL;
		char *s = NULL;
		size_t len;

		switch (n->kind) {
		case CN_TEXT:
			rc = put(r, n->text, n->len, n->line);
			break;
		case CN_OUT:
			if (!(rc = eval(r, n->e, &v)) && !(rc = to_str(r, v, n->line, &s, &len)))
				rc = put(r, s, len, n->line);
			free(s);
			break;
		case CN_IF:
			if (!(rc = eval(r, n->e, &v)))
				rc = exec_body(r, truthy(r, v) ? &n->body : &n->orelse);
			break;
		case CN_FOR:
			rc = exec_for(r, n);
			break;
		case CN_SET:
			rc = exec_set(r, n);
			break;
		case CN_BREAK:
			r->flow = 1;
			break;
		case CN_CONTINUE:
			r->flow = 2;
			break;
		}
		json_decref(v);
	}
	return rc;
}

int nx_chat_template_render(const nx_chat_template *t, const char *ctx_json, size_t len,
			    bool add_generation_prompt, char **out, size_t *out_len, nx_error *err)
{
	struct rctx *r = calloc(1, sizeof(*r));
	struct scope root = { NULL, NULL };
	json_error_t je;
	json_t *ctx = NULL, *v;
	const char *k;
	size_t i;
	int rc = 0;

	if (!r)
		return nx_error_oom(err, t->path);
	r->t = t;
	r->err = err;
	ctx = json_loadb(ctx_json, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
	if (!ctx) {
		rc = nx_error_set(err, NX_EFORMAT, NULL, je.line, je.position,
				  "the messages are not valid JSON (line %d: %s); give a JSON list of "
				  "{\"role\", \"content\"} objects", je.line, je.text);
		goto out_free;
	}
	if (json_is_array(ctx)) {
		json_t *o = json_pack("{sO}", "messages", ctx);

		json_decref(ctx);
		ctx = o;
	}
	if (!ctx || !json_is_object(ctx)) {
		rc = ctx ? nx_error_set(err, NX_EFORMAT, NULL, 0, -1,
					"the messages must be a JSON list, or an object holding \"messages\"")
			 : nx_error_oom(err, t->path);
		goto out_free;
	}
	json_object_foreach(t->globals, k, v)
		if (!json_object_get(ctx, k) && json_object_set(ctx, k, v))
			goto oom;
	if ((!json_object_get(ctx, "tools") && json_object_set_new(ctx, "tools", json_null())) ||
	    (!json_object_get(ctx, "documents") && json_object_set_new(ctx, "documents", json_null())) ||
	    json_object_set_new(ctx, "add_generation_prompt", json_boolean(add_generation_prompt)))
		goto oom;
	r->globals = ctx;
	if (!(root.vars = json_object()))
		goto oom;
	r->sc = &root;
	if ((rc = put(r, "", 0, 1)) || (rc = exec_body(r, &t->root)))
		goto out_free;
	*out = r->out.p;
	*out_len = r->out.n;
	r->out.p = NULL;
	goto out_free;
oom:
	rc = nx_error_oom(err, t->path);
out_free:
	for (i = 0; i < r->nspecial; i++)
		json_decref((json_t *)r->special[i]);
	for (i = 0; i < r->nviews; i++)
		json_decref((json_t *)r->views[i]);
	json_decref(root.vars);
	json_decref(ctx);
	free(r->out.p);
	free(r);
	return rc;
}

static json_t *token_text(json_t *v)
{
	if (json_is_object(v))
		v = json_object_get(v, "content");
	return json_is_string(v) ? v : NULL;
}

int nx_chat_template_from_config(nx_chat_template **out, const char *json, size_t len,
				 const char *path, nx_error *err)
{
	static const char *const SPECIAL[] = { "bos_token", "eos_token", "unk_token", "pad_token" };
	json_error_t je;
	json_t *cfg = json_loadb(json, len, 0, &je), *tmpl;
	nx_chat_template *t = NULL;
	size_t i;
	int rc;

	*out = NULL;
	if (!cfg || !json_is_object(cfg)) {
		json_decref(cfg);
		return nx_error_set(err, NX_EFORMAT, path, je.line, -1,
				    "%s is not a JSON object (line %d: %s)", path ? path : "tokenizer_config.json",
				    cfg ? 1 : je.line, cfg ? "not an object" : je.text);
	}
	tmpl = json_object_get(cfg, "chat_template");
	if (json_is_array(tmpl)) {
		json_t *item, *pick = NULL;

		json_array_foreach(tmpl, i, item)
			if (json_is_string(json_object_get(item, "name")) &&
			    !strcmp(json_string_value(json_object_get(item, "name")), "default"))
				pick = json_object_get(item, "template");
		tmpl = pick;
		if (!pick) {
			json_decref(cfg);
			return nx_error_set(err, NX_ECONFIG, path, 0, -1,
					    "%s: chat_template is a list without a template named \"default\"",
					    path ? path : "tokenizer_config.json");
		}
	}
	if (!tmpl || json_is_null(tmpl)) {
		json_decref(cfg);
		return 0;
	}
	if (!json_is_string(tmpl)) {
		json_decref(cfg);
		return nx_error_set(err, NX_ECONFIG, path, 0, -1, "%s: chat_template must be a string",
				    path ? path : "tokenizer_config.json");
	}
	rc = nx_chat_template_compile(&t, json_string_value(tmpl), json_string_length(tmpl), path, err);
	for (i = 0; !rc && i < 4; i++) {
		json_t *s = token_text(json_object_get(cfg, SPECIAL[i]));

		if (s && json_object_set(t->globals, SPECIAL[i], s))
			rc = nx_error_oom(err, path);
	}
	json_decref(cfg);
	if (rc) {
		nx_chat_template_free(t);
		return rc;
	}
	*out = t;
	return 0;
}

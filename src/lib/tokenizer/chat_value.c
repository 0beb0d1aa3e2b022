/*
 * chat_value.c - Python's behaviour on template values: truth, equality,
 * str(), json.dumps (as transformers' tojson calls it), code point counts
 * and str.isspace() whitespace, which is what Jinja's strip rules and the
 * trim filter use.
 */
#include "chat_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>


int nx_chat__sb_put(struct chat_sb *b, const char *s, size_t len)
{
	if (len > NX_CHAT_OUTPUT_MAX - b->n)
		return NX_ELIMIT;
	if (nx_array_grow(&b->p, &b->cap, b->n + len + 1, 1, NX_CHAT_OUTPUT_MAX + 1))
		return NX_ENOMEM;
	memcpy(b->p + b->n, s, len);
	b->n += len;
	b->p[b->n] = '\0';
	return 0;
}

bool nx_chat__truthy(const json_t *v)
{
	if (!v)
		return false;
	switch (json_typeof(v)) {
	case JSON_STRING: return json_string_length(v) > 0;
	case JSON_INTEGER: return json_integer_value(v) != 0;
	case JSON_REAL: return json_real_value(v) != 0.0;
	case JSON_TRUE: return true;
	case JSON_ARRAY: return json_array_size(v) > 0;
	case JSON_OBJECT: return json_object_size(v) > 0;
	default: return false;
	}
}

/* Python ==: True == 1, and containers compare item by item. */
bool nx_chat__equal(const json_t *a, const json_t *b)
{
	bool an, bn;

	if (!a || !b)
		return !a && !b;
	an = json_is_integer(a) || json_is_boolean(a);
	bn = json_is_integer(b) || json_is_boolean(b);
	if (an && bn) {
		long long x = json_is_integer(a) ? json_integer_value(a) : json_is_true(a);
		long long y = json_is_integer(b) ? json_integer_value(b) : json_is_true(b);

		return x == y;
	}
	return json_equal((json_t *)a, (json_t *)b);
}

/* One code point at s[i]; invalid UTF-8 counts as one byte. */
static unsigned decode(const char *s, size_t n, size_t i, size_t *clen)
{
	const unsigned char *u = (const unsigned char *)s + i;
	size_t left = n - i;

	if (u[0] < 0x80 || left < 2) {
		*clen = 1;
		return u[0];
	}
	if ((u[0] & 0xe0) == 0xc0) {
		*clen = 2;
		return ((u[0] & 0x1fu) << 6) | (u[1] & 0x3fu);
	}
	if ((u[0] & 0xf0) == 0xe0 && left >= 3) {
		*clen = 3;
		return ((u[0] & 0x0fu) << 12) | ((u[1] & 0x3fu) << 6) | (u[2] & 0x3fu);
	}
	if ((u[0] & 0xf8) == 0xf0 && left >= 4) {
		*clen = 4;
		return ((u[0] & 0x07u) << 18) | ((u[1] & 0x3fu) << 12) | ((u[2] & 0x3fu) << 6) |
		       (u[3] & 0x3fu);
	}
	*clen = 1;
	return u[0];
}

size_t nx_chat__utf8_len(const char *s, size_t n)
{
	size_t i, k = 0;

	for (i = 0; i < n; i++)
		if (((unsigned char)s[i] & 0xc0) != 0x80)
			k++;
	return k;
}

/* Byte offset of code point `cp` (n when past the end). */
size_t nx_chat__utf8_offset(const char *s, size_t n, size_t cp)
{
	size_t i;

	for (i = 0; i < n && cp; i++)
		if (i + 1 == n || ((unsigned char)s[i + 1] & 0xc0) != 0x80)
			cp--;
	return i;
}

/* str.isspace() of the code point at s[i] */
bool nx_chat__is_space(const char *s, size_t n, size_t i, size_t *clen)
{
	unsigned c = decode(s, n, i, clen);

	return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
	       c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
	       c == 0x202f || c == 0x205f || c == 0x3000;
}

/* Start of the whitespace run that ends at `end` (rstrip). */
size_t nx_chat__space_before(const char *s, size_t n, size_t end)
{
	while (end > 0) {
		size_t st = end - 1, clen;

		while (st > 0 && ((unsigned char)s[st] & 0xc0) == 0x80 && end - st < 4)
			st--;
		if (!nx_chat__is_space(s, n, st, &clen) || st + clen != end)
			break;
		end = st;
	}
	return end;
}

/* End of the whitespace run that starts at `start` (lstrip). */
size_t nx_chat__space_after(const char *s, size_t n, size_t start)
{
	size_t clen;

	while (start < n && nx_chat__is_space(s, n, start, &clen))
		start += clen;
	return start;
}

static int str_into(struct chat_sb *b, const json_t *v, const char **why)
{
	char num[32];

	if (!v)
		return 0;
	switch (json_typeof(v)) {
	case JSON_STRING:
		return nx_chat__sb_put(b, json_string_value(v), json_string_length(v));
	case JSON_INTEGER:
		snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(v));
		return nx_chat__sb_put(b, num, strlen(num));
	case JSON_TRUE: return nx_chat__sb_put(b, "True", 4);
	case JSON_FALSE: return nx_chat__sb_put(b, "False", 5);
	case JSON_NULL: return nx_chat__sb_put(b, "None", 4);
	case JSON_REAL:
		*why = "a float cannot be printed (Python's float repr is not supported)";
		return NX_ECHECK;
	default:
		*why = "a list or a mapping cannot be printed (use tojson)";
		return NX_ECHECK;
	}
}

int nx_chat__str(const json_t *v, char **out, size_t *len, const char **why)
{
	struct chat_sb b = { 0 };
	int rc = nx_chat__sb_put(&b, "", 0);

	if (!rc)
		rc = str_into(&b, v, why);
	if (rc) {
		free(b.p);
		return rc;
	}
	*out = b.p;
	*len = b.n;
	return 0;
}

static int json_str(struct chat_sb *b, const char *s, size_t n)
{
	size_t i, run = 0;
	char esc[8];
	int rc = nx_chat__sb_put(b, "\"", 1);

	for (i = 0; i < n && !rc; i++) {
		unsigned char c = (unsigned char)s[i];
		const char *e = NULL;

		switch (c) {
		case '"': e = "\\\""; break;
		case '\\': e = "\\\\"; break;
		case '\n': e = "\\n"; break;
		case '\r': e = "\\r"; break;
		case '\t': e = "\\t"; break;
		case '\b': e = "\\b"; break;
		case '\f': e = "\\f"; break;
		default:
			if (c < 0x20) {
				snprintf(esc, sizeof(esc), "\\u%04x", c);
				e = esc;
			}
		}
		if (!e)
			continue;
		rc = nx_chat__sb_put(b, s + run, i - run);
		if (!rc)
			rc = nx_chat__sb_put(b, e, strlen(e));
		run = i + 1;
	}
	if (!rc)
		rc = nx_chat__sb_put(b, s + run, n - run);
	return rc ? rc : nx_chat__sb_put(b, "\"", 1);
}

static int newline(struct chat_sb *b, int indent, int level)
{
	int rc = nx_chat__sb_put(b, "\n", 1), i;

	for (i = 0; i < indent * level && !rc; i++)
		rc = nx_chat__sb_put(b, " ", 1);
	return rc;
}

/* json.dumps(v, ensure_ascii=False, indent=indent) (indent < 0: None) */
static int json_into(struct chat_sb *b, const json_t *v, int indent, int level, const char **why)
{
	const char *sep = indent < 0 ? ", " : ",";
	size_t i, n;
	int rc = 0;

	if (level > NX_CHAT_DEPTH_MAX) {
		*why = "tojson: the value nests too deep";
		return NX_ELIMIT;
	}
	if (!v) {
		*why = "tojson of an undefined value";
		return NX_ECHECK;
	}
	switch (json_typeof(v)) {
	case JSON_STRING:
		return json_str(b, json_string_value(v), json_string_length(v));
	case JSON_TRUE: return nx_chat__sb_put(b, "true", 4);
	case JSON_FALSE: return nx_chat__sb_put(b, "false", 5);
	case JSON_NULL: return nx_chat__sb_put(b, "null", 4);
	case JSON_INTEGER: return str_into(b, v, why);
	case JSON_REAL:
		*why = "tojson of a float is not supported";
		return NX_ECHECK;
	case JSON_ARRAY:
		n = json_array_size(v);
		if (!n)
			return nx_chat__sb_put(b, "[]", 2);
		rc = nx_chat__sb_put(b, "[", 1);
		for (i = 0; i < n && !rc; i++) {
			if (i)
				rc = nx_chat__sb_put(b, sep, strlen(sep));
			if (!rc && indent >= 0)
				rc = newline(b, indent, level + 1);
			if (!rc)
				rc = json_into(b, json_array_get(v, i), indent, level + 1, why);
		}
		if (!rc && indent >= 0)
			rc = newline(b, indent, level);
		return rc ? rc : nx_chat__sb_put(b, "]", 1);
	case JSON_OBJECT: {
		const char *k;
		json_t *x;

		if (!json_object_size(v))
			return nx_chat__sb_put(b, "{}", 2);
		rc = nx_chat__sb_put(b, "{", 1);
		i = 0;
		json_object_foreach((json_t *)v, k, x) {
			if (rc)
				break;
			if (i++)
				rc = nx_chat__sb_put(b, sep, strlen(sep));
			if (!rc && indent >= 0)
				rc = newline(b, indent, level + 1);
			if (!rc)
				rc = json_str(b, k, strlen(k));
			if (!rc)
				rc = nx_chat__sb_put(b, ": ", 2);
			if (!rc)
				rc = json_into(b, x, indent, level + 1, why);
		}
		if (!rc && indent >= 0)
			rc = newline(b, indent, level);
		return rc ? rc : nx_chat__sb_put(b, "}", 1);
	}
	}
	return NX_EINTERNAL;
}

int nx_chat__tojson(const json_t *v, int indent, char **out, size_t *len, const char **why)
{
	struct chat_sb b = { 0 };
	int rc = nx_chat__sb_put(&b, "", 0);

	if (!rc)
		rc = json_into(&b, v, indent, 0, why);
	if (rc) {
		if (rc == NX_ELIMIT && !*why)
			*why = "tojson: the text is too long";
		free(b.p);
		return rc;
	}
	*out = b.p;
	*len = b.n;
	return 0;
}

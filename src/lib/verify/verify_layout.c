/*
 * verify_layout.c - what a JSON file's parse throws away, for the leak
 * budget.  tokenizer.json is charged by its grammar (verify_tokjson.c),
 * which reads parsed values; the bytes that spell them were free: the
 * whitespace between tokens, a string's escapes ("a" or "\u0061", "\/"),
 * a number's spelling (-1.5, -1.50, -15e-1).  Red team 6 put 64 KiB in
 * the whitespace after the commas of a 22-token tokenizer.json (charged
 * 126 bytes; the file can be 64 MiB).
 *
 * The layout residual is the whitespace and structural characters in file
 * order (a formatter's indentation is regular: zstd charges it nearly
 * nothing), plus, in full, every string or number not spelled as the
 * file's writer spells it.  Writers, each taken as a whole for the file:
 *   strings  minimal escapes (serde_json, jansson: only '"', '\\' and
 *            controls, controls as \b\f\n\r\t or \u00xx), or Python's
 *            json.dumps default (also DEL and non-ASCII as \uxxxx);
 *   numbers  integers without leading zeros or '+'; reals as the shortest
 *            round-trip digits, written as Python's repr or as serde_json's
 *            ryu writes them.
 * A hand-written file in another style is charged its strings or numbers.
 */
#include "verify_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nexus/budget.h"

enum { STR_MINIMAL = 1, STR_ASCII = 2, NUM_PY = 1, NUM_SERDE = 2 };

struct layout {
	size_t str_ok[3], num_ok[3], nstr, nnum;
	int str_style, num_style;   /* pass 2: the file's styles */
	nx_budget_buf *b;
	nx_error *err;
};

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Which writers spell string body s[0..n) (between the quotes) this way. */
static int string_styles(const char *s, size_t n)
{
	static const char shortesc[] = "\"\\bfnrt";
	int ok = STR_MINIMAL | STR_ASCII;
	size_t i = 0;

	while (i < n && ok) {
		unsigned char c = (unsigned char)s[i];

		if (c != '\\') {
			if (c >= 0x7f)
				ok &= ~STR_ASCII;   /* Python escapes DEL and non-ASCII */
			i++;
			continue;
		}
		if (i + 1 >= n)
			return 0;
		if (s[i + 1] != 'u') {
			/* \/ is no writer's; the short forms are everyone's */
			if (!strchr(shortesc, s[i + 1]) || !s[i + 1])
				return 0;
			i += 2;
			continue;
		}
		{
			int v = 0, k, h;

			if (i + 6 > n)
				return 0;
			for (k = 2; k < 6; k++) {
				if ((h = hexval(s[i + k])) < 0 || (s[i + k] >= 'A' && s[i + k] <= 'F'))
					return 0;   /* upper-case hex: no writer's */
				v = v * 16 + h;
			}
			/* a control without a short form is \u00xx for both; DEL,
			 * non-ASCII and surrogates are Python's alone */
			if (v < 0x20 && (v == 0 || !strchr("\b\f\n\r\t", v)))
				;
			else if (v >= 0x7f)
				ok &= ~STR_MINIMAL;
			else
				return 0;
			i += 6;
		}
	}
	return ok;
}

/* Shortest round-trip digits of d: *ndig digits into dig, decimal exponent
 * of the first. */
static void shortest(double d, char *dig, int *ndig, int *exp10)
{
	char tmp[40];
	int p, k = 0, lo = 1, hi = 17;
	char *e;

	/* round-tripping is monotonic in the precision: bisect (17 always does) */
	while (lo < hi) {
		p = lo + (hi - lo) / 2;
		snprintf(tmp, sizeof(tmp), "%.*e", p - 1, d);
		if (strtod(tmp, NULL) == d)
			hi = p;
		else
			lo = p + 1;
	}
	snprintf(tmp, sizeof(tmp), "%.*e", lo - 1, d);
	for (e = tmp; *e && *e != 'e'; e++)
		if (*e >= '0' && *e <= '9')
			dig[k++] = *e;
	while (k > 1 && dig[k - 1] == '0')
		k--;
	dig[k] = '\0';
	*ndig = k;
	*exp10 = (int)strtol(e + 1, NULL, 10);
}

/* d written by Python's repr (py) or serde_json/ryu (!py); out holds 64. */
static void real_form(char out[64], double d, bool py)
{
	char dig[24], pad[24];
	const char *sign = d < 0 || (d == 0 && signbit(d)) ? "-" : "";
	int n, x, lo = py ? -4 : -5;

	if (d == 0) {
		snprintf(out, 64, "%s0.0", sign);
		return;
	}
	shortest(fabs(d), dig, &n, &x);
	if (x >= lo && x < 16 && x < 0) {
		memset(pad, '0', (size_t)(-x - 1));
		pad[-x - 1] = '\0';
		snprintf(out, 64, "%s0.%s%s", sign, pad, dig);
	} else if (x >= lo && x < 16) {
		/* integer digits, padded with zeros; then the rest or "0" */
		int k = n > x + 1 ? x + 1 : n;

		memset(pad, '0', (size_t)(x + 1 - k));
		pad[x + 1 - k] = '\0';
		snprintf(out, 64, "%s%.*s%s.%s", sign, k, dig, pad, n > x + 1 ? dig + x + 1 : "0");
	} else if (py) {
		snprintf(out, 64, "%s%c%s%se%c%02d", sign, dig[0], n > 1 ? "." : "", dig + 1,
			 x < 0 ? '-' : '+', abs(x));
	} else {
		snprintf(out, 64, "%s%c%s%se%d", sign, dig[0], n > 1 ? "." : "", dig + 1, x);
	}
}

/* Which writers spell number s[0..n) this way (integers: all). */
static int number_styles(const char *s, size_t n)
{
	char raw[64], form[64];
	size_t i = s[0] == '-';
	bool real = false;
	int ok = 0;

	if (n >= sizeof(raw))
		return 0;
	for (; i < n; i++)
		if (s[i] == '.' || s[i] == 'e' || s[i] == 'E' || s[i] == '+')
			real = true;
	if (!real)   /* JSON integers: no leading zeros, no '+' (the parser checked) */
		return NUM_PY | NUM_SERDE;
	memcpy(raw, s, n);
	raw[n] = '\0';
	real_form(form, strtod(raw, NULL), true);
	if (!strcmp(form, raw))
		ok |= NUM_PY;
	real_form(form, strtod(raw, NULL), false);
	if (!strcmp(form, raw))
		ok |= NUM_SERDE;
	return ok;
}

static int emit(struct layout *l, const char *s, size_t n)
{
	return l->b ? nx_budget_add(l->b, s, n, l->err) : 0;
}

/* One pass over the text: counts (pass 1, l->b NULL) or the residual. */
static int walk(struct layout *l, const char *buf, size_t len)
{
	size_t i = 0;
	int rc = 0;

	while (!rc && i < len) {
		char c = buf[i];

		if (c == '"') {
			size_t j = i + 1;
			int ok;

			while (j < len && buf[j] != '"')
				j += buf[j] == '\\' ? 2 : 1;
			if (j >= len)
				return emit(l, buf + i, len - i);   /* unparsable: charged as is */
			ok = string_styles(buf + i + 1, j - i - 1);
			if (!l->b) {
				l->nstr++;
				l->str_ok[1] += !!(ok & STR_MINIMAL);
				l->str_ok[2] += !!(ok & STR_ASCII);
			} else {
				rc = emit(l, "\"", 1);
				if (!rc && !(ok & l->str_style))
					rc = emit(l, buf + i, j + 1 - i);
			}
			i = j + 1;
		} else if (c == '-' || (c >= '0' && c <= '9')) {
			size_t j = i;
			int ok;

			while (j < len && strchr("+-.eE0123456789", buf[j]))
				j++;
			ok = number_styles(buf + i, j - i);
			if (!l->b) {
				l->nnum++;
				l->num_ok[1] += !!(ok & NUM_PY);
				l->num_ok[2] += !!(ok & NUM_SERDE);
			} else {
				rc = emit(l, "0", 1);
				if (!rc && !(ok & l->num_style))
					rc = emit(l, buf + i, j - i);
			}
			i = j;
		} else if (c == 't' || c == 'f' || c == 'n') {
			/* true, false, null: the parser checked the letters */
			size_t j = i;

			while (j < len && buf[j] >= 'a' && buf[j] <= 'z')
				j++;
			rc = emit(l, buf + i, 1);
			i = j;
		} else {
			/* whitespace and structure, as they are */
			rc = emit(l, buf + i, 1);
			i++;
		}
	}
	return rc;
}

int nx_vfy__json_layout(nx_budget_buf *b, const char *buf, size_t len, nx_error *err)
{
	struct layout l = { .err = err };

	(void)walk(&l, buf, len);
	l.str_style = l.str_ok[1] >= l.str_ok[2] ? STR_MINIMAL : STR_ASCII;
	l.num_style = l.num_ok[1] >= l.num_ok[2] ? NUM_PY : NUM_SERDE;
	l.b = b;
	return walk(&l, buf, len);
}

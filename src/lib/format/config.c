/*
 * config.c - typed, strict access to YAML nodes shared by both config files
 * (config_priv.h), the size and path grammars, and reading a config file.
 */
#include "config_priv.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int nx_cfg__oom(struct cfg *c)
{
	return nx_error_oom(c->err, c->path);
}

int nx_cfg__strdup(struct cfg *c, const char *s, char **out)
{
	char *p = strdup(s);

	if (!p)
		return nx_cfg__oom(c);
	*out = p;
	return 0;
}

void nx_cfg__strv_free(char **v, size_t n)
{
	size_t i;

	for (i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

/* Edit distance of two short keys, capped: enough to spot a typo. */
static size_t distance(const char *a, const char *b)
{
	size_t row[64], i, j, la = strlen(a), lb = strlen(b), diag, up;

	if (la >= 64 || lb >= 64)
		return 99;
	for (j = 0; j <= lb; j++)
		row[j] = j;
	for (i = 1; i <= la; i++) {
		diag = row[0];
		row[0] = i;
		for (j = 1; j <= lb; j++) {
			up = row[j];
			row[j] = diag + (a[i - 1] != b[j - 1]);
			if (up + 1 < row[j])
				row[j] = up + 1;
			if (row[j - 1] + 1 < row[j])
				row[j] = row[j - 1] + 1;
			diag = up;
		}
	}
	return row[lb];
}

int nx_cfg__check_keys(struct cfg *c, const nx_yaml_node *map, const char *where,
		   const char *const *valid)
{
	char list[512], hint[96];
	size_t i, j, used = 0, d, best;

	for (i = 0; i < map->npairs; i++) {
		const char *k = map->pairs[i].key->value;

		for (j = 0; valid[j] && strcmp(valid[j], k) != 0; j++)
			;
		if (valid[j])
			continue;
		list[0] = hint[0] = '\0';
		best = 3; /* suggest only keys within two edits */
		for (j = 0; valid[j]; j++) {
			if (used < sizeof(list))
				used += (size_t)snprintf(list + used, sizeof(list) - used,
							 "%s%s", j ? ", " : "", valid[j]);
			if ((d = distance(k, valid[j])) < best) {
				best = d;
				snprintf(hint, sizeof(hint), " (did you mean \"%s\"?)", valid[j]);
			}
		}
		return nx_error_set(c->err, NX_ECONFIG, c->path, map->pairs[i].key->line, -1,
				    "unknown key \"%s\"%s in %s; valid keys are: %s",
				    k, hint, where, list);
	}
	return 0;
}

const char *const nx_input_role_keys[NX_INPUT_ROLES] = { "ids", "mask", "type_ids",
							 "positions" };
const char *const nx_input_default_names[NX_INPUT_ROLES] = { "input_ids", "attention_mask",
							     "token_type_ids", "position_ids" };

int nx_cfg__inputs(struct cfg *c, const nx_yaml_node *n, const char *key,
		   char *names[NX_INPUT_ROLES])
{
	static const char *const valid[] = { "ids", "mask", "type_ids", "positions", NULL };
	char sub[64];
	size_t i, j;
	int rc;

	if ((rc = nx_cfg__want(c, n, key, NX_YAML_MAPPING,
			       "a mapping {ids, mask, type_ids, positions} of model input names")) ||
	    (rc = nx_cfg__check_keys(c, n, key, valid)))
		return rc;
	for (i = 0; i < NX_INPUT_ROLES; i++) {
		const nx_yaml_node *v = nx_yaml_map_get(n, nx_input_role_keys[i]);

		if (!v)
			continue;
		snprintf(sub, sizeof(sub), "%s.%s", key, nx_input_role_keys[i]);
		if ((rc = nx_cfg__string(c, v, sub, nx_cfg__nonempty, &names[i])))
			return rc;
		for (j = 0; j < i; j++)
			if (names[j] && !strcmp(names[j], names[i]))
				return nx_error_set(c->err, NX_ECONFIG, c->path, v->line, -1,
						    "%s: input '%s' is named for two roles", key,
						    names[i]);
	}
	return 0;
}

int nx_cfg__syntax_is_config(int rc, nx_error *err)
{
	if (rc != NX_EFORMAT)
		return rc;
	if (err)
		err->code = NX_ECONFIG;
	return NX_ECONFIG;
}

int nx_cfg__missing(struct cfg *c, const nx_yaml_node *map, const char *key)
{
	return nx_error_set(c->err, NX_ECONFIG, c->path, map->line, -1,
			    "missing required key %s; add it", key);
}

int nx_cfg__want(struct cfg *c, const nx_yaml_node *n, const char *key,
	     enum nx_yaml_type type, const char *what)
{
	if (n->type == type)
		return 0;
	return nx_error_set(c->err, NX_ECONFIG, c->path, n->line, -1,
			    "%s must be %s, not a %s", key, what,
			    nx_yaml_type_name(n->type));
}

static bool is_one_of(const char *s, const char *const *set)
{
	for (; *set; set++)
		if (strcmp(s, *set) == 0)
			return true;
	return false;
}

/*
 * Would YAML 1.1 (PyYAML, which the bundle's Python may use) read this plain
 * scalar as null, a boolean or a number rather than a string?  Errs on the
 * side of "yes": quoting is always possible.
 */
static bool plain_not_string(const char *s)
{
	static const char *const words[] = {
		"", "~", "null", "Null", "NULL", "y", "Y", "yes", "Yes", "YES",
		"n", "N", "no", "No", "NO", "true", "True", "TRUE", "false",
		"False", "FALSE", "on", "On", "ON", "off", "Off", "OFF", ".inf",
		".Inf", ".INF", "-.inf", "+.inf", ".nan", ".NaN", ".NAN", NULL
	};
	const char *p = s;

	if (is_one_of(s, words))
		return true;
	if (*p == '-' || *p == '+')
		p++;
	if (!((*p >= '0' && *p <= '9') || (p[0] == '.' && p[1] >= '0' && p[1] <= '9')))
		return false;
	return strspn(p, "0123456789abcdefABCDEFxXoO_.:+-") == strlen(p);
}

int nx_cfg__string(struct cfg *c, const nx_yaml_node *n, const char *key,
	       cfg_check_fn check, char **out)
{
	int rc;

	if ((rc = nx_cfg__want(c, n, key, NX_YAML_SCALAR, "a string")))
		return rc;
	if (n->style == NX_YAML_PLAIN && plain_not_string(n->value))
		return nx_error_set(c->err, NX_ECONFIG, c->path, n->line, -1,
				    "%s must be a string, but %s%s%s is not one in YAML; quote it",
				    key, *n->value ? "`" : "", *n->value ? n->value : "an empty value",
				    *n->value ? "`" : "");
	if (check && (rc = check(c, n, key)))
		return rc;
	return nx_cfg__strdup(c, n->value, out);
}

int nx_cfg__string_list(struct cfg *c, const nx_yaml_node *n, const char *key,
		    cfg_check_fn check, bool unique, char ***out, size_t *nout)
{
	char **v = NULL;
	size_t i, j;
	int rc;

	if ((rc = nx_cfg__want(c, n, key, NX_YAML_SEQUENCE, "a list ([a, b])")))
		return rc;
	if (n->nitems && !(v = calloc(n->nitems, sizeof(*v))))
		return nx_cfg__oom(c);
	for (i = 0; i < n->nitems; i++) {
		if ((rc = nx_cfg__string(c, n->items[i], key, check, &v[i])))
			goto out_free;
		for (j = 0; unique && j < i; j++) {
			if (strcmp(v[i], v[j]) == 0) {
				rc = nx_error_set(c->err, NX_ECONFIG, c->path, n->items[i]->line, -1,
						  "%s lists \"%s\" twice; remove one", key, v[i]);
				goto out_free;
			}
		}
	}
	*out = v;
	*nout = n->nitems;
	return 0;
out_free:
	nx_cfg__strv_free(v, n->nitems);
	return rc;
}

static int want_plain(struct cfg *c, const nx_yaml_node *n, const char *key,
		      const char *what)
{
	int rc;

	if ((rc = nx_cfg__want(c, n, key, NX_YAML_SCALAR, what)))
		return rc;
	if (n->style != NX_YAML_PLAIN)
		return nx_error_set(c->err, NX_ECONFIG, c->path, n->line, -1,
				    "%s must be %s, not a quoted string; remove the quotes",
				    key, what);
	return 0;
}

int nx_cfg__bool(struct cfg *c, const nx_yaml_node *n, const char *key, bool *out)
{
	int rc;

	if ((rc = want_plain(c, n, key, "true or false")))
		return rc;
	if (strcmp(n->value, "true") && strcmp(n->value, "false"))
		return nx_error_set(c->err, NX_ECONFIG, c->path, n->line, -1,
				    "%s must be true or false, not `%s`", key, n->value);
	*out = n->value[0] == 't';
	return 0;
}

int nx_cfg__int(struct cfg *c, const nx_yaml_node *n, const char *key, long min,
	    long max, int *out)
{
	const char *p;
	long v = 0;
	int rc;

	if ((rc = want_plain(c, n, key, "an integer")))
		return rc;
	p = n->value + (n->value[0] == '-');
	/* Leading zeros are octal in YAML 1.1, so they are refused. */
	if (!*p || strspn(p, "0123456789") != strlen(p) || (p[0] == '0' && p[1]))
		return nx_error_set(c->err, NX_ECONFIG, c->path, n->line, -1,
				    "%s must be a decimal integer, not `%s`", key, n->value);
	for (; *p && v <= max; p++)
		v = v * 10 + (*p - '0');
	if (n->value[0] == '-')
		v = -v;
	if (v < min || v > max)
		return nx_error_set(c->err, NX_ECONFIG, c->path, n->line, -1,
				    "%s must be between %ld and %ld, not %s", key, min, max,
				    n->value);
	*out = (int)v;
	return 0;
}

int nx_cfg__number(struct cfg *c, const nx_yaml_node *n, const char *key,
	       double min, double max, double *out)
{
	const char *s = n->value;
	size_t a, b = 0;
	double v;
	int rc;

	if ((rc = want_plain(c, n, key, "a number")))
		return rc;
	a = strspn(s, "0123456789");
	if (s[a] == '.')
		b = strspn(s + a + 1, "0123456789");
	if (!a || a > 20 || b > 20 || (s[a] && (s[a] != '.' || !b || s[a + 1 + b])))
		return nx_error_set(c->err, NX_ECONFIG, c->path, n->line, -1,
				    "%s must be a decimal number like 0.05, not `%s`", key, s);
	v = strtod(s, NULL);
	if (v < min || v > max)
		return nx_error_set(c->err, NX_ECONFIG, c->path, n->line, -1,
				    "%s must be between %g and %g, not %s", key, min, max, s);
	*out = v;
	return 0;
}

int nx_cfg__enum(struct cfg *c, const nx_yaml_node *n, const char *key,
	     const char *const *names, int *out)
{
	char list[256];
	size_t used = 0;
	int i, rc;

	if ((rc = want_plain(c, n, key, "a keyword")))
		return rc;
	for (i = 0; names[i]; i++) {
		if (strcmp(n->value, names[i]) == 0) {
			*out = i;
			return 0;
		}
	}
	list[0] = '\0';
	for (i = 0; names[i] && used < sizeof(list); i++)
		used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s",
					 i ? ", " : "", names[i]);
	return nx_error_set(c->err, NX_ECONFIG, c->path, n->line, -1,
			    "%s must be one of %s, not `%s`", key, list, n->value);
}

int nx_cfg__nonempty(struct cfg *c, const nx_yaml_node *n, const char *key)
{
	const unsigned char *p;

	if (!n->len)
		return nx_error_set(c->err, NX_ECONFIG, c->path, n->line, -1,
				    "%s must not be empty", key);
	for (p = (const unsigned char *)n->value; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return nx_error_set(c->err, NX_ECONFIG, c->path, n->line, -1,
					    "%s contains a control character; remove it", key);
	return 0;
}

static bool path_ok(const char *p, bool dir)
{
	const char *comp = p, *end;
	size_t n = strlen(p);

	if (!n || n > NX_CONFIG_PATH_MAX || p[0] == '/')
		return false;
	if (dir)
		while (n > 1 && p[n - 1] == '/')
			n--;
	for (end = p; end < p + n; end++) {
		unsigned char ch = (unsigned char)*end;

		if (ch < 0x20 || ch == 0x7f || ch == '\\')
			return false;
	}
	while (comp < p + n) {
		size_t len;

		end = memchr(comp, '/', (size_t)(p + n - comp));
		len = end ? (size_t)(end - comp) : (size_t)(p + n - comp);
		if (len == 0 || (len == 1 && comp[0] == '.') ||
		    (len == 2 && comp[0] == '.' && comp[1] == '.'))
			return false;
		comp += len + 1;
	}
	return p[n - 1] != '/';
}

bool nx_config_path_ok(const char *p)
{
	return path_ok(p, false);
}

static int bad_path(struct cfg *c, const nx_yaml_node *n, const char *key)
{
	return nx_error_set(c->err, NX_ECONFIG, c->path, n->line, -1,
			    "%s: \"%s\" is not a valid workspace path; use a relative "
			    "'/'-separated path with no '.', '..' or empty component",
			    key, n->value);
}

int nx_cfg__path(struct cfg *c, const nx_yaml_node *n, const char *key)
{
	return path_ok(n->value, false) ? 0 : bad_path(c, n, key);
}

int nx_cfg__dir(struct cfg *c, const nx_yaml_node *n, const char *key)
{
	return path_ok(n->value, true) ? 0 : bad_path(c, n, key);
}

bool nx_config_module_ok(const char *s)
{
	bool start = true;

	if (!*s || strlen(s) > 255)
		return false;
	for (; *s; s++) {
		if (*s == '.') {
			if (start)
				return false;
			start = true;
		} else if (*s == '_' || (*s >= 'a' && *s <= 'z') ||
			   (*s >= 'A' && *s <= 'Z') || (!start && *s >= '0' && *s <= '9')) {
			start = false;
		} else {
			return false;
		}
	}
	return !start;
}

int nx_cfg__module(struct cfg *c, const nx_yaml_node *n, const char *key)
{
	if (nx_config_module_ok(n->value))
		return 0;
	return nx_error_set(c->err, NX_ECONFIG, c->path, n->line, -1,
			    "%s: \"%s\" is not a Python module name (like numpy or a.b)",
			    key, n->value);
}

static const struct {
	const char *name;
	uint64_t mult;
} units[] = {
	{ "", 1 }, { "B", 1 },
	{ "KB", 1000ULL }, { "MB", 1000000ULL }, { "GB", 1000000000ULL },
	{ "TB", 1000000000000ULL },
	{ "KiB", 1ULL << 10 }, { "MiB", 1ULL << 20 }, { "GiB", 1ULL << 30 },
	{ "TiB", 1ULL << 40 },
};

int nx_parse_size(uint64_t *out, const char *s, nx_error *err)
{
	unsigned __int128 whole = 0, num, scale = 1;
	const char *p = s;
	size_t i, nint, nfrac = 0;
	uint64_t frac = 0;

	nint = strspn(p, "0123456789");
	if (!nint || nint > 20)
		goto bad;
	for (i = 0; i < nint; i++)
		whole = whole * 10 + (unsigned)(p[i] - '0');
	p += nint;
	if (*p == '.') {
		nfrac = strspn(++p, "0123456789");
		if (!nfrac || nfrac > 12)
			goto bad;
		for (i = 0; i < nfrac; i++) {
			frac = frac * 10 + (unsigned)(p[i] - '0');
			scale *= 10;
		}
		p += nfrac;
	}
	/* "500 MB": one space, and only before a unit. */
	if (p[0] == ' ' && p[1] && p[1] != ' ')
		p++;
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strcmp(p, units[i].name) == 0)
			break;
	if (i == sizeof(units) / sizeof(units[0]))
		goto bad;
	if (whole > UINT64_MAX / units[i].mult)
		goto overflow;
	num = (whole * scale + frac) * units[i].mult;
	if (num % scale)
		return nx_error_set(err, NX_ECONFIG, NULL, 0, -1,
				    "size \"%s\" is not a whole number of bytes", s);
	if (num / scale > UINT64_MAX)
		goto overflow;
	*out = (uint64_t)(num / scale);
	return 0;
overflow:
	return nx_error_set(err, NX_ECONFIG, NULL, 0, -1, "size \"%s\" is too large", s);
bad:
	return nx_error_set(err, NX_ECONFIG, NULL, 0, -1,
			    "invalid size \"%s\"; write e.g. 2GiB, 500MB or 1234 "
			    "(KiB/MiB/GiB/TiB = 1024^n, KB/MB/GB/TB = 1000^n)", s);
}

int nx_cfg__read_file(char **out, size_t *len, int dirfd, const char *name,
		  nx_error *err)
{
	struct stat st;
	char *buf = NULL;
	size_t used = 0;
	ssize_t n;
	int fd, rc = 0;

	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0) {
		if (errno == ELOOP)
			return nx_error_set(err, NX_EUNSAFE, name, 0, -1,
					    "is a symbolic link; configuration files must be regular files");
		return nx_error_errno(err, NX_EIO, errno, name, "cannot open %s", name);
	}
	if (fstat(fd, &st) != 0) {
		rc = nx_error_errno(err, NX_EIO, errno, name, "cannot stat %s", name);
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = nx_error_set(err, NX_EUNSAFE, name, 0, -1,
				  "is not a regular file; configuration files must be regular files");
		goto out_close;
	}
	/* One byte more than the cap, so that a file that grew is noticed. */
	if (!(buf = malloc(NX_YAML_INPUT_MAX + 1))) {
		rc = nx_error_oom(err, name);
		goto out_close;
	}
	while (used <= NX_YAML_INPUT_MAX) {
		n = read(fd, buf + used, NX_YAML_INPUT_MAX + 1 - used);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = nx_error_errno(err, NX_EIO, errno, name, "cannot read %s", name);
			goto out_free;
		}
		if (n == 0)
			break;
		used += (size_t)n;
	}
	if (used > NX_YAML_INPUT_MAX) {
		rc = nx_error_set(err, NX_ELIMIT, name, 0, -1,
				  "file is larger than %d bytes; configuration files must be small",
				  NX_YAML_INPUT_MAX);
		goto out_free;
	}
	*out = buf;
	*len = used;
	buf = NULL;
out_free:
	free(buf);
out_close:
	close(fd);
	return rc;
}

/*
 * ref.c - registry references (REGISTRY/REPO[:TAG][@sha256:HEX]) and the
 * credentials Docker's config.json holds for a registry.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "nexus/fs.h"
#include "oci_int.h"

#define DOCKER_CONFIG_MAX (1u << 20)

void nx_oci_ref_free(nx_oci_ref *r)
{
	if (!r)
		return;
	free(r->registry);
	free(r->repository);
	free(r->tag);
	free(r->digest);
	free(r);
}

/* distribution's repository grammar: [a-z0-9]+([._-][a-z0-9]+)* per component */
static bool repo_ok(const char *s)
{
	bool prev_sep = true;

	for (; *s; s++) {
		if ((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9')) {
			prev_sep = false;
		} else if (*s == '.' || *s == '_' || *s == '-' || *s == '/') {
			if (prev_sep)
				return false;
			prev_sep = true;
		} else {
			return false;
		}
	}
	return !prev_sep;
}

static bool tag_ok(const char *s)
{
	size_t n = strlen(s), i;

	if (!n || n > 128 || !(isalnum((unsigned char)s[0]) || s[0] == '_'))
		return false;
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr("._-", s[i]))
			return false;
	return true;
}

static bool host_ok(const char *s, size_t n)
{
	size_t i;

	if (!n)
		return false;
	for (i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr(".-:[]", s[i]))
			return false;
	return memchr(s, '.', n) || memchr(s, ':', n) || (n == 9 && !memcmp(s, "localhost", 9));
}

bool oci__digest_ok(const char *d)
{
	unsigned char b[NX_SHA256_LEN];

	return d && !strncmp(d, "sha256:", 7) && !nx_unhex(b, d + 7);
}

int nx_oci_ref_parse(nx_oci_ref **out, const char *s, nx_error *err)
{
	nx_oci_ref *r = NULL;
	const char *slash, *at, *rest, *colon;
	size_t n = strlen(s);

	if (n == 0 || n > NX_OCI_REF_MAX)
		return nx_error_set(err, NX_EUSAGE, NULL, 0, -1,
				    "reference '%.64s' is empty or longer than %d bytes", s,
				    NX_OCI_REF_MAX);
	slash = strchr(s, '/');
	if (!slash || !host_ok(s, (size_t)(slash - s)))
		return nx_error_set(err, NX_EUSAGE, NULL, 0, -1,
				    "reference '%s' names no registry: write HOST[:PORT]/REPOSITORY[:TAG]"
				    "[@sha256:DIGEST], e.g. localhost:5000/models/spam:v1", s);
	if (!(r = calloc(1, sizeof(*r))) || !(r->registry = strndup(s, (size_t)(slash - s))))
		goto nomem;
	rest = slash + 1;
	at = strchr(rest, '@');
	if (at) {
		if (!oci__digest_ok(at + 1))
			goto bad;
		if (!(r->digest = strdup(at + 1)))
			goto nomem;
	}
	n = at ? (size_t)(at - rest) : strlen(rest);
	colon = memrchr(rest, ':', n);
	if (colon) {
		if (!(r->tag = strndup(colon + 1, n - (size_t)(colon + 1 - rest))))
			goto nomem;
		if (!tag_ok(r->tag))
			goto bad;
		n = (size_t)(colon - rest);
	}
	if (!(r->repository = strndup(rest, n)))
		goto nomem;
	if (!repo_ok(r->repository) || n > 255)
		goto bad;
	if (!r->tag && !r->digest && !(r->tag = strdup("latest")))
		goto nomem;
	*out = r;
	return 0;
bad:
	nx_oci_ref_free(r);
	return nx_error_set(err, NX_EUSAGE, NULL, 0, -1,
			    "reference '%s' is not REGISTRY/REPOSITORY[:TAG][@sha256:<64 hex>] "
			    "(repository: lower-case [a-z0-9] parts joined by . _ - /; tag: "
			    "[A-Za-z0-9_.-], at most 128)", s);
nomem:
	nx_oci_ref_free(r);
	return nx_error_set(err, NX_ENOMEM, NULL, 0, -1, "out of memory");
}

/* "user:password" from base64; NULL on any malformation. */
static int split_auth(struct oci_creds *c, const char *b64)
{
	size_t n = strlen(b64);
	unsigned char *buf;
	char *colon;
	int len;

	if (n == 0 || n % 4 || n > 8192 || !(buf = calloc(1, n)))
		return -1;
	len = EVP_DecodeBlock(buf, (const unsigned char *)b64, (int)n);
	if (len < 0) {
		free(buf);
		return -1;
	}
	while (len > 0 && b64[n - 1] == '=' && n--)
		len--;
	buf[len] = 0;
	colon = strchr((char *)buf, ':');
	if (!colon || memchr(buf, 0, (size_t)len)) {
		OPENSSL_cleanse(buf, n);
		free(buf);
		return -1;
	}
	*colon = 0;
	c->user = strdup((char *)buf);
	c->pass = strdup(colon + 1);
	OPENSSL_cleanse(buf, n);
	free(buf);
	return c->user && c->pass ? 0 : -1;
}

void oci__creds_release(struct oci_creds *c)
{
	if (c->pass)
		OPENSSL_cleanse(c->pass, strlen(c->pass));
	free(c->user);
	free(c->pass);
	c->user = c->pass = NULL;
}

/*
 * Credentials for registry from $DOCKER_CONFIG/config.json, else
 * ~/.docker/config.json: auths["host"], ["https://host"] or ["http://host"],
 * its base64 "auth".  No file or no entry is no credentials (0); a file that
 * is there but malformed is an error naming it.
 */
int oci__creds_from_docker(struct oci_creds *c, const char *registry, nx_error *err)
{
	const char *dir = getenv("DOCKER_CONFIG"), *home = getenv("HOME");
	static const char *const forms[] = {"", "https://", "http://"};
	char path[4096], key[600], *buf = NULL;
	json_t *root = NULL, *e, *a;
	json_error_t je;
	size_t len = 0, i;
	int rc = 0, fd;

	if (dir)
		snprintf(path, sizeof(path), "%s/config.json", dir);
	else if (home)
		snprintf(path, sizeof(path), "%s/.docker/config.json", home);
	else
		return 0;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == ENOENT || errno == ENOTDIR ? 0 :
			nx_error_errno(err, NX_EIO, errno, path, "cannot open %s", path);
	rc = nx_fs_read_fd(&buf, &len, fd, path, DOCKER_CONFIG_MAX, err);
	close(fd);
	if (rc)
		return rc;
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
	if (!root || !json_is_object(root)) {
		rc = nx_error_set(err, NX_ECONFIG, path, je.line, -1,
				  "%s is not a docker config file (%s); fix it or pass --username",
				  path, root ? "not an object" : je.text);
		goto out;
	}
	for (i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		snprintf(key, sizeof(key), "%s%s", forms[i], registry);
		e = json_object_get(json_object_get(root, "auths"), key);
		if (!e)
			continue;
		a = json_object_get(e, "auth");
		if (!json_is_string(a) || split_auth(c, json_string_value(a))) {
			oci__creds_release(c);
			rc = nx_error_set(err, NX_ECONFIG, path, 0, -1,
					  "%s: auths[\"%s\"].auth is not base64 of 'user:password'; "
					  "run 'docker login %s' again or pass --username", path, key,
					  registry);
		}
		break;
	}
out:
	if (buf)
		OPENSSL_cleanse(buf, len);
	free(buf);
	json_decref(root);
	return rc;
}

/*
 * http.c - one HTTP exchange with a registry on libcurl, plus what every
 * exchange needs around it: the auth challenge (Basic, or the Bearer token
 * flow with scopes and expiry), one re-auth on 401, and retries with
 * jittered back-off for idempotent requests.  Credentials live in one
 * header line that is wiped when replaced; they never reach a message.
 * curl does not send a custom Authorization header to another host or port
 * when it follows a redirect (CURLOPT_UNRESTRICTED_AUTH stays off), which
 * is what lets blob GETs follow a registry's redirect to its storage.
 */
#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "nexus/clock.h"
#include "oci_int.h"

#define TOKEN_MAX (64u << 10)   /* bytes of a token service's answer */

/*
 * libcurl is opened with dlopen when push or pull first needs it, not
 * linked: libcurl4 brings some twenty shared libraries (nghttp2, ssh2,
 * ldap, gssapi, rtmp, ...) whose loading and relocation at every start
 * cost every nexus verb tens of milliseconds, inspect's included.  The
 * twelve entry points used here, by the names libcurl.so.4 exports.
 */
static struct {
	CURLcode (*global_init)(long);
	CURL *(*easy_init)(void);
	CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
	CURLcode (*easy_perform)(CURL *);
	CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
	void (*easy_cleanup)(CURL *);
	void (*easy_reset)(CURL *);
	const char *(*easy_strerror)(CURLcode);
	char *(*easy_escape)(CURL *, const char *, int);
	void (*free)(void *);
	struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
	void (*slist_free_all)(struct curl_slist *);
} cu;

static int curl_load(nx_error *err)
{
	static const char *const names[] = {
		"curl_global_init", "curl_easy_init", "curl_easy_setopt", "curl_easy_perform",
		"curl_easy_getinfo", "curl_easy_cleanup", "curl_easy_reset", "curl_easy_strerror",
		"curl_easy_escape", "curl_free", "curl_slist_append", "curl_slist_free_all",
	};
	void (**slot)(void) = (void (**)(void))&cu;
	void *h;
	size_t i;

	if (cu.slist_free_all)
		return 0;
	if (!(h = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL)))
		return nx_error_set(err, NX_EDEP, NULL, 0, -1,
				    "push and pull need libcurl (Debian package libcurl4): %s", dlerror());
	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		*(void **)&slot[i] = dlsym(h, names[i]);
		if (!slot[i])
			return nx_error_set(err, NX_EDEP, NULL, 0, -1,
					    "libcurl.so.4 has no %s: install Debian's libcurl4", names[i]);
	}
	if (cu.global_init(CURL_GLOBAL_DEFAULT))
		return nx_error_set(err, NX_EDEP, NULL, 0, -1, "libcurl cannot start");
	return 0;
}

#define curl_easy_init cu.easy_init
#undef curl_easy_setopt
#undef curl_easy_getinfo
#define curl_easy_setopt cu.easy_setopt
#define curl_easy_perform cu.easy_perform
#define curl_easy_getinfo cu.easy_getinfo
#define curl_easy_cleanup cu.easy_cleanup
#define curl_easy_reset cu.easy_reset
#define curl_easy_strerror cu.easy_strerror
#define curl_easy_escape cu.easy_escape
#define curl_free cu.free
#define curl_slist_append cu.slist_append
#define curl_slist_free_all cu.slist_free_all
#define URL_MAX 4096

static void wipe_free(char *s)
{
	if (s)
		OPENSSL_cleanse(s, strlen(s));
	free(s);
}

void nx_oci__resp_release(struct oci_resp *r)
{
	free(r->body);
	memset(r, 0, sizeof(*r));
	r->retry_after = -1;
	r->clen = -1;
}

/* --- callbacks ------------------------------------------------------------ */

struct xfer {
	const struct oci_req *q;
	struct oci_resp *r;
	const struct oci_client *c;
	uint64_t sent;        /* body bytes read so far */
	bool ranged;          /* a Range was asked for */
};

static void copy_value(char *dst, size_t n, const char *v, size_t len)
{
	while (len && (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' '))
		len--;
	while (len && *v == ' ')
		v++, len--;
	if (len >= n)
		len = n - 1;
	memcpy(dst, v, len);
	dst[len] = 0;
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *ctx)
{
	struct xfer *x = ctx;
	struct oci_resp *r = x->r;
	size_t n = size * nitems, k;
	char tmp[32];
	const char *colon;

	if (n > 5 && !strncmp(buf, "HTTP/", 5)) {
		/* a new response (a redirect or 100 Continue came before): forget the last */
		const char *sp = memchr(buf, ' ', n);

		r->status = sp ? strtol(sp + 1, NULL, 10) : 0;
		r->location[0] = r->digest[0] = r->range[0] = r->www_auth[0] = 0;
		r->ctype[0] = r->crange[0] = r->subject[0] = 0;
		r->retry_after = -1;
		r->clen = -1;
		r->len = 0;
		return n;
	}
	if (!(colon = memchr(buf, ':', n)))
		return n;
	k = (size_t)(colon - buf);
#define IS(name) (k == sizeof(name) - 1 && !strncasecmp(buf, name, k))
	if (IS("location"))
		copy_value(r->location, sizeof(r->location), colon + 1, n - k - 1);
	else if (IS("docker-content-digest"))
		copy_value(r->digest, sizeof(r->digest), colon + 1, n - k - 1);
	else if (IS("range"))
		copy_value(r->range, sizeof(r->range), colon + 1, n - k - 1);
	else if (IS("www-authenticate"))
		copy_value(r->www_auth, sizeof(r->www_auth), colon + 1, n - k - 1);
	else if (IS("content-type"))
		copy_value(r->ctype, sizeof(r->ctype), colon + 1, n - k - 1);
	else if (IS("content-range"))
		copy_value(r->crange, sizeof(r->crange), colon + 1, n - k - 1);
	else if (IS("oci-subject"))
		copy_value(r->subject, sizeof(r->subject), colon + 1, n - k - 1);
	else if (IS("retry-after") || IS("content-length")) {
		char *end;
		long long v;

		copy_value(tmp, sizeof(tmp), colon + 1, n - k - 1);
		errno = 0;
		v = strtoll(tmp, &end, 10);
		if (!errno && end != tmp && !*end && v >= 0) {
			if (IS("retry-after"))
				r->retry_after = v > NX_OCI_RETRY_AFTER_MAX ? NX_OCI_RETRY_AFTER_MAX : (long)v;
			else
				r->clen = v;
		} else if (IS("retry-after")) {
			r->retry_after = 1;  /* an HTTP date: wait a little, not until then */
		}
	}
#undef IS
	return n;
}

/* A 206 must continue exactly where the file stands: "bytes N-M/T". */
static bool range_continues(const char *crange, uint64_t at)
{
	unsigned long long start;

	return sscanf(crange, "bytes %llu-", &start) == 1 && start == at;
}

static size_t on_body(char *buf, size_t size, size_t nitems, void *ctx)
{
	struct xfer *x = ctx;
	struct oci_resp *r = x->r;
	struct oci_sink *s = x->q->sink;
	size_t n = size * nitems, cap = x->q->cap ? x->q->cap : NX_OCI_RESPONSE_MAX;
	char *nb;

	if (s && (r->status == 200 || r->status == 206)) {
		if (x->ranged && r->status == 200 && s->written) {
			/* the server ignored our Range: start the blob over */
			if (nx_oci__sink_restart(s))
				return 0;
		}
		if (r->status == 206 && x->ranged && !range_continues(r->crange, s->written)) {
			s->bad_range = true;
			return 0;
		}
		x->ranged = false;  /* checked at a response's first bytes */
		if (n > s->cap - s->written) {
			s->over = true;
			return 0;
		}
		if (nx_oci__sink_write(s, buf, n))
			return 0;
		if (x->c->o->progress && x->q->what)
			x->c->o->progress(x->c->o->progress_ctx, x->q->what, s->written, x->q->total);
		return n;
	}
	if (n > cap - r->len) {
		r->body_over = true;
		return 0;
	}
	if (!(nb = realloc(r->body, r->len + n + 1)))
		return 0;
	r->body = nb;
	memcpy(r->body + r->len, buf, n);
	r->len += n;
	r->body[r->len] = 0;
	return n;
}

static size_t on_read(char *buf, size_t size, size_t nitems, void *ctx)
{
	struct xfer *x = ctx;
	const struct oci_req *q = x->q;
	uint64_t total = q->body_fd >= 0 ? q->fd_len : q->body_len, left = total - x->sent;
	size_t n = size * nitems;
	ssize_t got;

	if (n > left)
		n = (size_t)left;
	if (!n)
		return 0;
	if (q->body_fd >= 0) {
		got = pread(q->body_fd, buf, n, (off_t)(q->body_off + x->sent));
		if (got <= 0)
			return CURL_READFUNC_ABORT;
		n = (size_t)got;
	} else {
		memcpy(buf, q->body + x->sent, n);
	}
	x->sent += n;
	if (x->c->o->progress && q->what)
		x->c->o->progress(x->c->o->progress_ctx, q->what, q->body_off + x->sent, q->total);
	return n;
}

/* --- one exchange ------------------------------------------------------------- */

static void slist_wipe_free(struct curl_slist *l)
{
	struct curl_slist *i;

	for (i = l; i; i = i->next)
		OPENSSL_cleanse(i->data, strlen(i->data));
	curl_slist_free_all(l);
}

/* "name: value" (name NULL: value is the whole line); nothing for a NULL value */
static int add_header(struct curl_slist **l, const char *name, const char *v)
{
	char line[URL_MAX];
	struct curl_slist *n;

	if (!v)
		return 0;
	if (snprintf(line, sizeof(line), "%s%s%s", name ? name : "", name ? ": " : "", v) >=
	    (int)sizeof(line))
		return -1;
	n = curl_slist_append(*l, line);
	OPENSSL_cleanse(line, sizeof(line));
	if (!n)
		return -1;
	*l = n;
	return 0;
}

/* One attempt.  Returns the curl code; r holds what came. */
static CURLcode perform(struct oci_client *c, const struct oci_req *q, struct oci_resp *r,
			const char *auth, const char *range)
{
	struct curl_slist *h = NULL;
	struct xfer x = { q, r, c, 0, range != NULL };
	char url[URL_MAX];
	CURL *k = c->curl;
	CURLcode cc = CURLE_OUT_OF_MEMORY;
	uint64_t blen = q->body_fd >= 0 ? q->fd_len : q->body_len;

	nx_oci__resp_release(r);
	if (q->url[0] == '/')
		snprintf(url, sizeof(url), "%s%s", c->base, q->url);
	else
		snprintf(url, sizeof(url), "%s", q->url);
	curl_easy_reset(k);   /* keeps the connection cache */
	if (add_header(&h, NULL, auth) || add_header(&h, "Accept", q->accept) ||
	    add_header(&h, "Content-Type", q->content_type) ||
	    add_header(&h, "Content-Range", q->content_range) ||
	    add_header(&h, "Range", range) || add_header(&h, NULL, "Expect:"))
		goto out;
	curl_easy_setopt(k, CURLOPT_URL, url);
	curl_easy_setopt(k, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(k, CURLOPT_USERAGENT, "nexus/" NX_VERSION);
	curl_easy_setopt(k, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(k, CURLOPT_HEADERDATA, &x);
	curl_easy_setopt(k, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(k, CURLOPT_WRITEDATA, &x);
	curl_easy_setopt(k, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(k, CURLOPT_CONNECTTIMEOUT, 30L);
	/* a connection that moves nothing for a minute is lost */
	curl_easy_setopt(k, CURLOPT_LOW_SPEED_LIMIT, 1L);
	curl_easy_setopt(k, CURLOPT_LOW_SPEED_TIME, 60L);
	curl_easy_setopt(k, CURLOPT_PROTOCOLS_STR, "http,https");
	/* fewer, larger reads and writes for blobs (defaults: 16 and 64 KiB) */
	curl_easy_setopt(k, CURLOPT_BUFFERSIZE, 512L << 10);
	curl_easy_setopt(k, CURLOPT_UPLOAD_BUFFERSIZE, 2L << 20);
	if (c->o->ca_file)
		curl_easy_setopt(k, CURLOPT_CAINFO, c->o->ca_file);
	if (q->follow) {
		curl_easy_setopt(k, CURLOPT_FOLLOWLOCATION, 1L);
		curl_easy_setopt(k, CURLOPT_MAXREDIRS, 3L);
		curl_easy_setopt(k, CURLOPT_REDIR_PROTOCOLS_STR, c->o->plain_http ? "http,https" : "https");
	}
	if (!strcmp(q->method, "HEAD")) {
		curl_easy_setopt(k, CURLOPT_NOBODY, 1L);
	} else if (!strcmp(q->method, "POST")) {
		curl_easy_setopt(k, CURLOPT_POST, 1L);
		curl_easy_setopt(k, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
		curl_easy_setopt(k, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(k, CURLOPT_READDATA, &x);
	} else if (!strcmp(q->method, "PUT") || !strcmp(q->method, "PATCH")) {
		curl_easy_setopt(k, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(k, CURLOPT_INFILESIZE_LARGE, (curl_off_t)blen);
		curl_easy_setopt(k, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(k, CURLOPT_READDATA, &x);
		if (!strcmp(q->method, "PATCH"))
			curl_easy_setopt(k, CURLOPT_CUSTOMREQUEST, "PATCH");
	}
	cc = curl_easy_perform(k);
	if (cc == CURLE_OK)
		curl_easy_getinfo(k, CURLINFO_RESPONSE_CODE, &r->status);
out:
	slist_wipe_free(h);
	OPENSSL_cleanse(url, sizeof(url));
	return cc;
}

/* --- authentication --------------------------------------------------------------- */

/* value of key="..." (or key=token) in a challenge, into out; false if absent */
static bool challenge_param(char *out, size_t n, const char *ch, const char *key)
{
	size_t kl = strlen(key), i = 0;
	const char *p = ch;

	while ((p = strcasestr(p, key))) {
		if ((p == ch || p[-1] == ' ' || p[-1] == ',') && p[kl] == '=') {
			p += kl + 1;
			if (*p == '"') {
				for (p++; *p && *p != '"' && i + 1 < n; p++)
					out[i++] = *p;
			} else {
				for (; *p && *p != ',' && *p != ' ' && i + 1 < n; p++)
					out[i++] = *p;
			}
			out[i] = 0;
			return true;
		}
		p += kl;
	}
	return false;
}

/* c->auth = "Authorization: <scheme> <v>" */
static int set_auth(struct oci_client *c, const char *scheme, const char *v, nx_error *err)
{
	size_t n = strlen(scheme) + strlen(v) + 18;
	char *a = malloc(n);

	if (!a)
		return nx_error_oom(err, NULL);
	snprintf(a, n, "Authorization: %s %s", scheme, v);
	wipe_free(c->auth);
	c->auth = a;
	return 0;
}

static int basic_value(char **out, const struct oci_creds *cr, nx_error *err)
{
	size_t n = strlen(cr->user) + strlen(cr->pass) + 2, bn = 4 * ((n + 2) / 3) + 1;
	char *plain = malloc(n), *b64 = malloc(bn);

	if (!plain || !b64) {
		free(plain);
		free(b64);
		return nx_error_oom(err, NULL);
	}
	snprintf(plain, n, "%s:%s", cr->user, cr->pass);
	EVP_EncodeBlock((unsigned char *)b64, (unsigned char *)plain, (int)(n - 1));
	wipe_free(plain);
	*out = b64;
	return 0;
}

/* The Bearer token flow: GET realm?service=S&scope=repository:R:A. */
static int bearer(struct oci_client *c, const char *challenge, nx_error *err)
{
	char realm[1024], service[256] = "", scope[600], url[URL_MAX], *es = NULL, *esc = NULL;
	char *basic = NULL, *auth = NULL;
	struct oci_req q = { .method = "GET", .url = url, .body_fd = -1, .cap = TOKEN_MAX,
			     .idempotent = true };
	struct oci_resp r = { 0 };
	json_t *root = NULL, *tok, *exp;
	CURLcode cc;
	int rc, tries;

	if (!challenge_param(realm, sizeof(realm), challenge, "realm") ||
	    (strncmp(realm, "https://", 8) && !(c->o->plain_http && !strncmp(realm, "http://", 7))))
		return nx_error_set(err, NX_EIO, NULL, 0, -1,
				    "registry %s asks for a bearer token at '%s', which is not an "
				    "https URL (use --plain-http only for a test registry)",
				    c->base, realm);
	challenge_param(service, sizeof(service), challenge, "service");
	snprintf(scope, sizeof(scope), "repository:%s:%s", c->repo, c->actions);
	es = curl_easy_escape(c->curl, service, 0);
	esc = curl_easy_escape(c->curl, scope, 0);
	if (!es || !esc) {
		rc = nx_error_oom(err, NULL);
		goto out;
	}
	snprintf(url, sizeof(url), "%s%sservice=%s&scope=%s", realm, strchr(realm, '?') ? "&" : "?",
		 es, esc);
	if (c->creds.user) {
		if ((rc = basic_value(&basic, &c->creds, err)))
			goto out;
		if (asprintf(&auth, "Authorization: Basic %s", basic) < 0) {
			auth = NULL;
			rc = nx_error_oom(err, NULL);
			goto out;
		}
	}
	for (tries = 0;; tries++) {
		cc = perform(c, &q, &r, auth, NULL);
		if (cc == CURLE_OK && r.status < 500 && r.status != 429)
			break;
		if (tries + 1 >= NX_OCI_ATTEMPTS) {
			rc = cc ? nx_error_set(err, NX_EIO, NULL, 0, -1, "token service %s: %s", realm,
					       curl_easy_strerror(cc))
				: nx_oci__http_error(err, NX_EIO, &q, &r, "token service");
			goto out;
		}
		usleep(200000u << tries);
	}
	if (r.status != 200) {
		rc = nx_oci__http_error(err, NX_EIO, &q, &r, r.status == 401 || r.status == 403 ?
				     "token service refused the credentials (docker login, or "
				     "--username with --password-stdin)" : "token service");
		goto out;
	}
	root = json_loadb(r.body ? r.body : "", r.len, 0, NULL);
	tok = json_object_get(root, "token");
	if (!json_is_string(tok))
		tok = json_object_get(root, "access_token");
	if (!json_is_string(tok) || !json_string_length(tok) || json_string_length(tok) > TOKEN_MAX) {
		rc = nx_error_set(err, NX_EIO, NULL, 0, -1,
				  "token service %s answered without a token", realm);
		goto out;
	}
	if ((rc = set_auth(c, "Bearer", json_string_value(tok), err)))
		goto out;
	exp = json_object_get(root, "expires_in");
	/* the spec's default lifetime is 60 s; renew 10 s early */
	c->token_expiry = nx_now() + (json_is_integer(exp) && json_integer_value(exp) > 20 ?
					 (double)json_integer_value(exp) : 60.0) - 10.0;
	if (c->challenge != challenge) {
		free(c->challenge);
		if (!(c->challenge = strdup(challenge)))
			rc = nx_error_oom(err, NULL);
	}
out:
	if (r.body)
		OPENSSL_cleanse(r.body, r.len);
	nx_oci__resp_release(&r);
	json_decref(root);
	curl_free(es);
	curl_free(esc);
	wipe_free(basic);
	wipe_free(auth);
	return rc;
}

/* Answer a 401's challenge: Basic with our credentials, or a Bearer token. */
static int authenticate(struct oci_client *c, const char *challenge, nx_error *err)
{
	char *basic = NULL;
	int rc;

	if (!strncasecmp(challenge, "Bearer ", 7))
		return bearer(c, challenge, err);
	if (strncasecmp(challenge, "Basic", 5))
		return nx_error_set(err, NX_EIO, NULL, 0, -1,
				    "registry %s asks for authentication nexus does not speak: '%.60s'",
				    c->base, challenge);
	if (!c->creds.user)
		return nx_error_set(err, NX_EIO, NULL, 0, -1,
				    "registry %s asks for credentials: run 'docker login %s' "
				    "(~/.docker/config.json) or pass --username and --password-stdin",
				    c->base, c->base + (strncmp(c->base, "https", 5) ? 7 : 8));
	if ((rc = basic_value(&basic, &c->creds, err)))
		return rc;
	rc = set_auth(c, "Basic", basic, err);
	wipe_free(basic);
	return rc;
}

/* --- retries -------------------------------------------------------------------- */

static bool transport_retryable(CURLcode cc)
{
	switch (cc) {
	case CURLE_COULDNT_CONNECT: case CURLE_SEND_ERROR: case CURLE_RECV_ERROR:
	case CURLE_PARTIAL_FILE: case CURLE_GOT_NOTHING: case CURLE_OPERATION_TIMEDOUT:
	case CURLE_HTTP2: case CURLE_HTTP2_STREAM: case CURLE_SSL_CONNECT_ERROR:
	case CURLE_COULDNT_RESOLVE_HOST:
		return true;
	default:
		return false;
	}
}

void nx_oci__back_off(const struct oci_client *c, unsigned attempt, long retry_after)
{
	double base = c->o->backoff > 0 ? c->o->backoff : 0.5, s;
	unsigned char j = 0;

	if (retry_after >= 0) {
		s = (double)retry_after;
	} else {
		RAND_bytes(&j, 1);
		s = base * (double)(1u << attempt) * (0.5 + (double)j / 255.0); /* jitter */
	}
	if (s > NX_OCI_RETRY_AFTER_MAX)
		s = NX_OCI_RETRY_AFTER_MAX;
	usleep((useconds_t)(s * 1e6));
}

int nx_oci__request(struct oci_client *c, const struct oci_req *q, struct oci_resp *r,
		 nx_error *err)
{
	char range[48];
	bool reauthed = false;
	unsigned attempt = 0;
	CURLcode cc;
	int rc;

	for (;;) {
		if (c->challenge && c->token_expiry && nx_now() > c->token_expiry &&
		    (rc = bearer(c, c->challenge, err)))
			return rc;
		if (q->sink && q->sink->written)
			snprintf(range, sizeof(range), "bytes=%llu-", (unsigned long long)q->sink->written);
		cc = perform(c, q, r, c->auth, q->sink && q->sink->written ? range : NULL);
		if (q->sink && q->sink->over)
			return nx_error_set(err, NX_ELIMIT, NULL, 0, -1,
					    "%s: the registry sent more than the %llu bytes the "
					    "manifest declares; refused", q->what ? q->what : q->url,
					    (unsigned long long)q->sink->cap);
		if (q->sink && q->sink->werr)
			return nx_error_errno(err, NX_EIO, q->sink->werr, q->what, "%s: cannot write "
					      "the staged file; check the space and the permissions "
					      "of the output's directory, then pull again",
					      q->what ? q->what : q->url);
		if (q->sink && q->sink->bad_range)
			return nx_error_set(err, NX_EIO, NULL, 0, -1,
					    "%s: the registry resumed at the wrong offset (%s)",
					    q->what ? q->what : q->url, r->crange);
		if (r->body_over)
			return nx_error_set(err, NX_ELIMIT, NULL, 0, -1,
					    "%s %s: the answer is over %zu bytes; refused", q->method,
					    q->url, q->cap ? q->cap : (size_t)NX_OCI_RESPONSE_MAX);
		if (cc != CURLE_OK) {
			if (q->idempotent && transport_retryable(cc) && ++attempt < NX_OCI_ATTEMPTS) {
				c->retries++;
				nx_oci__back_off(c, attempt - 1, -1);
				continue;
			}
			return nx_error_set(err, NX_EIO, NULL, 0, -1, "%s %s%s: %s", q->method,
					    q->url[0] == '/' ? c->base : "", q->url,
					    curl_easy_strerror(cc));
		}
		if (r->status >= 300 && r->status < 400 && !q->follow)
			return nx_error_set(err, NX_EUNSAFE, NULL, 0, -1,
					    "%s %s: the registry redirects to '%.200s'; nexus follows "
					    "redirects only for blob downloads, so this is refused",
					    q->method, q->url, r->location);
		if (r->status == 401 && !reauthed && r->www_auth[0]) {
			reauthed = true;
			if ((rc = authenticate(c, r->www_auth, err)))
				return rc;
			continue;
		}
		if ((r->status == 429 || r->status >= 500) && q->idempotent &&
		    ++attempt < NX_OCI_ATTEMPTS) {
			c->retries++;
			nx_oci__back_off(c, attempt - 1, r->retry_after);
			continue;
		}
		return 0;
	}
}

/* --- errors and locations ------------------------------------------------------------ */

bool nx_oci__has_error_code(const struct oci_resp *r, const char *code)
{
	json_t *root = r->body ? json_loadb(r->body, r->len, 0, NULL) : NULL, *e;
	size_t i;
	bool found = false;

	json_array_foreach(json_object_get(root, "errors"), i, e)
		if (json_is_string(json_object_get(e, "code")) &&
		    !strcmp(json_string_value(json_object_get(e, "code")), code))
			found = true;
	json_decref(root);
	return found;
}

int nx_oci__http_error(nx_error *err, int code, const struct oci_req *q,
		    const struct oci_resp *r, const char *what)
{
	json_t *root = r->body ? json_loadb(r->body, r->len, 0, NULL) : NULL, *e;
	char detail[600] = "";
	size_t i, n = 0;
	const char *ec, *em;

	json_array_foreach(json_object_get(root, "errors"), i, e) {
		ec = json_string_value(json_object_get(e, "code"));
		em = json_string_value(json_object_get(e, "message"));
		if (n < sizeof(detail) - 1)
			n += (size_t)snprintf(detail + n, sizeof(detail) - n, "%s%s: %s",
					      n ? "; " : " (", ec ? ec : "?", em ? em : "");
	}
	if (n && n < sizeof(detail) - 1)
		snprintf(detail + n, sizeof(detail) - n, ")");
	json_decref(root);
	return nx_error_set(err, code, NULL, 0, -1, "%s: %s %.200s: HTTP %ld%s", what, q->method,
			    q->url, r->status, detail);
}

int nx_oci__location(char *out, size_t outsz, const struct oci_client *c, const char *loc,
		  nx_error *err)
{
	size_t bl = strlen(c->base);

	if (!loc[0])
		return nx_error_set(err, NX_EIO, NULL, 0, -1,
				    "registry %s started an upload without a Location", c->base);
	if (loc[0] == '/' && loc[1] != '/') {
		if (strlen(loc) >= outsz)
			goto long_;
		snprintf(out, outsz, "%s", loc);
		return 0;
	}
	if (strncasecmp(loc, c->base, bl) || loc[bl] != '/')
		return nx_error_set(err, NX_EUNSAFE, NULL, 0, -1,
				    "registry %s sent a Location on another host or scheme "
				    "('%.200s'); refused (the upload would leave the registry)",
				    c->base, loc);
	if (strlen(loc + bl) >= outsz)
		goto long_;
	snprintf(out, outsz, "%s", loc + bl);
	return 0;
long_:
	return nx_error_set(err, NX_ELIMIT, NULL, 0, -1, "registry %s sent a Location over %zu bytes",
			    c->base, outsz);
}

/* --- the client --------------------------------------------------------------------- */

int nx_oci__client_open(struct oci_client *c, const nx_oci_ref *ref, const struct nx_oci_opts *o,
		     const char *actions, nx_error *err)
{
	struct oci_req q = { .method = "GET", .url = "/v2/", .body_fd = -1, .idempotent = true };
	struct oci_resp r = { 0 };
	int rc;

	memset(c, 0, sizeof(*c));
	c->o = o;
	c->repo = ref->repository;
	c->actions = actions;
	snprintf(c->base, sizeof(c->base), "%s://%s", o->plain_http ? "http" : "https", ref->registry);
	if ((rc = curl_load(err)))
		return rc;
	if (!(c->curl = curl_easy_init()))
		return nx_error_set(err, NX_ENOMEM, NULL, 0, -1, "libcurl cannot start: out of memory");
	if (o->username) {
		c->creds.user = strdup(o->username);
		c->creds.pass = strdup(o->password ? o->password : "");
		if (!c->creds.user || !c->creds.pass) {
			rc = nx_error_oom(err, NULL);
			goto fail;
		}
	} else if ((rc = nx_oci__creds_from_docker(&c->creds, ref->registry, err))) {
		goto fail;
	}
	/* ping: 200, or 401 whose challenge we answer now */
	if ((rc = nx_oci__request(c, &q, &r, err)))
		goto fail;
	if (r.status != 200) {
		rc = nx_oci__http_error(err, NX_EIO, &q, &r, r.status == 401 ?
				     "registry refused the credentials (docker login, or --username "
				     "with --password-stdin)" : "registry does not answer the OCI "
				     "distribution API");
		goto fail;
	}
	nx_oci__resp_release(&r);
	return 0;
fail:
	nx_oci__resp_release(&r);
	nx_oci__client_close(c);
	return rc;
}

void nx_oci__client_close(struct oci_client *c)
{
	if (c->curl)
		curl_easy_cleanup(c->curl);
	c->curl = NULL;
	nx_oci__creds_release(&c->creds);
	wipe_free(c->auth);
	c->auth = NULL;
	free(c->challenge);
	c->challenge = NULL;
}

void nx_oci_opts_init(struct nx_oci_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->chunk_size = NX_OCI_CHUNK_DEFAULT;
	o->backoff = 0.5;
}

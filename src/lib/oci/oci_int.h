/*
 * oci_int.h - inside libnexus's OCI client: the HTTP exchange (libcurl),
 * authentication and retries shared by push.c and pull.c.
 */
#ifndef NEXUS_OCI_INT_H
#define NEXUS_OCI_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* plain prototypes: http.c calls libcurl through pointers (see there) */
#define CURL_DISABLE_TYPECHECK 1
#include <curl/curl.h>
#include <openssl/evp.h>

#include "nexus/oci.h"

struct oci_creds {
	char *user, *pass;    /* wiped on release */
};

struct oci_client {
	CURL *curl;
	char base[300];       /* "http[s]://host[:port]" */
	const char *repo;     /* borrowed from the ref */
	const struct nx_oci_opts *o;
	struct oci_creds creds;
	char *auth;           /* "Authorization: ..." header line, or NULL; wiped */
	char *challenge;      /* the last Bearer challenge, to renew an expired token */
	double token_expiry;  /* monotonic seconds; 0: none */
	const char *actions;  /* "pull" or "pull,push" */
	unsigned retries;     /* requests retried in all (for --json and tests) */
};

/* A blob written to a file as it arrives: a running SHA-256, a hard cap
 * (sink.c; a large blob is hashed on a second thread that reads the file
 * back behind the writer). */
struct oci_follow;
struct oci_sink {
	int fd;
	EVP_MD_CTX *md;
	struct oci_follow *follow;
	char *buf;            /* bytes received, not yet written */
	size_t len, buf_cap;
	uint64_t written;     /* bytes received (resume from here) */
	uint64_t flushed;     /* of which written to the file */
	uint64_t cap;
	int werr;             /* errno of a failed write */
	bool over;            /* the server sent more than cap */
	bool bad_range;       /* a 206 that does not continue where we were */
};

/* writeback: start writing each hashed window to the disk (sync_file_range) */
int nx_oci__sink_init(struct oci_sink *s, int fd, uint64_t cap, bool writeback, nx_error *err);
/* Append n bytes at s->written; -1 on a write error. */
int nx_oci__sink_write(struct oci_sink *s, const char *buf, size_t n);
/* The server ignored our Range: empty the file, hash from the start. */
int nx_oci__sink_restart(struct oci_sink *s);
/* Write what is gathered, then the SHA-256 of the s->written bytes; an
 * error naming path when they could not be written or hashed. */
int nx_oci__sink_final(struct oci_sink *s, unsigned char sha[NX_SHA256_LEN], const char *path,
		       nx_error *err);
void nx_oci__sink_release(struct oci_sink *s);

struct oci_req {
	const char *method;   /* GET HEAD PUT POST PATCH */
	const char *url;      /* absolute, or a path under the registry ("/v2/...") */
	const char *accept, *content_type, *content_range;
	const char *body;     /* a buffer body ... */
	size_t body_len;
	int body_fd;          /* ... or a range of a file (body_fd >= 0) */
	uint64_t body_off, fd_len;
	struct oci_sink *sink;/* GET into a file, resumed with Range on retries */
	size_t cap;           /* bytes of a body kept in memory (0: NX_OCI_RESPONSE_MAX) */
	bool idempotent;      /* retried on 429, 5xx and a lost connection */
	bool follow;          /* follow redirects (blob GET only; no credentials follow) */
	const char *what;     /* progress name, or NULL */
	uint64_t total;       /* progress total */
};

struct oci_resp {
	long status;
	char *body;
	size_t len;
	bool body_over;       /* the body passed its cap */
	char location[2048], digest[96], range[64], www_auth[1024], ctype[160], crange[96];
	char subject[96];     /* OCI-Subject: the registry keeps referrers (spec 1.1) */
	long retry_after;     /* seconds; -1: none */
	long long clen;       /* Content-Length; -1: none */
};

bool nx_oci__digest_ok(const char *d);
void nx_oci__creds_release(struct oci_creds *c);
int nx_oci__creds_from_docker(struct oci_creds *c, const char *registry, nx_error *err);

/* Open a client for ref's registry and repository, wanting `actions`
 * ("pull" or "pull,push"), and ping /v2/ (authenticating if challenged). */
int nx_oci__client_open(struct oci_client *c, const nx_oci_ref *ref, const struct nx_oci_opts *o,
		     const char *actions, nx_error *err);
void nx_oci__client_close(struct oci_client *c);

/*
 * One request with authentication (one re-auth on 401) and, when
 * q->idempotent, retries with jittered back-off on 429/5xx/lost connections
 * honouring Retry-After up to NX_OCI_RETRY_AFTER_MAX.  0 when a response
 * came (any status: the caller judges it), NX_EIO when none did, NX_ELIMIT
 * when a sink's cap or the body cap was passed, NX_EUNSAFE for a redirect
 * the request may not follow.  r is released by nx_oci__resp_release.
 */
int nx_oci__request(struct oci_client *c, const struct oci_req *q, struct oci_resp *r,
		 nx_error *err);
void nx_oci__resp_release(struct oci_resp *r);

/* Sleep before retry number attempt (0-based): retry_after seconds when the
 * registry said (>= 0), else jittered exponential back-off; capped at
 * NX_OCI_RETRY_AFTER_MAX. */
void nx_oci__back_off(const struct oci_client *c, unsigned attempt, long retry_after);

/* "METHOD URL: HTTP status (CODE: message; ...)" from the registry's
 * errors[] into err with code; returns code. */
int nx_oci__http_error(nx_error *err, int code, const struct oci_req *q,
		    const struct oci_resp *r, const char *what);

/* True when the response's errors[] has this code (e.g. "DIGEST_INVALID"). */
bool nx_oci__has_error_code(const struct oci_resp *r, const char *code);

/* Resolve a Location against the registry: a path, or an absolute URL on
 * exactly the registry's scheme, host and port (else NX_EUNSAFE). */
int nx_oci__location(char *out, size_t outsz, const struct oci_client *c, const char *loc,
		  nx_error *err);

/*
 * Job i of n for each i, largest sizes[i] first, on c and on up to
 * NX_OCI__CONNECTIONS - 1 more clients opened like it for `actions`
 * (pool.c).  A job may take mu around what the jobs share.  The first
 * error stops the rest and is returned.
 */
#define NX_OCI__CONNECTIONS 4
typedef int (*nx_oci__job)(struct oci_client *c, size_t i, void *ctx, pthread_mutex_t *mu,
			   nx_error *err);
int nx_oci__pool_run(struct oci_client *c, const nx_oci_ref *ref, const char *actions,
		     const uint64_t *sizes, size_t n, nx_oci__job job, void *ctx, nx_error *err);

#endif

/*
 * attest.c - the attestation of a verify result (nexus/attest.h): an
 * in-toto Statement v1 in a DSSE envelope, Ed25519 over DSSE's
 * pre-authentication encoding (PAE).  Base64 is OpenSSL's EVP block
 * coder; the decoder is strict (one alphabet, padding checked) because
 * the envelope is untrusted input.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "nexus/attest.h"
#include "nexus/oci.h"

#define DUMP_FLAGS (JSON_COMPACT | JSON_SORT_KEYS)
#define SIGS_MAX 16   /* signatures of one envelope looked at */

static char *b64_encode(const void *in, size_t len)
{
	char *out = malloc(4 * ((len + 2) / 3) + 1);

	if (out)
		EVP_EncodeBlock((unsigned char *)out, in, (int)len);
	return out;
}

/* Standard or URL-safe base64 with padding (DSSE allows both); *out_len
 * bytes into a malloc'd buffer.  -1 for anything else. */
static int b64_decode(unsigned char **out, size_t *out_len, const char *in)
{
	size_t n = strlen(in), i, pad = 0;
	char *t;
	int got;

	if (!n || n % 4 || n > 2 * NX_ATTEST_MAX || !(t = strdup(in)))
		return -1;
	for (i = 0; i < n; i++) {
		char c = t[i];

		if (c == '-')
			t[i] = '+';
		else if (c == '_')
			t[i] = '/';
		else if (c == '=' && i >= n - 2)
			pad++;
		else if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
			   c == '+' || c == '/'))
			break;
	}
	if (i < n || (pad == 1 && t[n - 1] != '=') || !(*out = malloc(n / 4 * 3 + 1))) {
		free(t);
		return -1;
	}
	got = EVP_DecodeBlock(*out, (unsigned char *)t, (int)n);
	free(t);
	if (got < 0 || (size_t)got < pad) {
		free(*out);
		return -1;
	}
	*out_len = (size_t)got - pad;
	return 0;
}

/* PAE(type, body) = "DSSEv1" SP len(type) SP type SP len(body) SP body. */
static char *pae(size_t *out_len, const char *type, const void *body, size_t len)
{
	size_t head = strlen(type) + 64;
	char *p = malloc(head + len);
	int n;

	if (!p)
		return NULL;
	n = snprintf(p, head, "DSSEv1 %zu %s %zu ", strlen(type), type, len);
	memcpy(p + n, body, len);
	*out_len = (size_t)n + len;
	return p;
}

static json_t *subject(const char *name, const unsigned char sha[NX_SHA256_LEN])
{
	char hex[2 * NX_SHA256_LEN + 1];

	nx_hex(hex, sha);
	return json_pack("{s:s, s:{s:s}}", "name", name, "digest", "sha256", hex);
}

static bool is_onnx(const char *path)
{
	size_t n = strlen(path);

	return !strncmp(path, "model/", 6) && n > 5 && !strcmp(path + n - 5, ".onnx");
}

/* The Statement: manifest.json, the OCI artifact's image manifest (what a
 * registry's referrers name) and every .onnx file under model/. */
static int statement(char **out, const nx_manifest *m, const char *mjson, size_t mlen,
		     const char *report_json, nx_error *err)
{
	unsigned char sha[NX_SHA256_LEN];
	json_t *subj = json_array(), *pred, *st = NULL;
	char *art = NULL, *cfg = NULL;
	size_t alen, clen, i;
	int rc;

	if (!(pred = json_loads(report_json, JSON_REJECT_DUPLICATES, NULL)) || !json_is_object(pred)) {
		rc = nx_error_set(err, NX_EFORMAT, NULL, 0, -1,
				  "the verify report to attest is not a JSON object");
		goto out;
	}
	if ((rc = nx_oci_artifact(&art, &alen, &cfg, &clen, m, mjson, mlen, err)))
		goto out;
	rc = NX_ENOMEM;
	if (!subj || nx_sha256_buf(sha, mjson, mlen) ||
	    json_array_append_new(subj, subject(NX_MANIFEST_NAME, sha)) ||
	    nx_sha256_buf(sha, art, alen) ||
	    json_array_append_new(subj, subject(NX_ATTEST_OCI_SUBJECT, sha)))
		goto oom;
	for (i = 0; i < m->nfiles; i++)
		if (is_onnx(m->files[i].path) &&
		    json_array_append_new(subj, subject(m->files[i].path, m->files[i].sha256)))
			goto oom;
	st = json_pack("{s:s, s:O, s:s, s:O}", "_type", NX_ATTEST_STATEMENT_TYPE, "subject", subj,
		       "predicateType", NX_ATTEST_PREDICATE_TYPE, "predicate", pred);
	if (!st || !(*out = json_dumps(st, DUMP_FLAGS)))
		goto oom;
	rc = 0;
	goto out;
oom:
	rc = nx_error_oom(err, NULL);
out:
	json_decref(subj);
	json_decref(pred);
	json_decref(st);
	free(art);
	free(cfg);
	return rc;
}

int nx_attest_create(char **out, size_t *out_len, const nx_manifest *m, const char *mjson,
		     size_t mlen, const char *report_json, const nx_key *key, nx_error *err)
{
	unsigned char sig[NX_SIG_LEN];
	char id[NX_KEY_ID_LEN + 1], *st = NULL, *p = NULL, *b64p = NULL, *b64s = NULL, *s;
	json_t *env = NULL;
	size_t plen;
	int rc;

	if ((rc = statement(&st, m, mjson, mlen, report_json, err)))
		return rc;
	if (!(p = pae(&plen, NX_ATTEST_PAYLOAD_TYPE, st, strlen(st)))) {
		rc = nx_error_oom(err, NULL);
		goto out;
	}
	if ((rc = nx_key_sign_bytes(sig, key, p, plen, err)))
		goto out;
	nx_key_id(id, key);
	if (!(b64p = b64_encode(st, strlen(st))) || !(b64s = b64_encode(sig, sizeof(sig))) ||
	    !(env = json_pack("{s:s, s:s, s:[{s:s, s:s}]}", "payload", b64p, "payloadType",
			      NX_ATTEST_PAYLOAD_TYPE, "signatures", "keyid", id, "sig", b64s)) ||
	    !(s = json_dumps(env, DUMP_FLAGS))) {
		rc = nx_error_oom(err, NULL);
		goto out;
	}
	*out_len = strlen(s);
	*out = s;
out:
	json_decref(env);
	free(st);
	free(p);
	free(b64p);
	free(b64s);
	return rc;
}

/* Which trusted key signed PAE(payload)?  Its id in keyid, else "". */
static int find_signer(char keyid[NX_KEY_ID_LEN + 1], json_t *sigs, const char *type,
		       const unsigned char *payload, size_t plen, nx_key *const *keys,
		       size_t nkeys, nx_error *err)
{
	unsigned char *sig = NULL;
	size_t i, k, slen, alen;
	char *a, id[NX_KEY_ID_LEN + 1];
	json_t *s;

	keyid[0] = 0;
	if (!(a = pae(&alen, type, payload, plen)))
		return nx_error_oom(err, NULL);
	json_array_foreach(sigs, i, s) {
		const char *b = json_string_value(json_object_get(s, "sig"));

		if (i >= SIGS_MAX || !b || b64_decode(&sig, &slen, b))
			continue;
		for (k = 0; k < nkeys && !keyid[0]; k++)
			if (slen == NX_SIG_LEN && nx_key_verify_bytes(keys[k], a, alen, sig)) {
				nx_key_id(id, keys[k]);
				memcpy(keyid, id, sizeof(id));
			}
		free(sig);
		if (keyid[0])
			break;
	}
	free(a);
	return 0;
}

static bool is(json_t *v, const char *want)
{
	return json_is_string(v) && !strcmp(json_string_value(v), want);
}

static bool names_manifest(json_t *subj, const char *hex)
{
	size_t i;
	json_t *s;

	json_array_foreach(subj, i, s) {
		const char *name = json_string_value(json_object_get(s, "name"));
		const char *d = json_string_value(json_object_get(json_object_get(s, "digest"), "sha256"));

		if (name && d && !strcmp(name, NX_MANIFEST_NAME) && !strcmp(d, hex))
			return true;
	}
	return false;
}

int nx_attest_check(struct nx_attest_info *out, const char *env, size_t len,
		    nx_key *const *keys, size_t nkeys,
		    const unsigned char manifest_sha[NX_SHA256_LEN], nx_error *err)
{
	struct nx_attest_info info = { 0 };
	char hex[2 * NX_SHA256_LEN + 1];
	json_t *e = NULL, *st = NULL, *sigs;
	unsigned char *payload = NULL;
	const char *type, *p, *v;
	size_t plen;
	int rc;

	if (len > NX_ATTEST_MAX)
		return nx_error_set(err, NX_ELIMIT, NULL, 0, -1,
				    "the attestation is over %u bytes; refused", NX_ATTEST_MAX);
	e = json_loadb(env, len, JSON_REJECT_DUPLICATES, NULL);
	type = json_string_value(json_object_get(e, "payloadType"));
	p = json_string_value(json_object_get(e, "payload"));
	sigs = json_object_get(e, "signatures");
	if (!type || !p || !json_is_array(sigs) || b64_decode(&payload, &plen, p)) {
		rc = nx_error_set(err, NX_EFORMAT, NULL, 0, -1,
				  "the attestation is not a DSSE envelope (payloadType, base64 "
				  "payload, signatures[])");
		goto out;
	}
	if ((rc = find_signer(info.keyid, sigs, type, payload, plen, keys, nkeys, err)))
		goto out;
	if (!info.keyid[0]) {
		rc = nx_error_set(err, NX_ECHECK, NULL, 0, -1,
				  "the attestation has no valid signature by a trusted key (--pubkey)");
		goto out;
	}
	/* only signed bytes are read from here on */
	st = json_loadb((const char *)payload, plen, JSON_REJECT_DUPLICATES, NULL);
	nx_hex(hex, manifest_sha);
	v = json_string_value(json_object_get(json_object_get(st, "predicate"), "verdict"));
	if (strcmp(type, NX_ATTEST_PAYLOAD_TYPE) ||
	    !json_is_object(st) ||
	    !is(json_object_get(st, "_type"), NX_ATTEST_STATEMENT_TYPE) ||
	    !is(json_object_get(st, "predicateType"), NX_ATTEST_PREDICATE_TYPE)) {
		rc = nx_error_set(err, NX_ECHECK, NULL, 0, -1,
				  "the attestation is not an in-toto Statement v1 of %s",
				  NX_ATTEST_PREDICATE_TYPE);
	} else if (!names_manifest(json_object_get(st, "subject"), hex)) {
		rc = nx_error_set(err, NX_ECHECK, NULL, 0, -1,
				  "the attestation is about another bundle: its subject does not "
				  "name manifest.json sha256:%s", hex);
	} else if (!v || (strcmp(v, "PASS") && strcmp(v, "WARN"))) {
		rc = nx_error_set(err, NX_ECHECK, NULL, 0, -1,
				  "the attested verify verdict is %s, not PASS or WARN",
				  v ? v : "missing");
	} else {
		snprintf(info.verdict, sizeof(info.verdict), "%s", v);
		*out = info;
	}
out:
	json_decref(e);
	json_decref(st);
	free(payload);
	return rc;
}

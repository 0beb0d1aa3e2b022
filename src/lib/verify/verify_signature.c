/*
 * verify_signature.c - check `signature`: the manifest is signed by one of
 * the keys the verifier was given (--pubkey).  Trust never comes from the
 * bundle itself.
 */
#include "verify_internal.h"

#include "nexus/sign.h"

#define CHECK NX_CHECK_SIGNATURE

int nx_vfy__signature(struct vfy_ctx *c, bool *skipped, nx_error *err)
{
	enum nx_sig_status st;
	char keyid[NX_KEY_ID_LEN + 1] = "";
	int rc;

	if (!c->m) {
		/* integrity already failed: there is nothing trustworthy to check */
		*skipped = true;
		return 0;
	}
	rc = nx_manifest_verify_signature(&st, keyid, c->m, c->opts->keys, c->opts->nkeys, err);
	if (rc)
		return rc;
	switch (st) {
	case NX_SIG_VALID:
		c->signature_valid = true;
		return nx_report_add(c->r, CHECK, NX_SEV_INFO, NX_F_SIGNED, NX_MANIFEST_NAME, 0,
				     "manifest signed by trusted key %s", keyid);
	case NX_SIG_UNSIGNED:
		return nx_report_add(c->r, CHECK, c->opts->require_signature ? NX_SEV_FAIL : NX_SEV_WARN,
				     NX_F_UNSIGNED, NX_MANIFEST_NAME, 0,
				     "the manifest is not signed; sign it with nexus sign --key KEY%s",
				     c->opts->require_signature ? " (--require-signature given)" : "");
	case NX_SIG_UNKNOWN_KEY:
		/* No key given at all: an unchecked signature proves nothing but
		 * betrays nothing either - like unsigned, not like tampering. */
		if (!c->opts->nkeys)
			return nx_report_add(c->r, CHECK,
					     c->opts->require_signature ? NX_SEV_FAIL : NX_SEV_WARN,
					     NX_F_SIGNATURE_UNCHECKED, NX_MANIFEST_NAME, 0,
					     "the manifest is signed by key %s but no --pubkey was given, "
					     "so the signature was not checked; pass the release's public "
					     "key", keyid[0] ? keyid : "?");
		return nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_UNKNOWN_KEY, NX_MANIFEST_NAME, 0,
				     "signed by key %s, which is not among the %zu trusted key(s) given "
				     "with --pubkey", keyid[0] ? keyid : "?", c->opts->nkeys);
	default:
		return nx_report_add(c->r, CHECK, NX_SEV_FAIL, st == NX_SIG_BAD_SIGNATURE ?
				     NX_F_BAD_SIGNATURE : NX_F_BAD_ENCODING, NX_MANIFEST_NAME, 0,
				     "the manifest signature%s%s is not valid (%s): the manifest was "
				     "changed after signing or the signature is corrupt",
				     keyid[0] ? " by key " : "", keyid, nx_sig_status_code(st));
	}
}

/* cli_oci.c - what `nexus push` and `nexus pull` share: registry options,
 * the password from stdin, and progress on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "cli.h"
#include "nexus/clock.h"
#include "nexus/config.h"
#include "nexus/sign.h"

#define PASSWORD_MAX 4096

int cli_oci_opt(struct cli_oci *r, const struct cli_verb *verb, int key, const char *arg)
{
	nx_error err;

	switch (key) {
	case CLI_OCI_USERNAME: r->o.username = arg; return 0;
	case CLI_OCI_PASSWORD_STDIN: r->password_stdin = true; return 0;
	case CLI_OCI_PLAIN_HTTP: r->o.plain_http = true; return 0;
	case CLI_OCI_CA_FILE: r->o.ca_file = arg; return 0;
	case CLI_OCI_JSON: r->json = true; return 0;
	case CLI_OCI_REQUIRE_SIG: r->require_sig = true; return 0;
	case CLI_OCI_NO_SANDBOX: r->no_sandbox = true; return 0;
	case CLI_OCI_PUBKEY:
		if (r->nkeys >= CLI_OCI_KEYS_MAX)
			return cli_usage(verb, "at most %d --pubkey", CLI_OCI_KEYS_MAX);
		nx_error_clear(&err);
		if (nx_key_load_public(&r->keys[r->nkeys], arg, &err))
			return cli_fail(verb->name, &err);
		r->nkeys++;
		return 0;
	case CLI_OCI_CHUNK:
		if (nx_parse_size(&r->o.chunk_size, arg, &err) || r->o.chunk_size < 1)
			return cli_usage(verb, "--chunk-size: '%s' is not a size", arg);
		return 0;
	}
	return -1;
}

/* The password is one line of stdin (its newline dropped), never argv. */
int cli_oci_finish(struct cli_oci *r, const struct cli_verb *verb)
{
	size_t n;

	if (r->password_stdin && !r->o.username)
		return cli_usage(verb, "--password-stdin needs --username");
	if (r->o.username && !r->password_stdin)
		return cli_usage(verb, "--username needs --password-stdin (a password is never "
				 "taken from the command line)");
	if (!r->password_stdin)
		return 0;
	if (!(r->password = calloc(1, PASSWORD_MAX + 2)))
		return 3;
	if (!fgets(r->password, PASSWORD_MAX + 2, stdin)) {
		fprintf(stderr, "nexus %s: error: --password-stdin: no password on stdin\n", verb->name);
		return 2;
	}
	n = strlen(r->password);
	if (n > PASSWORD_MAX) {
		fprintf(stderr, "nexus %s: error: --password-stdin: longer than %d bytes\n",
			verb->name, PASSWORD_MAX);
		return 2;
	}
	while (n && (r->password[n - 1] == '\n' || r->password[n - 1] == '\r'))
		r->password[--n] = 0;
	r->o.password = r->password;
	return 0;
}

void cli_oci_release(struct cli_oci *r)
{
	if (r->password)
		OPENSSL_cleanse(r->password, PASSWORD_MAX + 2);
	free(r->password);
	r->password = NULL;
	while (r->nkeys)
		nx_key_free(r->keys[--r->nkeys]);
	free(r->runtime_dir);
	r->runtime_dir = NULL;
}

void cli_oci_verify_opts(struct cli_oci *r, struct nx_verify_opts *vo)
{
	nx_verify_opts_init(vo);
	vo->keys = r->keys;
	vo->nkeys = r->nkeys;
	vo->require_signature = r->require_sig;
	vo->functional = !r->no_sandbox;
	if (!r->runtime_dir)
		r->runtime_dir = cli_runtime_dir();
	vo->runtime_dir = r->runtime_dir;
}

void cli_oci_findings(const char *verb, const nx_report *rep)
{
	const struct nx_finding *f;
	size_t n, i;

	f = nx_report_findings(rep, &n);
	for (i = 0; i < n; i++)
		if (f[i].severity != NX_SEV_INFO)
			fprintf(stderr, "nexus %s: %s %s %s %s: %s\n", verb,
				nx_severity_name(f[i].severity), f[i].check, f[i].code,
				f[i].path[0] ? f[i].path : "-", f[i].message);
}

/* Transfers that last over a second get a status line (a terminal only). */
void cli_oci_progress(void *ctx, const char *what, uint64_t done, uint64_t total)
{
	struct cli_oci *r = ctx;
	double t = nx_now();

	if (r->what != what) {
		r->what = what;
		r->started = t;
		r->shown = 0;
	}
	if (t - r->started < 1.0 || t - r->shown < 0.2)
		return;
	r->shown = t;
	cli_status(r->verb, "%s %.1f/%.1f MiB", what, (double)done / 1048576.0,
		   (double)total / 1048576.0);
}

int cli_oci_print_json(json_t *o)
{
	char *s = o ? json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;

	json_decref(o);
	if (!s)
		return 3;
	printf("%s\n", s);
	free(s);
	return 0;
}

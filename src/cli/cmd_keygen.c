/* cmd_keygen.c - `nexus keygen -o PREFIX`: a new Ed25519 signing key pair. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>

#include "cli.h"
#include "nexus/sign.h"

enum { OPT_OUTPUT = 1, OPT_JSON };

static const struct cli_opt opts[] = {
	{ "output", 'o', "PREFIX", "write PREFIX.key (private, 0600) and PREFIX.pub", OPT_OUTPUT },
	{ "json", 0, NULL, "print {schema, key_id, private_key, public_key} as one JSON object", OPT_JSON },
	{0},
};

static int print_json(const char *prefix, const char *id)
{
	json_t *o = json_object();
	char *priv = NULL, *pub = NULL;
	int rc = -1;

	if (asprintf(&priv, "%s.key", prefix) >= 0 && asprintf(&pub, "%s.pub", prefix) >= 0 && o &&
	    !json_object_set_new(o, "schema", json_string("nexus.keygen.v1")) &&
	    !json_object_set_new(o, "key_id", json_string(id)) &&
	    !json_object_set_new(o, "private_key", json_string(priv)) &&
	    !json_object_set_new(o, "public_key", json_string(pub)) &&
	    !json_dumpf(o, stdout, JSON_INDENT(2) | JSON_SORT_KEYS) && putchar('\n') != EOF)
		rc = 0;
	json_decref(o);
	free(priv);
	free(pub);
	return rc;
}

static int run(const struct cli_verb *verb, int argc, char **argv)
{
	char id[NX_KEY_ID_LEN + 1];
	const char *prefix = NULL;
	struct cli_parser p;
	bool json = false;
	nx_error err;
	int k;

	cli_init(&p, verb, argc, argv);
	while ((k = cli_next(&p)) > 0) {
		if (k == OPT_OUTPUT)
			prefix = p.optarg;
		else if (k == OPT_JSON)
			json = true;
	}
	if (k < 0)
		return k == -1 ? 0 : 2;
	if (p.npos)
		return cli_usage(verb, "unexpected argument '%s'", p.pos[0]);
	if (!prefix || !*prefix)
		return cli_usage(verb, "-o PREFIX is required");
	nx_error_clear(&err);
	if (nx_key_generate(prefix, id, &err) != 0)
		return cli_fail(verb->name, &err);
	if (json ? print_json(prefix, id) != 0 : printf("%s\n", id) < 0)
		return 3;
	fprintf(stderr, "nexus keygen: wrote %s.key (private: keep it secret, mode 0600) and "
			"%s.pub (give it to verifiers)\n", prefix, prefix);
	return 0;
}

const struct cli_verb cmd_keygen = {
	.name = "keygen",
	.args = NULL,
	.summary = "generate an Ed25519 key pair for signing bundles",
	.details = "Writes PREFIX.key (unencrypted PKCS#8 PEM, mode 0600) and PREFIX.pub\n"
		   "(SubjectPublicKeyInfo PEM, mode 0644) and prints the key id: the first\n"
		   "16 hex digits of SHA-256 of the raw 32-byte public key.  Existing files\n"
		   "are never overwritten (exit 2).",
	.opts = opts,
	.run = run,
};

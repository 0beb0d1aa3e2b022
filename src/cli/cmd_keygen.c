/* cmd_keygen.c - `nexus keygen -o PREFIX`: a new Ed25519 signing key pair. */
#include <stdio.h>

#include "cli.h"
#include "nexus/sign.h"

enum { OPT_OUTPUT = 1 };

static const struct cli_opt opts[] = {
	{ "output", 'o', "PREFIX", "write PREFIX.key (private, 0600) and PREFIX.pub", OPT_OUTPUT },
	{0},
};

static int run(const struct cli_verb *verb, int argc, char **argv)
{
	char id[NX_KEY_ID_LEN + 1];
	const char *prefix = NULL;
	struct cli_parser p;
	nx_error err;
	int k;

	cli_init(&p, verb, argc, argv);
	while ((k = cli_next(&p)) > 0)
		if (k == OPT_OUTPUT)
			prefix = p.optarg;
	if (k < 0)
		return k == -1 ? 0 : 2;
	if (p.npos)
		return cli_usage(verb, "unexpected argument '%s'", p.pos[0]);
	if (!prefix || !*prefix)
		return cli_usage(verb, "-o PREFIX is required");
	nx_error_clear(&err);
	if (nx_key_generate(prefix, id, &err) != 0)
		return cli_fail(verb->name, &err);
	printf("%s\n", id);
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

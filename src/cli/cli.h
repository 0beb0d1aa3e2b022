/*
 * cli.h - shared pieces of the `nexus` program: the verb table, one option
 * table per verb (which also generates that verb's --help), and printing of
 * libnexus errors.  Only src/cli/ includes this.
 */
#ifndef NEXUS_CLI_H
#define NEXUS_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "nexus/error.h"
#include "nexus/fs.h"
#include "nexus/oci.h"
#include "nexus/verify.h"
#include "nexus/sandbox.h"
#include "util/opt_int.h"

typedef struct json_t json_t;

/* One option of a verb.  `key` is what cli_next() returns for it. */
struct cli_opt {
	const char *name;  /* long name without "--" */
	char short_name;   /* 0 for none */
	const char *arg;   /* metavariable ("PATH") or NULL for a flag */
	const char *help;  /* one line */
	int key;
};

struct cli_verb {
	const char *name;
	const char *args;     /* positional synopsis, e.g. "BUNDLE" */
	const char *summary;  /* one line */
	const char *details;  /* extra paragraph(s) for --help, may be NULL */
	const struct cli_opt *opts; /* terminated by {0} */
	int (*run)(const struct cli_verb *verb, int argc, char **argv);
};

/* Parser state over argv for one verb; --help is handled here. */
struct cli_parser {
	const struct cli_verb *verb;
	struct nx_opt_scan scan;  /* util/opt_int.h: argv split into words */
	const char *optarg; /* argument of the option just returned */
	char *pos[64];      /* positional arguments, in order */
	int npos;
};

void cli_init(struct cli_parser *p, const struct cli_verb *verb, int argc, char **argv);

/*
 * Return the key of the next option (optarg set when it takes one), or 0 at
 * the end.  Positionals are collected into p->pos.  On --help it prints the
 * help and returns -1 (caller exits 0); on a usage error it prints the error
 * and returns -2 (caller exits 2).
 */
int cli_next(struct cli_parser *p);

/* Print the verb's help to f. */
void cli_help(const struct cli_verb *verb, FILE *f);

/* Print "nexus VERB: error: message" (with path:line or @offset) to stderr
 * and return the exit status for err->code.  Under --json the error is also
 * the one document on stdout (cli_json_error). */
int cli_fail(const char *verb, const nx_error *err);

/*
 * --json anywhere among args (before "--"): stdout's bytes are counted, and
 * every failure
 * reported by cli_fail/cli_usage/cli_json_error prints, on stdout,
 *   {"schema": "nexus.error.v1", "verb": V, "exit_status": N,
 *    "error": {"code": nx_error_name, "message": M, "path": P, "line"?, "offset"?}}
 * so that a pipeline parsing stdout always gets one JSON document.
 */
void cli_json_mode(int argc, char **argv);
bool cli_json_on(void);
/* Under --json, print the error document above (unless stdout already has
 * a document) and return status; without --json only return status. */
int cli_json_error(const char *verb, int status, const nx_error *err);
/* After a verb ran: under --json, a failure that printed nothing to stdout
 * gets a generic error document.  Returns status. */
int cli_json_finish(const char *verb, int status);

/*
 * A live status line on stderr, only when stderr is a terminal that takes
 * escapes (TERM set and not "dumb", NO_COLOR unset): "nexus VERB: message"
 * overwriting the previous one (no newline).  fmt NULL clears the line.
 * Pipes, CI logs and dumb terminals get nothing.
 */
void cli_status(const char *verb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * The sandbox options shared by build, verify and run: --sandbox=NAME
 * (arg; NULL = $NEXUS_SANDBOX, else auto) into *backend, and
 * --sandbox-memory=SIZE (mem; NULL = not given) into *memory.  0, or the
 * exit status of a usage error (2) already printed.
 */
#define CLI_SANDBOX_HELP "sandbox backend: auto (bwrap, else landlock), bwrap or landlock " \
	"(default $NEXUS_SANDBOX, else auto)"
#define CLI_SANDBOX_MEMORY_HELP "the sandbox's memory limit (RLIMIT_AS), e.g. 16GiB (default " \
	"scaled to the model; docs/TRV.md)"
int cli_sandbox_opts(const struct cli_verb *verb, enum nx_sandbox_backend *backend,
		     const char *arg, uint64_t *memory, const char *mem);
/* Bytes of the regular files in the bundle's model/ (model + external data):
 * what the sandbox limits scale with. */
uint64_t cli_model_bytes(int dirfd);

/* Print a usage error for verb and return 2. */
int cli_usage(const struct cli_verb *verb, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*
 * The trusted nexus runtime that build copies and verify compares with:
 * $NEXUS_RUNTIME_DIR, else <dir of this executable>/../libexec/nexus.  A new
 * string the caller frees, or NULL when neither can be found (or no memory).
 */
char *cli_runtime_dir(void);

/*
 * Registry options of push and pull (cli_oci.c): keys from CLI_OCI_BASE up,
 * so a verb's own option keys stay below it.
 */
enum {
	CLI_OCI_BASE = 100, CLI_OCI_USERNAME = CLI_OCI_BASE, CLI_OCI_PASSWORD_STDIN,
	CLI_OCI_PLAIN_HTTP, CLI_OCI_CA_FILE, CLI_OCI_JSON, CLI_OCI_CHUNK, CLI_OCI_PUBKEY,
	CLI_OCI_REQUIRE_SIG, CLI_OCI_NO_SANDBOX,
};
#define CLI_OCI_KEYS_MAX 64
#define CLI_OCI_OPTS \
	{"username", 'u', "USER", "registry user (the password comes from --password-stdin; " \
	 "default: ~/.docker/config.json)", CLI_OCI_USERNAME}, \
	{"password-stdin", 0, NULL, "read the registry password from stdin", \
	 CLI_OCI_PASSWORD_STDIN}, \
	{"plain-http", 0, NULL, "talk http:// to the registry (a test registry only)", \
	 CLI_OCI_PLAIN_HTTP}, \
	{"ca-file", 0, "PEM", "also trust this CA for the registry's TLS", CLI_OCI_CA_FILE}, \
	{"json", 0, NULL, "print the result as one JSON document", CLI_OCI_JSON}, \
	{"pubkey", 0, "PUB", "trust this Ed25519 public key (PEM); repeatable", CLI_OCI_PUBKEY}, \
	{"require-signature", 0, NULL, "an unsigned manifest is refused", CLI_OCI_REQUIRE_SIG}, \
	{"no-sandbox", 0, NULL, "verify without the functional check (TRV-5)", CLI_OCI_NO_SANDBOX}

struct cli_oci {
	struct nx_oci_opts o;
	const char *verb;
	bool password_stdin, json, require_sig, no_sandbox;
	char *password;          /* wiped by cli_oci_release */
	nx_key *keys[CLI_OCI_KEYS_MAX];
	size_t nkeys;
	char *runtime_dir;
	const char *what;        /* progress: the transfer under way */
	double started, shown;
};
/* Handle a CLI_OCI_* key: 0, the exit status of a usage error, or -1 for
 * a key that is not one. */
int cli_oci_opt(struct cli_oci *r, const struct cli_verb *verb, int key, const char *arg);
/* After parsing: check the pairing and read the password.  0 or an exit status. */
int cli_oci_finish(struct cli_oci *r, const struct cli_verb *verb);
void cli_oci_release(struct cli_oci *r);
/* verify's options from the registry options (keys, signature, sandbox,
 * the trusted runtime); vo is initialised here. */
void cli_oci_verify_opts(struct cli_oci *r, struct nx_verify_opts *vo);
/* Print o (taken over; NULL: out of memory) as the one JSON document of
 * stdout: 0, or 3 when it cannot be printed. */
int cli_oci_print_json(struct json_t *o);
/* The FAIL (and WARN) findings of a report on stderr, one a line. */
void cli_oci_findings(const char *verb, const nx_report *rep);
/* nx_oci_progress for struct cli_oci *ctx. */
void cli_oci_progress(void *ctx, const char *what, uint64_t done, uint64_t total);

/*
 * SIGINT/SIGTERM remove the staging directory being written (nx_stage),
 * then the signal takes its default action: cli_stage_guard is the
 * on_stage callback of build and pull, cli_stage_guard_install sets the
 * handlers.
 */
void cli_stage_guard(void *ctx, nx_stage *s);
void cli_stage_guard_install(void);

/* cmd_inspect.c: a graph input or output as {name, dtype, shape}. */
struct nx_onnx_value;
json_t *cli_onnx_value_json(const struct nx_onnx_value *v);
/* cmd_bundle.c: <path>/manifest.json as a JSON tree (NULL if unreadable),
 * for objects shown verbatim; parse it strictly with nx_manifest_load first. */
json_t *cli_manifest_tree(const char *path);
/* cmd_bundle.c: `nexus inspect BUNDLE` (a directory); an exit status. */
int cli_inspect_bundle(const char *path, bool json, nx_key *const *keys, size_t nkeys);

/* The verbs, one file each (cmd_<name>.c). */
extern const struct cli_verb cmd_build, cmd_verify, cmd_inspect, cmd_keygen,
	cmd_sign, cmd_manifest, cmd_run, cmd_push, cmd_pull, cmd_init, cmd_serve;
extern const struct cli_verb cmd_pack, cmd_unpack, cmd_fix_modes, cmd_rm, cmd_diff;

#endif

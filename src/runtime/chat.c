/*
 * chat.c - `nexus_cli chat`: renders a list of messages with the chat
 * template of the tokenizer (tokenizer_config.json beside tokenizer.json)
 * and prints the prompt a generation would start from; rt_chat_load is
 * also what `generate --chat` and serve's /v1/chat/completions start from.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "nexus/chat_template.h"
#include "nexus/fs.h"
#include "rt.h"

#define CHAT_CONFIG_MAX (4u << 20)  /* bytes of tokenizer_config.json */

int rt_chat_load(nx_chat_template **out, struct rt_bundle *b, bool required, nx_error *err)
{
	char *cfg = NULL;
	size_t n;
	int rc;

	*out = NULL;
	if (!required && faccessat(b->rootfd, NX_BUNDLE_TOKENIZER_CONFIG, F_OK,
				   AT_SYMLINK_NOFOLLOW) && errno == ENOENT)
		return 0;
	rc = nx_fs_read_all(&cfg, &n, b->rootfd, NX_BUNDLE_TOKENIZER_CONFIG, CHAT_CONFIG_MAX, err);
	if (!rc)
		rc = nx_chat_template_from_config(out, cfg, n, NX_BUNDLE_TOKENIZER_CONFIG, err);
	free(cfg);
	if (!rc && !*out && required)
		rc = nx_error_set(err, NX_ECONFIG, NX_BUNDLE_TOKENIZER_CONFIG, 0, -1,
				  "%s has no chat_template: this tokenizer has no chat format; "
				  "give a plain prompt instead", NX_BUNDLE_TOKENIZER_CONFIG);
	return rc;
}

static int load_template(nx_chat_template **t, const struct rt_args *a, nx_error *err)
{
	char *cfg = NULL, path[4200];
	struct rt_bundle b;
	size_t n;
	int rc, dirfd;

	if (!a->tokdir) {
		/* the bundle's copy, checked against the manifest first */
		if (!(rc = rt_bundle_open(&b, a->bundle, true, err)) &&
		    !(rc = rt_bundle_verified(&b, err)))
			rc = rt_chat_load(t, &b, true, err);
		rt_bundle_release(&b);
		return rc;
	}
	snprintf(path, sizeof(path), "%s/tokenizer_config.json", a->tokdir);
	if ((dirfd = open(a->tokdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		return nx_error_errno(err, NX_EIO, errno, a->tokdir, "cannot open %s", a->tokdir);
	rc = nx_fs_read_all(&cfg, &n, dirfd, "tokenizer_config.json", CHAT_CONFIG_MAX, err);
	close(dirfd);
	if (rc)
		return rc;
	rc = nx_chat_template_from_config(t, cfg, n, path, err);
	free(cfg);
	if (!rc && !*t)
		rc = nx_error_set(err, NX_ECONFIG, path, 0, -1,
				  "%s has no chat_template: this tokenizer has no chat format; "
				  "give a plain prompt instead", path);
	return rc;
}

static int read_messages(char **out, size_t *len, const char *file, nx_error *err)
{
	int fd = strcmp(file, "-") ? open(file, O_RDONLY | O_CLOEXEC) : 0, rc;

	if (fd < 0)
		return nx_error_errno(err, NX_EIO, errno, file, "cannot open %s", file);
	rc = nx_fs_read_fd(out, len, fd, file, NX_CHAT_OUTPUT_MAX, err);
	if (fd)
		close(fd);
	return rc;
}

int rt_cmd_chat(const struct rt_verb *v, int argc, char **argv)
{
	nx_chat_template *t = NULL;
	char *msgs = NULL, *prompt = NULL;
	size_t mlen, plen;
	struct rt_args a;
	nx_error err;
	int rc;

	if ((rc = rt_parse(&a, v, argc, argv)))
		return free(a.texts), free(a.pairs), rc < 0 ? 0 : rc;
	free(a.texts);
	free(a.pairs);
	if (!a.input)
		return rt_usage(v, "give --messages FILE (a JSON list of {\"role\", \"content\"}; - for stdin)");
	nx_error_clear(&err);
	rc = load_template(&t, &a, &err);
	if (!rc)
		rc = read_messages(&msgs, &mlen, a.input, &err);
	if (!rc)
		rc = nx_chat_template_render(t, msgs, mlen, !a.no_gen_prompt, &prompt, &plen, &err);
	if (!rc) {
		if (a.json) {
			json_t *doc = json_pack("{s:s%}", "prompt", prompt, plen);

			rc = !doc || json_dumpf(doc, stdout, JSON_COMPACT | JSON_ENSURE_ASCII) ? NX_EIO : 0;
			json_decref(doc);
			putchar('\n');
		} else if (fwrite(prompt, 1, plen, stdout) != plen) {
			rc = NX_EIO;
		}
		if (rc || fflush(stdout))
			rc = nx_error_set(&err, NX_EIO, NULL, 0, -1, "cannot write the prompt to stdout");
	}
	free(prompt);
	free(msgs);
	nx_chat_template_free(t);
	return rc ? rt_fail(v->name, &err) : 0;
}

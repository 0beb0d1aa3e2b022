/*
 * fuzz_yaml.c - the strict YAML layer and both config parsers on arbitrary
 * bytes.  Whatever the input, each parser either succeeds with a complete
 * result or fails with an error code and a message; neither may crash, leak
 * or read out of bounds (run under ASan/UBSan by `make fuzz`/`make asan`).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nexus/config.h"
#include "nexus/yaml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_error(int rc, const nx_error *e)
{
	/* A failure must say what failed; success must leave no error code. */
	if (rc != 0 && (e->code != rc || e->message[0] == '\0'))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	nx_yaml_node *root = NULL;
	nx_workspace *ws = NULL;
	nx_runtime_config *rc = NULL;
	nx_error e;
	uint64_t bytes;
	char *s;
	int r;

	nx_error_clear(&e);
	r = nx_yaml_parse(&root, buf, size, "fuzz.yaml", &e);
	check_error(r, &e);
	if (r == 0 && (!root || (root->type != NX_YAML_MAPPING && size == 0)))
		abort();
	nx_yaml_free(root);

	nx_error_clear(&e);
	r = nx_workspace_parse(&ws, buf, size, "nexus.yaml", &e);
	check_error(r, &e);
	/* Every accepted path obeys the path rules. */
	if (r == 0 && (!nx_config_path_ok(ws->student.model) ||
		       !nx_config_path_ok(ws->tokenizer) ||
		       !nx_config_path_ok(ws->source_dir)))
		abort();
	nx_workspace_free(ws);

	nx_error_clear(&e);
	r = nx_runtime_config_parse(&rc, buf, size, "runtime.yaml", &e);
	check_error(r, &e);
	if (r == 0 && rc->task == NX_TASK_CLASSIFICATION && rc->nlabels == 0)
		abort();
	nx_runtime_config_free(rc);

	/* The size grammar on the input as a string. */
	if (size < 64 && (s = malloc(size + 1))) {
		memcpy(s, data, size);
		s[size] = '\0';
		check_error(nx_parse_size(&bytes, s, &e), &e);
		free(s);
	}
	return 0;
}

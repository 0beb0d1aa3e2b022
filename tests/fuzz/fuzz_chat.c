/*
 * fuzz_chat.c - the chat template compiler on untrusted template text, and
 * every template that compiles rendered over a few message lists.
 * Invariants: a compile error carries a message and a line; a render is
 * NUL-terminated at its length and within NX_CHAT_OUTPUT_MAX; nothing
 * leaks or crashes.  Seeds (tests/fuzz/corpus/chat) are the test
 * templates of tests/e2e/chat_templates and small bad ones.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nexus/chat_template.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const MESSAGES[] = {
	"[]",
	"[{\"role\":\"system\",\"content\":\" be brief \"},{\"role\":\"user\",\"content\":\"hi \\u00e9\"}]",
	"{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\",\"content\":\"b\","
	"\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":{\"x\":[1,null]}}}]},"
	"{\"role\":\"tool\",\"content\":\"r\"}],\"tools\":[{\"name\":\"f\"}]}",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	nx_chat_template *t = NULL;
	nx_error err;
	size_t i;

	nx_error_clear(&err);
	if (nx_chat_template_compile(&t, (const char *)data, size, "fuzz.jinja", &err)) {
		if (!err.message[0] || (err.code == NX_ECONFIG && err.line < 1))
			abort();
		return 0;
	}
	for (i = 0; i < sizeof(MESSAGES) / sizeof(MESSAGES[0]); i++) {
		char *out = NULL;
		size_t len = 0;

		if (nx_chat_template_render(t, MESSAGES[i], strlen(MESSAGES[i]), i & 1, &out, &len, &err) == 0) {
			if (out[len] != '\0' || len > NX_CHAT_OUTPUT_MAX)
				abort();
			free(out);
		} else if (!err.message[0]) {
			abort();
		}
	}
	nx_chat_template_free(t);
	return 0;
}

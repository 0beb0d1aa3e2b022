/*
 * nexus/chat_template.h - the chat templates of Hugging Face tokenizers
 * (tokenizer_config.json `chat_template`, Jinja) rendered as transformers'
 * apply_chat_template renders them: trim_blocks and lstrip_blocks on, one
 * trailing newline dropped, `raise_exception`, `tojson` as transformers
 * defines it (json.dumps, ensure_ascii off, keys in their order).
 *
 * Only the subset the Llama, Qwen2 and SmolLM families' templates use is
 * compiled: output {{ }}, if/elif/else, for (with `loop`, a filter `if`,
 * unpacking, break/continue), set (also `ns.x` on namespace()), literals,
 * + - * // % ~, comparisons, and/or/not, in, `x if c else y`, the filters
 * and tests listed in chat_int.h, the string and dict methods listed there,
 * whitespace control {%- -%} {{- -}} {%+.  Anything else is a compile
 * error naming the construct and its line: a template is never rendered
 * partly understood.  A value the subset cannot print as Python would (a
 * float, a list) is a render error, not a guess.
 */
#ifndef NEXUS_CHAT_TEMPLATE_H
#define NEXUS_CHAT_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

#include "nexus/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NX_CHAT_TEMPLATE_MAX (256u << 10) /* bytes of template source */
#define NX_CHAT_DEPTH_MAX 64              /* nesting of blocks and expressions */
#define NX_CHAT_OUTPUT_MAX (16u << 20)    /* bytes of a rendered prompt or any string */
#define NX_CHAT_LOOP_MAX 1000000u         /* loop iterations in one render */

typedef struct nx_chat_template nx_chat_template;

/*
 * Compile `len` bytes of template source.  `path` names the file in
 * messages (may be NULL).  Errors: NX_ECONFIG for a syntax error or a
 * construct outside the subset ("line 3: filter 'upper' is not
 * supported"), with err->line set; NX_ELIMIT past the caps; NX_ENOMEM.
 */
int nx_chat_template_compile(nx_chat_template **out, const char *src, size_t len,
			     const char *path, nx_error *err);

/*
 * Compile the `chat_template` of a tokenizer_config.json text (a string,
 * or a list of {name, template}: the one named "default") and remember its
 * bos/eos/unk/pad tokens (strings or {"content": ...}) as the template's
 * bos_token, ... variables.  *out is NULL (and 0 returned) when the file
 * has no chat_template.  Errors: NX_EFORMAT for bad JSON, those of
 * nx_chat_template_compile otherwise.
 */
int nx_chat_template_from_config(nx_chat_template **out, const char *json, size_t len,
				 const char *path, nx_error *err);

/*
 * Render into a new NUL-terminated string for free() (*out, its length
 * in *out_len).  `ctx_json` is either the messages (a JSON array of
 * {"role", "content", ...}) or an object of variables holding `messages`
 * and any others the template reads; `tools` and `documents` default to
 * null and the special tokens to the config's.  add_generation_prompt
 * sets the variable of that name.  Errors: NX_EFORMAT for bad JSON,
 * NX_ECHECK when the template raises or fails as Jinja would (an
 * undefined value used, a type error; the message says which line),
 * NX_ELIMIT past the caps, NX_ENOMEM.
 */
int nx_chat_template_render(const nx_chat_template *t, const char *ctx_json, size_t len,
			    bool add_generation_prompt, char **out, size_t *out_len,
			    nx_error *err);

/* Free a template; accepts NULL. */
void nx_chat_template_free(nx_chat_template *t);

#ifdef __cplusplus
}
#endif
#endif

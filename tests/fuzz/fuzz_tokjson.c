/*
 * fuzz_tokjson.c - the tokenizer loader on an untrusted tokenizer.json, then
 * everything a loaded tokenizer offers: encode single and pair texts, the
 * id <-> token look-ups, and the decoder compiled from the file decoding the
 * ids it made and ids that name nothing.  Invariants: never more ids than
 * max_len, masks of 0/1, a decode that is NUL-terminated at its length.
 * Seeds (tests/fuzz/corpus/tokjson) hold one small file per model,
 * normalizer, pre-tokenizer, post-processor and decoder kind, and bad ones.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nexus/tokdecode.h"
#include "nexus/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const TEXTS[] = {
	"Hello, w\xc3\xb6rld! unable \xe4\xb8\xad [CLS] <s> <|endoftext|> 3.14",
	"  \xe2\x96\x81x\t\xf0\x9f\xa7\x91\xe2\x80\x8d\xf0\x9f\x92\xbb e\xcc\x81 don't",
	"",
};

static void check_decode(nx_tokdecoder *d, const int64_t *ids, size_t n)
{
	char *s = NULL;
	size_t len = 0;

	if (nx_tokdecoder_decode(d, ids, n, n & 1, &s, &len, NULL) == 0) {
		if (s[len] != '\0')
			abort();
		free(s);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int64_t ids[64], type_ids[64], mask[64], special[64], odd[8];
	nx_tokdecoder *d = NULL;
	nx_tokenizer *t = NULL;
	size_t i, k, n, len;

	if (nx_tokenizer_parse_json(&t, (const char *)data, size, "tokenizer.json", NULL))
		return 0;
	if (nx_tokdecoder_new(&d, t, "tokenizer.json", NULL))
		d = NULL;
	for (i = 0; i < sizeof(TEXTS) / sizeof(TEXTS[0]); i++) {
		const char *b = i ? TEXTS[i - 1] : NULL;

		n = 0;
		if (nx_tokenizer_encode_pair(t, TEXTS[i], strlen(TEXTS[i]), b, b ? strlen(b) : 0, 64,
					     ids, type_ids, mask, special, &n, NULL) == 0) {
			if (n > 64)
				abort();
			for (k = 0; k < n; k++)
				if (mask[k] > 1 || special[k] > 1 || mask[k] < 0 || special[k] < 0)
					abort();
			for (k = 0; k < n; k++) {
				const char *s = nx_tokenizer_id_to_token(t, ids[k], &len);

				if (s && nx_tokenizer_token_to_id(t, s, len) < 0)
					abort();
			}
			if (d)
				check_decode(d, ids, n);
		}
	}
	if (d) {
		for (k = 0; k < 8; k++)
			odd[k] = (int64_t)k * 7919 - 3;
		check_decode(d, odd, 8);
	}
	nx_tokdecoder_free(d);
	nx_tokenizer_free(t);
	return 0;
}

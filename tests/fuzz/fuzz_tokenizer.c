/*
 * fuzz_tokenizer.c - the tokenizer on untrusted bytes.  The first byte picks
 * the target: odd = parse the rest as a tokenizer.json (then encode a fixed
 * text with it), even = encode the rest as text with a small uncased
 * vocabulary, with max_len taken from the first byte too.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nexus/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char VOCAB[] =
	"[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\nworld\nun\n##able\n##ing\n,\n!\n"
	"a\n##b\n##c\nab\nabc\n\xe4\xb8\xad\n##\xc3\xa9\n\xc3\xa9\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static nx_tokenizer *fixed;
	nx_tokenizer *t = NULL;
	int64_t ids[300];
	size_t n = 0, max_len;

	if (size < 1)
		return 0;
	if (!fixed && nx_tokenizer_parse_vocab(&fixed, VOCAB, strlen(VOCAB), "vocab.txt", NULL))
		abort();
	max_len = 3 + (data[0] >> 1);
	if (data[0] & 1) {
		if (nx_tokenizer_parse_json(&t, (const char *)data + 1, size - 1, "t.json", NULL) == 0) {
			if (nx_tokenizer_encode(t, "Hello, w\xc3\xb6rld! unable \xe4\xb8\xad", 20,
						max_len, ids, &n, NULL) == 0 && n > max_len)
				abort();
			nx_tokenizer_free(t);
		}
		return 0;
	}
	if (nx_tokenizer_encode(fixed, (const char *)data + 1, size - 1, max_len, ids, &n, NULL) == 0 &&
	    (n > max_len || n < 2 || ids[0] != 2 || ids[n - 1] != 3))
		abort();
	return 0;
}

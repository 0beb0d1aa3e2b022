/*
 * tokenizer_load.c - reading a Hugging Face tokenizer.json (WordPiece) or a
 * plain vocab.txt into an nx_tokenizer.  Every field that would change how
 * text is encoded is either implemented or refused by name.
 */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tokenizer_int.h"

static int cfg(nx_error *err, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* An NX_ECONFIG error "PATH: message" naming the field. */
static int cfg(nx_error *err, const char *path, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return nx_error_set(err, NX_ECONFIG, path, 0, -1, "%s: %s", path, msg);
}

static int get_bool(bool *out, json_t *obj, const char *key, const char *field,
		    const char *path, nx_error *err)
{
	json_t *v = json_object_get(obj, key);

	if (!v)
		return 0;
	if (!json_is_boolean(v))
		return cfg(err, path, "%s must be true or false", field);
	*out = json_is_true(v);
	return 0;
}

static int parse_normalizer(nx_tokenizer *t, json_t *n, const char *path, nx_error *err)
{
	const char *type;
	json_t *sa;
	int rc;

	if (!n || json_is_null(n)) {
		t->clean_text = t->chinese = t->strip_accents = t->lowercase = false;
		return 0;
	}
	type = json_string_value(json_object_get(n, "type"));
	if (!type || strcmp(type, "BertNormalizer"))
		return cfg(err, path, "normalizer.type '%s' is not supported (only BertNormalizer)",
			   type ? type : "?");
	if ((rc = get_bool(&t->clean_text, n, "clean_text", "normalizer.clean_text", path, err)) ||
	    (rc = get_bool(&t->chinese, n, "handle_chinese_chars",
			   "normalizer.handle_chinese_chars", path, err)) ||
	    (rc = get_bool(&t->lowercase, n, "lowercase", "normalizer.lowercase", path, err)))
		return rc;
	sa = json_object_get(n, "strip_accents");
	if (!sa || json_is_null(sa))
		t->strip_accents = t->lowercase;
	else if (json_is_boolean(sa))
		t->strip_accents = json_is_true(sa);
	else
		return cfg(err, path, "%s must be true, false or null", "normalizer.strip_accents");
	return 0;
}

/* The special tokens' ids before and after $A, from either post-processor. */
static int parse_post(nx_tokenizer *t, json_t *p, const char *path, nx_error *err)
{
	const char *type;
	json_t *single, *item, *specials;
	size_t i, k;
	int seen_a = 0;

	if (!p || json_is_null(p))
		return 0;
	type = json_string_value(json_object_get(p, "type"));
	if (type && !strcmp(type, "BertProcessing")) {
		json_t *cls = json_object_get(p, "cls"), *sep = json_object_get(p, "sep");

		if (!json_is_integer(json_array_get(cls, 1)) || !json_is_integer(json_array_get(sep, 1)))
			return cfg(err, path, "%s needs cls and sep as [token, id]",
				   "post_processor");
		t->pre[0] = json_integer_value(json_array_get(cls, 1));
		t->post[0] = json_integer_value(json_array_get(sep, 1));
		t->npre = t->npost = 1;
		return 0;
	}
	if (!type || strcmp(type, "TemplateProcessing"))
		return cfg(err, path, "post_processor.type '%s' is not supported "
			   "(BertProcessing or TemplateProcessing)", type ? type : "?");
	single = json_object_get(p, "single");
	specials = json_object_get(p, "special_tokens");
	if (!json_is_array(single))
		return cfg(err, path, "%s must be a list", "post_processor.single");
	json_array_foreach(single, i, item) {
		json_t *st = json_object_get(item, "SpecialToken"), *ids, *id;
		const char *name;

		if (json_object_get(item, "Sequence")) {
			const char *seq = json_string_value(
				json_object_get(json_object_get(item, "Sequence"), "id"));

			if (seen_a || !seq || strcmp(seq, "A"))
				return cfg(err, path, "%s must hold the sequence $A once",
					   "post_processor.single");
			seen_a = 1;
			continue;
		}
		name = json_string_value(json_object_get(st, "id"));
		ids = json_object_get(json_object_get(specials, name ? name : ""), "ids");
		if (!name || !json_is_array(ids))
			return cfg(err, path, "post_processor.special_tokens has no ids for '%s'",
				   name ? name : "?");
		json_array_foreach(ids, k, id) {
			size_t *cnt = seen_a ? &t->npost : &t->npre;
			int64_t *dst = seen_a ? t->post : t->pre;

			if (!json_is_integer(id) || json_integer_value(id) < 0)
				return cfg(err, path, "post_processor.special_tokens '%s' ids must be integers",
					   name);
			if (*cnt >= NX_TOKENIZER_SPECIAL_MAX)
				return nx_error_set(err, NX_ELIMIT, path, 0, -1,
						    "%s: more than %d special tokens", path,
						    NX_TOKENIZER_SPECIAL_MAX);
			dst[(*cnt)++] = json_integer_value(id);
		}
	}
	if (!seen_a)
		return cfg(err, path, "%s must hold the sequence $A", "post_processor.single");
	return 0;
}

/* Added tokens that are matched on the raw text (normalized: false). */
static int parse_added(nx_tokenizer *t, json_t *added, const char *path, nx_error *err)
{
	json_t *a;
	size_t i;

	if (!json_is_array(added))
		return 0;
	json_array_foreach(added, i, a) {
		const char *content = json_string_value(json_object_get(a, "content"));
		json_t *id = json_object_get(a, "id");
		struct nx_added_token *tok;

		if (json_is_true(json_object_get(a, "normalized")) ||
		    json_is_true(json_object_get(a, "single_word")) ||
		    json_is_true(json_object_get(a, "lstrip")) ||
		    json_is_true(json_object_get(a, "rstrip")))
			return cfg(err, path, "added_tokens '%s' uses normalized, single_word, lstrip "
				   "or rstrip, which are not supported", content ? content : "?");
		if (!content || !*content || !json_is_integer(id))
			return cfg(err, path, "%s entries need content and id", "added_tokens");
		if (t->nadded >= NX_TOK_ADDED_MAX)
			return nx_error_set(err, NX_ELIMIT, path, 0, -1, "%s: more than %d added tokens",
					    path, NX_TOK_ADDED_MAX);
		tok = realloc(t->added, (t->nadded + 1) * sizeof(*tok));
		if (!tok)
			return nx_error_set(err, NX_ENOMEM, path, 0, -1, "out of memory");
		t->added = tok;
		tok = &t->added[t->nadded];
		if (!(tok->content = strdup(content)))
			return nx_error_set(err, NX_ENOMEM, path, 0, -1, "out of memory");
		tok->len = strlen(content);
		tok->id = json_integer_value(id);
		tok->special = json_is_true(json_object_get(a, "special"));
		t->nadded++;
		t->added_first[(unsigned char)content[0] >> 3] |= 1u << ((unsigned char)content[0] & 7);
	}
	return 0;
}

static int parse_model(nx_tokenizer *t, json_t *m, const char *path, nx_error *err)
{
	const char *type = json_string_value(json_object_get(m, "type"));
	const char *unk, *key, *prefix;
	json_t *vocab = json_object_get(m, "vocab"), *val, *mc;

	if (!json_is_object(m))
		return cfg(err, path, "%s is missing", "model");
	if (!type || strcmp(type, "WordPiece"))
		return cfg(err, path, "model.type '%s' is not supported (only WordPiece)",
			   type ? type : "?");
	if (!json_is_object(vocab))
		return cfg(err, path, "%s must be an object of token: id", "model.vocab");
	if (json_object_size(vocab) > NX_TOKENIZER_VOCAB_MAX)
		return nx_error_set(err, NX_ELIMIT, path, 0, -1, "%s: vocabulary over %u entries",
				    path, NX_TOKENIZER_VOCAB_MAX);
	json_object_foreach(vocab, key, val) {
		size_t len = strlen(key);

		if (!json_is_integer(val) || json_integer_value(val) < 0 ||
		    json_integer_value(val) > INT32_MAX)
			return cfg(err, path, "model.vocab['%s'] must be an id >= 0", key);
		if (len > NX_TOKENIZER_TOKEN_MAX)
			return nx_error_set(err, NX_ELIMIT, path, 0, -1,
					    "%s: a vocabulary entry is over %d bytes", path,
					    NX_TOKENIZER_TOKEN_MAX);
		if (nx_vocab_put(&t->v, key, len, json_integer_value(val)))
			return nx_error_set(err, NX_ENOMEM, path, 0, -1, "out of memory");
	}
	unk = json_string_value(json_object_get(m, "unk_token"));
	t->unk_id = nx_vocab_get2(&t->v, unk ? unk : "[UNK]", strlen(unk ? unk : "[UNK]"), NULL, 0);
	prefix = json_string_value(json_object_get(m, "continuing_subword_prefix"));
	if (prefix) {
		if (strlen(prefix) >= NX_TOK_PREFIX_MAX)
			return cfg(err, path, "%s is too long", "model.continuing_subword_prefix");
		t->prefix_len = strlen(prefix);
		memcpy(t->prefix, prefix, t->prefix_len);
	}
	mc = json_object_get(m, "max_input_chars_per_word");
	if (mc) {
		if (!json_is_integer(mc) || json_integer_value(mc) < 1 ||
		    json_integer_value(mc) > NX_TOKENIZER_WORD_CHARS_MAX)
			return cfg(err, path, "%s must be an integer from 1 to 10000",
				   "model.max_input_chars_per_word");
		t->max_chars = (size_t)json_integer_value(mc);
	}
	return 0;
}

int nx_tokenizer_parse_json(nx_tokenizer **out, const char *buf, size_t len,
			    const char *path, nx_error *err)
{
	nx_tokenizer *t = NULL;
	json_t *root = NULL, *pre, *pad;
	json_error_t jerr;
	const char *type;
	int rc;

	if (len > NX_TOKENIZER_FILE_MAX)
		return nx_error_set(err, NX_ELIMIT, path, 0, -1, "%s: over the %u byte limit",
				    path, NX_TOKENIZER_FILE_MAX);
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return nx_error_set(err, NX_EFORMAT, path, jerr.line, jerr.position,
				    "%s:%d: not valid JSON: %s", path, jerr.line, jerr.text);
	if ((rc = nx_tokenizer_alloc(&t, "tokenizer.json", err)))
		goto out;
	if (!json_is_object(root)) {
		rc = cfg(err, path, "%s must be a JSON object", "the file");
		goto out;
	}
	if ((rc = parse_model(t, json_object_get(root, "model"), path, err)) ||
	    (rc = parse_normalizer(t, json_object_get(root, "normalizer"), path, err)) ||
	    (rc = parse_post(t, json_object_get(root, "post_processor"), path, err)) ||
	    (rc = parse_added(t, json_object_get(root, "added_tokens"), path, err)))
		goto out;
	pre = json_object_get(root, "pre_tokenizer");
	type = json_string_value(json_object_get(pre, "type"));
	if (!type || strcmp(type, "BertPreTokenizer")) {
		rc = cfg(err, path, "pre_tokenizer.type '%s' is not supported (only BertPreTokenizer)",
			 type ? type : "null");
		goto out;
	}
	pre = json_object_get(root, "decoder");
	if (pre && !json_is_null(pre))
		t->decoder = json_incref(pre);
	pad = json_object_get(json_object_get(root, "padding"), "pad_id");
	if (json_is_integer(pad) && json_integer_value(pad) >= 0)
		t->pad_id = json_integer_value(pad);
	if ((rc = nx_tokenizer_finish(t, path, err)))
		goto out;
	*out = t;
	t = NULL;
out:
	nx_tokenizer_free(t);
	json_decref(root);
	return rc;
}

int nx_tokenizer_parse_vocab(nx_tokenizer **out, const char *buf, size_t len,
			     const char *path, nx_error *err)
{
	nx_tokenizer *t = NULL;
	size_t i = 0, line = 0;
	int rc;

	if (len > NX_TOKENIZER_FILE_MAX)
		return nx_error_set(err, NX_ELIMIT, path, 0, -1, "%s: over the %u byte limit",
				    path, NX_TOKENIZER_FILE_MAX);
	if ((rc = nx_tokenizer_alloc(&t, "vocab.txt", err)))
		return rc;
	while (i < len) {
		const char *nl = memchr(buf + i, '\n', len - i);
		size_t end = nl ? (size_t)(nl - buf) : len, e = end;

		/* Hugging Face trims trailing whitespace of each line */
		while (e > i && (buf[e - 1] == '\r' || buf[e - 1] == ' ' || buf[e - 1] == '\t'))
			e--;
		if (++line > NX_TOKENIZER_VOCAB_MAX || e - i > NX_TOKENIZER_TOKEN_MAX) {
			rc = nx_error_set(err, NX_ELIMIT, path, (long)line, -1,
					  "%s:%zu: over the vocabulary limits", path, line);
			goto out;
		}
		if (nx_vocab_put(&t->v, buf + i, e - i, (int64_t)(line - 1))) {
			rc = nx_error_set(err, NX_ENOMEM, path, 0, -1, "out of memory");
			goto out;
		}
		i = end + 1;
	}
	t->unk_id = nx_vocab_get2(&t->v, "[UNK]", 5, NULL, 0);
	t->pre[0] = nx_vocab_get2(&t->v, "[CLS]", 5, NULL, 0);
	t->post[0] = nx_vocab_get2(&t->v, "[SEP]", 5, NULL, 0);
	if (t->pre[0] < 0 || t->post[0] < 0) {
		rc = nx_error_set(err, NX_ECONFIG, path, 0, -1,
				  "%s: [CLS] and [SEP] must be in the vocabulary", path);
		goto out;
	}
	t->npre = t->npost = 1;
	if ((rc = nx_tokenizer_finish(t, path, err)))
		goto out;
	*out = t;
	t = NULL;
out:
	nx_tokenizer_free(t);
	return rc;
}

/* Read a whole regular file of dirfd into a new buffer; -ENOENT if absent. */
static int slurp(char **out, size_t *out_len, int dirfd, const char *name,
		 const char *path, nx_error *err)
{
	struct stat st;
	char *buf = NULL;
	size_t got = 0;
	int fd, rc = 0;

	/* O_NONBLOCK: a FIFO planted here must not block the open. */
	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return errno == ENOENT ? -ENOENT
			: nx_error_errno(err, NX_EIO, errno, path, "cannot open %s", path);
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		rc = nx_error_set(err, NX_EUNSAFE, path, 0, -1, "%s is not a regular file", path);
		goto out;
	}
	if ((uint64_t)st.st_size > NX_TOKENIZER_FILE_MAX) {
		rc = nx_error_set(err, NX_ELIMIT, path, 0, -1, "%s: over the %u byte limit",
				  path, NX_TOKENIZER_FILE_MAX);
		goto out;
	}
	if (!(buf = malloc((size_t)st.st_size + 1))) {
		rc = nx_error_set(err, NX_ENOMEM, path, 0, -1, "out of memory reading %s", path);
		goto out;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rc = nx_error_errno(err, NX_EIO, n < 0 ? errno : EIO, path, "cannot read %s", path);
			goto out;
		}
		got += (size_t)n;
	}
	*out = buf;
	*out_len = got;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return rc;
}

int nx_tokenizer_load(nx_tokenizer **out, int dirfd, const char *dirpath, nx_error *err)
{
	char path[NX_ERROR_PATH_MAX];
	char *buf = NULL;
	size_t len = 0;
	int rc;

	if (!dirpath)
		dirpath = ".";
	snprintf(path, sizeof(path), "%s/tokenizer.json", dirpath);
	rc = slurp(&buf, &len, dirfd, "tokenizer.json", path, err);
	if (rc == 0) {
		rc = nx_tokenizer_parse_json(out, buf, len, path, err);
		goto out;
	}
	if (rc != -ENOENT)
		goto out;
	snprintf(path, sizeof(path), "%s/vocab.txt", dirpath);
	rc = slurp(&buf, &len, dirfd, "vocab.txt", path, err);
	if (rc == -ENOENT) {
		rc = nx_error_set(err, NX_EIO, dirpath, 0, -1,
				  "%s has neither tokenizer.json nor vocab.txt", dirpath);
		goto out;
	}
	if (rc == 0)
		rc = nx_tokenizer_parse_vocab(out, buf, len, path, err);
out:
	free(buf);
	return rc;
}

/*
 * yaml.c - strict YAML over libyaml's event API (see nexus/yaml.h).
 *
 * Events are folded into the tree with an explicit stack of open
 * collections, so nesting depth is bounded by NX_YAML_DEPTH_MAX and never by
 * the C stack.  A mapping key is appended as a pair with a NULL value; the
 * next node fills it.  Every node is attached to the tree as soon as it
 * exists, so one nx_yaml_free(root) releases everything on any error.
 */
#include "nexus/yaml.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "util/array_int.h"

struct builder {
	const char *path;
	nx_error *err;
	nx_yaml_node *root;
	nx_yaml_node *open[NX_YAML_DEPTH_MAX]; /* open collections */
	int depth;
	size_t nodes;
	bool seen_document;
};

const char *nx_yaml_type_name(enum nx_yaml_type type)
{
	switch (type) {
	case NX_YAML_SCALAR: return "scalar";
	case NX_YAML_SEQUENCE: return "sequence";
	default: return "mapping";
	}
}

void nx_yaml_free(nx_yaml_node *node)
{
	size_t i;

	if (!node)
		return;
	for (i = 0; i < node->nitems; i++)
		nx_yaml_free(node->items[i]);
	for (i = 0; i < node->npairs; i++) {
		nx_yaml_free(node->pairs[i].key);
		nx_yaml_free(node->pairs[i].value);
	}
	free(node->items);
	free(node->pairs);
	free(node->value);
	free(node);
}

const nx_yaml_node *nx_yaml_map_get(const nx_yaml_node *map, const char *key)
{
	size_t i, n = strlen(key);

	if (!map || map->type != NX_YAML_MAPPING)
		return NULL;
	for (i = 0; i < map->npairs; i++) {
		const nx_yaml_node *k = map->pairs[i].key;

		if (k->len == n && memcmp(k->value, key, n) == 0)
			return map->pairs[i].value;
	}
	return NULL;
}

bool nx_yaml_is_plain(const nx_yaml_node *node, const char *s)
{
	return node && node->type == NX_YAML_SCALAR &&
	       node->style == NX_YAML_PLAIN && strcmp(node->value, s) == 0;
}

/* Length of the valid UTF-8 sequence at p (RFC 3629), or 0 if invalid. */
static size_t utf8_len(const unsigned char *p, size_t avail)
{
	uint32_t c;
	size_t n, i;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2, c = p[0] & 0x1f;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		n = 3, c = p[0] & 0x0f;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		n = 4, c = p[0] & 0x07;
	else
		return 0;
	if (n > avail)
		return 0;
	for (i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (p[i] & 0x3f);
	}
	if ((n == 3 && c < 0x800) || (n == 4 && c < 0x10000) ||
	    (c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff)
		return 0;
	return n;
}

/* libyaml would also complain, but less precisely; check bytes first. */
static int check_bytes(const char *buf, size_t len, const char *path,
		       nx_error *err)
{
	const unsigned char *p = (const unsigned char *)buf;
	long line = 1;
	size_t i = 0, n;

	if (len > NX_YAML_INPUT_MAX)
		return nx_error_set(err, NX_ELIMIT, path, 0, -1,
				    "file is larger than %d bytes; configuration files must be small",
				    NX_YAML_INPUT_MAX);
	while (i < len) {
		if (p[i] == '\0')
			return nx_error_set(err, NX_EFORMAT, path, line, (long long)i,
					    "NUL byte in yaml text; save the file as plain UTF-8");
		if (p[i] == '\n')
			line++;
		n = utf8_len(p + i, len - i);
		if (!n)
			return nx_error_set(err, NX_EFORMAT, path, line, (long long)i,
					    "invalid UTF-8; save the file as UTF-8");
		i += n;
	}
	return 0;
}

static int refuse(struct builder *b, const yaml_mark_t *m, const char *what)
{
	return nx_error_set(b->err, NX_ECONFIG, b->path, (long)m->line + 1, -1,
			    "%s are not allowed in nexus configuration; write the value out in full",
			    what);
}

static int grow(void **arr, size_t n, size_t size)
{
	size_t cap = n;

	/* Capacity doubles at powers of two, so no separate capacity field:
	 * full exactly when n is 0 or a power of two. */
	if (n && (n & (n - 1)))
		return 0;
	return nx_array_grow(arr, &cap, n + 1, size, SIZE_MAX);
}

static int check_key(struct builder *b, nx_yaml_node *map, nx_yaml_node *key)
{
	size_t i;

	if (key->type != NX_YAML_SCALAR)
		return nx_error_set(b->err, NX_ECONFIG, b->path, key->line, -1,
				    "a %s is used as a mapping key; keys must be plain strings",
				    nx_yaml_type_name(key->type));
	if (key->style == NX_YAML_PLAIN && strcmp(key->value, "<<") == 0)
		return nx_error_set(b->err, NX_ECONFIG, b->path, key->line, -1,
				    "merge keys (<<) are not allowed; write the keys out in full");
	for (i = 0; i < map->npairs; i++) {
		const nx_yaml_node *k = map->pairs[i].key;

		if (k->len == key->len && memcmp(k->value, key->value, k->len) == 0)
			return nx_error_set(b->err, NX_ECONFIG, b->path, key->line, -1,
					    "duplicate key \"%s\" (first at line %ld); remove one of them",
					    key->value, k->line);
	}
	return 0;
}

/* Hang a new node under the innermost open collection (or make it root). */
static int attach(struct builder *b, nx_yaml_node *node)
{
	nx_yaml_node *parent;
	int rc;

	if (b->depth == 0) {
		b->root = node;
		return 0;
	}
	parent = b->open[b->depth - 1];
	if (parent->type == NX_YAML_SEQUENCE) {
		if ((rc = grow((void **)&parent->items, parent->nitems, sizeof(*parent->items))))
			goto fail;
		parent->items[parent->nitems++] = node;
		return 0;
	}
	if (parent->npairs && !parent->pairs[parent->npairs - 1].value) {
		parent->pairs[parent->npairs - 1].value = node;
		return 0;
	}
	if ((rc = check_key(b, parent, node)))
		goto fail;
	if ((rc = grow((void **)&parent->pairs, parent->npairs, sizeof(*parent->pairs))))
		goto fail;
	parent->pairs[parent->npairs].key = node;
	parent->pairs[parent->npairs].value = NULL;
	parent->npairs++;
	return 0;
fail:
	nx_yaml_free(node);
	if (rc == NX_ENOMEM)
		nx_error_set(b->err, rc, b->path, 0, -1, "out of memory");
	return rc;
}

static enum nx_yaml_style style_of(yaml_scalar_style_t s)
{
	switch (s) {
	case YAML_SINGLE_QUOTED_SCALAR_STYLE: return NX_YAML_SINGLE_QUOTED;
	case YAML_DOUBLE_QUOTED_SCALAR_STYLE: return NX_YAML_DOUBLE_QUOTED;
	case YAML_LITERAL_SCALAR_STYLE: return NX_YAML_LITERAL;
	case YAML_FOLDED_SCALAR_STYLE: return NX_YAML_FOLDED;
	default: return NX_YAML_PLAIN;
	}
}

static int new_node(struct builder *b, const yaml_event_t *ev,
		    enum nx_yaml_type type, const yaml_char_t *anchor,
		    const yaml_char_t *tag)
{
	nx_yaml_node *node = NULL;
	const yaml_mark_t *m = &ev->start_mark;
	int rc;

	if (anchor)
		return refuse(b, m, "anchors (&name)");
	if (tag)
		return refuse(b, m, "tags (!tag, !!type)");
	if (++b->nodes > NX_YAML_NODES_MAX)
		return nx_error_set(b->err, NX_ELIMIT, b->path, (long)m->line + 1, -1,
				    "more than %d yaml nodes; configuration files must be small",
				    NX_YAML_NODES_MAX);
	if (type != NX_YAML_SCALAR && b->depth == NX_YAML_DEPTH_MAX)
		return nx_error_set(b->err, NX_ELIMIT, b->path, (long)m->line + 1, -1,
				    "yaml nested deeper than %d levels", NX_YAML_DEPTH_MAX);
	if (!(node = calloc(1, sizeof(*node))))
		return nx_error_oom(b->err, b->path);
	node->type = type;
	node->line = (long)m->line + 1;
	node->column = (long)m->column + 1;
	if (type == NX_YAML_SCALAR) {
		size_t n = ev->data.scalar.length;

		if (memchr(ev->data.scalar.value, '\0', n)) {
			nx_yaml_free(node);
			return nx_error_set(b->err, NX_ECONFIG, b->path, (long)m->line + 1, -1,
					    "string contains a NUL character (\\0); remove it");
		}
		if (!(node->value = malloc(n + 1))) {
			nx_yaml_free(node);
			return nx_error_oom(b->err, b->path);
		}
		memcpy(node->value, ev->data.scalar.value, n);
		node->value[n] = '\0';
		node->len = n;
		node->style = style_of(ev->data.scalar.style);
	}
	if ((rc = attach(b, node)))
		return rc;
	if (type != NX_YAML_SCALAR)
		b->open[b->depth++] = node;
	return 0;
}

static int on_event(struct builder *b, const yaml_event_t *ev)
{
	switch (ev->type) {
	case YAML_DOCUMENT_START_EVENT:
		if (b->seen_document)
			return nx_error_set(b->err, NX_ECONFIG, b->path,
					    (long)ev->start_mark.line + 1, -1,
					    "more than one yaml document (---); keep one document per file");
		b->seen_document = true;
		if (ev->data.document_start.tag_directives.start !=
		    ev->data.document_start.tag_directives.end)
			return refuse(b, &ev->start_mark, "%TAG directives");
		return 0;
	case YAML_ALIAS_EVENT:
		return refuse(b, &ev->start_mark, "aliases (*name)");
	case YAML_SCALAR_EVENT:
		return new_node(b, ev, NX_YAML_SCALAR, ev->data.scalar.anchor,
				ev->data.scalar.tag);
	case YAML_SEQUENCE_START_EVENT:
		return new_node(b, ev, NX_YAML_SEQUENCE, ev->data.sequence_start.anchor,
				ev->data.sequence_start.tag);
	case YAML_MAPPING_START_EVENT:
		return new_node(b, ev, NX_YAML_MAPPING, ev->data.mapping_start.anchor,
				ev->data.mapping_start.tag);
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT:
		if (b->depth > 0)
			b->depth--;
		return 0;
	default:
		return 0;
	}
}

static int syntax_error(const yaml_parser_t *p, const char *path, nx_error *err)
{
	if (p->error == YAML_MEMORY_ERROR)
		return nx_error_oom(err, path);
	return nx_error_set(err, NX_EFORMAT, path, (long)p->problem_mark.line + 1,
			    (long long)p->problem_mark.index,
			    "yaml syntax error: %s%s%s; check indentation and quoting",
			    p->context ? p->context : "", p->context ? ": " : "",
			    p->problem ? p->problem : "invalid yaml");
}

int nx_yaml_parse(nx_yaml_node **out, const char *buf, size_t len,
		  const char *path, nx_error *err)
{
	struct builder b = { .path = path, .err = err };
	yaml_parser_t parser;
	yaml_event_t ev;
	bool done = false;
	int rc;

	if ((rc = check_bytes(buf, len, path, err)))
		return rc;
	if (!yaml_parser_initialize(&parser))
		return nx_error_oom(err, path);
	yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
	yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING);
	while (!done) {
		if (!yaml_parser_parse(&parser, &ev)) {
			rc = syntax_error(&parser, path, err);
			goto out_parser;
		}
		rc = on_event(&b, &ev);
		done = ev.type == YAML_STREAM_END_EVENT;
		yaml_event_delete(&ev);
		if (rc)
			goto out_parser;
	}
	if (!b.root) {
		if (!(b.root = calloc(1, sizeof(*b.root)))) {
			rc = nx_error_oom(err, path);
			goto out_parser;
		}
		b.root->type = NX_YAML_MAPPING;
		b.root->line = b.root->column = 1;
	}
	*out = b.root;
	b.root = NULL;
out_parser:
	yaml_parser_delete(&parser);
	nx_yaml_free(b.root);
	return rc;
}

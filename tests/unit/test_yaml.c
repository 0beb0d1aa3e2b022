/* test_yaml.c - the strict YAML tree: structure, positions and refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nexus/yaml.h"

static nx_yaml_node *parse_ok(const char *text)
{
	nx_yaml_node *root = NULL;
	nx_error e;

	nx_error_clear(&e);
	if (nx_yaml_parse(&root, text, strlen(text), "t.yaml", &e) != 0)
		fail_msg("unexpected error at line %ld: %s", e.line, e.message);
	assert_non_null(root);
	return root;
}

/* Parse must fail with code at line; message must contain `needle`. */
static void parse_fails_len(const char *text, size_t len, int code, long line,
			    const char *needle)
{
	nx_yaml_node *root = (nx_yaml_node *)0x1;
	nx_error e;

	nx_error_clear(&e);
	assert_int_equal(nx_yaml_parse(&root, text, len, "t.yaml", &e), code);
	assert_ptr_equal(root, (nx_yaml_node *)0x1); /* *out untouched */
	assert_int_equal(e.code, code);
	assert_string_equal(e.path, "t.yaml");
	if (line >= 0)
		assert_int_equal(e.line, line);
	if (needle && !strstr(e.message, needle))
		fail_msg("message \"%s\" lacks \"%s\"", e.message, needle);
}

static void parse_fails(const char *text, int code, long line, const char *needle)
{
	parse_fails_len(text, strlen(text), code, line, needle);
}

static void tree_shape_and_positions(void **state)
{
	nx_yaml_node *root = parse_ok("a: 1\nb:\n  - x\n  - \"123\"\nc: {d: 'q'}\n");
	const nx_yaml_node *b, *c;

	assert_int_equal(root->type, NX_YAML_MAPPING);
	assert_int_equal(root->npairs, 3);
	assert_string_equal(root->pairs[0].key->value, "a");
	assert_string_equal(root->pairs[1].key->value, "b");
	assert_string_equal(root->pairs[2].key->value, "c");
	assert_int_equal(root->pairs[0].value->line, 1);
	assert_int_equal(root->pairs[0].value->column, 4);
	assert_int_equal(root->pairs[0].value->style, NX_YAML_PLAIN);
	b = nx_yaml_map_get(root, "b");
	assert_non_null(b);
	assert_int_equal(b->type, NX_YAML_SEQUENCE);
	assert_int_equal(b->nitems, 2);
	assert_string_equal(b->items[0]->value, "x");
	assert_int_equal(b->items[1]->line, 4);
	assert_int_equal(b->items[1]->style, NX_YAML_DOUBLE_QUOTED);
	assert_string_equal(b->items[1]->value, "123");
	c = nx_yaml_map_get(root, "c");
	assert_int_equal(c->type, NX_YAML_MAPPING);
	assert_int_equal(nx_yaml_map_get(c, "d")->style, NX_YAML_SINGLE_QUOTED);
	assert_null(nx_yaml_map_get(root, "zz"));
	assert_null(nx_yaml_map_get(b, "x"));
	assert_true(nx_yaml_is_plain(nx_yaml_map_get(root, "a"), "1"));
	assert_false(nx_yaml_is_plain(b->items[1], "123"));
	nx_yaml_free(root);
}

static void block_scalars_and_empty_values(void **state)
{
	nx_yaml_node *root = parse_ok("l: |\n  one\n  two\nf: >\n  a\n  b\ne:\n");

	assert_int_equal(nx_yaml_map_get(root, "l")->style, NX_YAML_LITERAL);
	assert_string_equal(nx_yaml_map_get(root, "l")->value, "one\ntwo\n");
	assert_int_equal(nx_yaml_map_get(root, "f")->style, NX_YAML_FOLDED);
	assert_string_equal(nx_yaml_map_get(root, "e")->value, "");
	assert_int_equal(nx_yaml_map_get(root, "e")->len, 0);
	nx_yaml_free(root);
}

static void empty_stream_is_empty_mapping(void **state)
{
	nx_yaml_node *root = parse_ok("");

	assert_int_equal(root->type, NX_YAML_MAPPING);
	assert_int_equal(root->npairs, 0);
	nx_yaml_free(root);
	root = parse_ok("# only a comment\n\n");
	assert_int_equal(root->type, NX_YAML_MAPPING);
	nx_yaml_free(root);
}

static void explicit_document_markers_ok(void **state)
{
	nx_yaml_node *root = parse_ok("%YAML 1.1\n---\na: b\n...\n");

	assert_string_equal(nx_yaml_map_get(root, "a")->value, "b");
	nx_yaml_free(root);
	root = parse_ok("\xef\xbb\xbf" "a: b\n"); /* UTF-8 BOM */
	assert_string_equal(nx_yaml_map_get(root, "a")->value, "b");
	nx_yaml_free(root);
}

static void duplicate_keys_refused(void **state)
{
	parse_fails("a: 1\nb: 2\na: 3\n", NX_ECONFIG, 3, "duplicate key \"a\" (first at line 1)");
	/* Quoting does not make a different key. */
	parse_fails("a: 1\n\"a\": 2\n", NX_ECONFIG, 2, "duplicate key");
	parse_fails("x:\n  y: 1\n  y: 2\n", NX_ECONFIG, 3, "duplicate key \"y\"");
	parse_fails("- {k: 1, k: 2}\n", NX_ECONFIG, 1, "duplicate key");
}

static void anchors_aliases_refused(void **state)
{
	parse_fails("a: &x 1\n", NX_ECONFIG, 1, "anchors");
	parse_fails("a: &x [1]\nb: 2\n", NX_ECONFIG, 1, "anchors");
	parse_fails("a: 1\nb: *x\n", NX_ECONFIG, 2, "aliases");
	parse_fails("a: &m {k: 1}\nb:\n  <<: *m\n", NX_ECONFIG, 1, "anchors");
}

static void merge_key_refused(void **state)
{
	parse_fails("a:\n  <<: {k: 1}\n", NX_ECONFIG, 2, "merge keys");
}

static void tags_refused(void **state)
{
	parse_fails("a: !!str 123\n", NX_ECONFIG, 1, "tags");
	parse_fails("a: 1\nb: !foo bar\n", NX_ECONFIG, 2, "tags");
	parse_fails("a: !!map {k: 1}\n", NX_ECONFIG, 1, "tags");
	parse_fails("a: ! x\n", NX_ECONFIG, 1, "tags");
	parse_fails("%TAG !e! tag:example.com,2000:\n---\na: 1\n", NX_ECONFIG, 1, "%TAG");
}

static void one_document_only(void **state)
{
	parse_fails("a: 1\n---\nb: 2\n", NX_ECONFIG, 2, "more than one yaml document");
	parse_fails("---\na: 1\n...\n---\na: 1\n", NX_ECONFIG, 4, "document");
}

static void non_scalar_keys_refused(void **state)
{
	parse_fails("? [a, b]\n: 1\n", NX_ECONFIG, 1, "sequence is used as a mapping key");
	parse_fails("{x: 1}: 2\n", NX_ECONFIG, 1, "mapping is used as a mapping key");
}

static void syntax_errors_are_format(void **state)
{
	parse_fails("a: [1, 2\n", NX_EFORMAT, -1, "yaml syntax error");
	parse_fails("a: 1\n b: 2\n", NX_EFORMAT, 2, "yaml syntax error");
	parse_fails("a: \"unterminated\n", NX_EFORMAT, -1, "syntax");
	parse_fails("a:\tb\n\tc: d\n", NX_EFORMAT, 2, "syntax");
}

static void bytes_checked(void **state)
{
	parse_fails_len("a: 1\nb: \0\n", 10, NX_EFORMAT, 2, "NUL byte");
	parse_fails("a: 1\n\nb: \xff\n", NX_EFORMAT, 3, "invalid UTF-8");
	parse_fails("a: \xc0\xaf\n", NX_EFORMAT, 1, "UTF-8");         /* overlong */
	parse_fails("a: \xed\xa0\x80\n", NX_EFORMAT, 1, "UTF-8");     /* surrogate */
	parse_fails("a: \xf4\x90\x80\x80\n", NX_EFORMAT, 1, "UTF-8"); /* > U+10FFFF */
	parse_fails("a: \xe2\x82\n", NX_EFORMAT, 1, "UTF-8");         /* truncated */
	/* UTF-16 with a BOM is not UTF-8. */
	parse_fails_len("\xff\xfe" "a\0:\0", 6, NX_EFORMAT, 1, NULL);
	/* An escaped NUL is refused after unescaping too. */
	parse_fails("a: \"x\\0y\"\n", NX_ECONFIG, 1, "NUL");
	{
		nx_yaml_node *root = parse_ok("a: \"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"\n");

		assert_string_equal(nx_yaml_map_get(root, "a")->value,
				    "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
		nx_yaml_free(root);
	}
}

static char *repeat(const char *unit, size_t times, const char *tail)
{
	size_t u = strlen(unit), t = strlen(tail), i;
	char *s = malloc(u * times + t + 1);

	assert_non_null(s);
	for (i = 0; i < times; i++)
		memcpy(s + i * u, unit, u);
	memcpy(s + u * times, tail, t + 1);
	return s;
}

/* depth levels of flow sequences: "[[...]]" */
static char *nested(size_t depth)
{
	char *s = malloc(2 * depth + 1);

	assert_non_null(s);
	memset(s, '[', depth);
	memset(s + depth, ']', depth);
	s[2 * depth] = '\0';
	return s;
}

static void caps_enforced(void **state)
{
	char *s;
	nx_yaml_node *root;
	size_t len = NX_YAML_INPUT_MAX + 1;

	/* Depth: exactly the cap parses, one more does not. */
	s = nested(NX_YAML_DEPTH_MAX);
	root = parse_ok(s);
	nx_yaml_free(root);
	free(s);
	s = nested(NX_YAML_DEPTH_MAX + 1);
	parse_fails(s, NX_ELIMIT, 1, "deeper than");
	free(s);
	/* Block mappings count as well: the cap is on collections. */
	s = malloc(64 * 64);
	assert_non_null(s);
	s[0] = '\0';
	for (int i = 0; i <= NX_YAML_DEPTH_MAX; i++)
		sprintf(s + strlen(s), "%*sk:\n", i, "");
	parse_fails(s, NX_ELIMIT, NX_YAML_DEPTH_MAX + 1, "deeper than");
	free(s);

	/* Node count. */
	s = repeat(",1", NX_YAML_NODES_MAX, "]");
	s[0] = '[';
	parse_fails(s, NX_ELIMIT, 1, "yaml nodes");
	free(s);

	/* Input size is checked before parsing. */
	s = malloc(len);
	assert_non_null(s);
	memset(s, '#', len);
	parse_fails_len(s, len, NX_ELIMIT, -1, "larger than");
	free(s);
}

static void free_accepts_null(void **state)
{
	nx_yaml_free(NULL);
	assert_string_equal(nx_yaml_type_name(NX_YAML_SEQUENCE), "sequence");
	assert_false(nx_yaml_is_plain(NULL, "x"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(tree_shape_and_positions),
		cmocka_unit_test(block_scalars_and_empty_values),
		cmocka_unit_test(empty_stream_is_empty_mapping),
		cmocka_unit_test(explicit_document_markers_ok),
		cmocka_unit_test(duplicate_keys_refused),
		cmocka_unit_test(anchors_aliases_refused),
		cmocka_unit_test(merge_key_refused),
		cmocka_unit_test(tags_refused),
		cmocka_unit_test(one_document_only),
		cmocka_unit_test(non_scalar_keys_refused),
		cmocka_unit_test(syntax_errors_are_format),
		cmocka_unit_test(bytes_checked),
		cmocka_unit_test(caps_enforced),
		cmocka_unit_test(free_accepts_null),
	};
	return cmocka_run_group_tests_name("yaml", tests, NULL, NULL);
}

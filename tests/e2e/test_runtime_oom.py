"""nexus_cli under allocation failure (issue #14): a failed allocation is
an error message and exit status, never a double free."""
import subprocess


# LD_PRELOAD shim: realloc always moves the block (as it may when it
# grows), and strndup fails for a string starting with "FAILME".
SHIM = r"""
#define _GNU_SOURCE
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
void *realloc(void *p, size_t n)
{
	void *q = malloc(n ? n : 1);
	size_t old = p ? malloc_usable_size(p) : 0;
	if (!q)
		return NULL;
	if (p)
		memcpy(q, p, old < n ? old : n);
	free(p);
	return q;
}
char *strndup(const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *d;
	if (!strncmp(s, "FAILME", 6))
		return NULL;
	if (!(d = malloc(len + 1)))
		return NULL;
	memcpy(d, s, len);
	d[len] = 0;
	return d;
}
"""


def test_selftest_input_strndup_failure_is_an_error(tmp_path, nexus_cli):
    src = tmp_path / "shim.c"
    src.write_text(SHIM)
    shim = tmp_path / "shim.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", shim, src], check=True)
    inp = tmp_path / "in.txt"
    # the second line's copy fails after the array holding the first moved
    inp.write_text("first line\nFAILME second\n")
    r = subprocess.run([nexus_cli, "selftest", "--write", "--output", tmp_path / "o.json",
                        "--input", inp], capture_output=True, text=True,
                       env={"LD_PRELOAD": str(shim), "PATH": "/usr/bin:/bin"})
    assert r.returncode > 0, (r.returncode, r.stderr)   # not killed by SIGABRT
    assert "out of memory" in r.stderr


# LD_PRELOAD shim: growing a block to two pointers fails; at exit it says
# whether the block it refused to grow was freed.
LEAK_SHIM = r"""
#include <stdio.h>
#include <stdlib.h>
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
static void *refused;
static int freed;
void *realloc(void *p, size_t n)
{
	if (p && n == 2 * sizeof(void *) && !refused) {
		refused = p;
		return NULL;
	}
	return __libc_realloc(p, n);
}
void free(void *p)
{
	if (p && p == refused)
		freed = 1;
	__libc_free(p);
}
__attribute__((destructor)) static void report(void)
{
	if (refused)
		fprintf(stderr, freed ? "SHIM: refused block freed\n" : "SHIM: refused block leaked\n");
}
"""


def test_second_text_realloc_failure_does_not_leak(tmp_path, nexus_cli):
    src = tmp_path / "shim.c"
    src.write_text(LEAK_SHIM)
    shim = tmp_path / "shim.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", shim, src], check=True)
    r = subprocess.run([nexus_cli, "tokenize", "--text", "a", "--text", "b"],
                       capture_output=True, text=True,
                       env={"LD_PRELOAD": str(shim), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "out of memory" in r.stderr
    assert "SHIM: refused block freed" in r.stderr, r.stderr

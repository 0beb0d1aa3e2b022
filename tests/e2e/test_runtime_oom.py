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

/* test_sandbox.c - nexus/sandbox.h and the functional check against probes
 * planted as bin/nexus_cli, under each backend (bwrap, landlock): each
 * escape attempt must end as a FAIL within the timeout.  A backend that
 * cannot run here is skipped (not failed). */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "nexus/functional.h"
#include "nexus/sandbox.h"

static const char probe_src[] =
	"#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n#include <unistd.h>\n"
	"#include <fcntl.h>\n#include <sys/ioctl.h>\n#include <sys/socket.h>\n"
	"#include <netinet/in.h>\n#include <arpa/inet.h>\n"
	"int main(void) {\n"
	"#if P == 0\n return 0;\n"
	"#elif P == 1\n struct sockaddr_in a = { AF_INET, htons(53) }; int s = socket(AF_INET, SOCK_STREAM, 0);\n"
	" inet_pton(AF_INET, \"1.1.1.1\", &a.sin_addr); return s >= 0 && connect(s, (void *)&a, sizeof(a)) == 0 ? 0 : 1;\n"
	"#elif P == 2\n return open(\"/etc/passwd\", O_RDONLY) >= 0 || open(\"/root\", O_RDONLY | O_DIRECTORY) >= 0 ? 0 : 1;\n"
	"#elif P == 3\n return open(\"/bundle/owned\", O_WRONLY | O_CREAT, 0644) >= 0 ? 0 : 1;\n"
	"#elif P == 4\n char c = 'x'; return ioctl(0, TIOCSTI, &c) == 0 ? 0 : 1;\n"
	"#elif P == 5\n for (;;) fork();\n"
	"#elif P == 6\n char *p = malloc(64ull << 30); if (!p) return 1; memset(p, 1, 64ull << 30); return 0;\n"
	"#elif P == 7\n for (volatile int i = 0;; i++) ;\n"
	"#elif P == 8\n static char b[1 << 16]; memset(b, 'y', sizeof(b)); for (;;) fwrite(b, 1, sizeof(b), stdout);\n"
	"#endif\n}\n";

static char bundle[64];
static bool available[3];            /* by enum nx_sandbox_backend */
static enum nx_sandbox_backend backend;

static int setup(void **state)
{
	char cmd[512], path[128];
	FILE *f;

	for (int b = NX_SANDBOX_BACKEND_BWRAP; b <= NX_SANDBOX_BACKEND_LANDLOCK; b++) {
		enum nx_sandbox_backend got;

		available[b] = nx_sandbox_available(&got, (enum nx_sandbox_backend)b, NULL, NULL) == 0 &&
			       got == (enum nx_sandbox_backend)b;
	}
	snprintf(bundle, sizeof(bundle), "/tmp/nx-sbx-XXXXXX");
	if (!mkdtemp(bundle))
		return -1;
	chmod(bundle, 0755);
	snprintf(path, sizeof(path), "%s/probe.c", bundle);
	f = fopen(path, "w");
	fputs(probe_src, f);
	fclose(f);
	for (int p = 0; p <= 8; p++) {
		snprintf(cmd, sizeof(cmd), "cc -O0 -DP=%d -o %s/probe%d %s/probe.c", p, bundle, p, bundle);
		if (system(cmd) != 0)
			return -1;
	}
	snprintf(path, sizeof(path), "%s/bin", bundle);
	mkdir(path, 0755);
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", bundle);
	return system(cmd) == 0 ? 0 : -1;
}

struct seen { char codes[512]; };
static enum nx_functional_sev last_sev;

static int collect(void *ctx, enum nx_functional_sev sev, enum nx_finding_code code, const char *path,
		   long line, const char *message)
{
	struct seen *s = ctx;
	char one[128];

	last_sev = sev;
	snprintf(one, sizeof(one), "%s:%s:%ld;", nx_finding_name(code), path ? path : "", line);
	strncat(s->codes, one, sizeof(s->codes) - strlen(s->codes) - 1);
	return 0;
}

/* Plant probe p as bin/nexus_cli and run the selftest half of TRV-5. */
static void run_probe(int p, struct seen *s)
{
	char src[128], dst[128], cmd[300];
	struct nx_functional_opts o;
	struct timespec t0, t1;
	bool skipped;
	int fd;

	snprintf(src, sizeof(src), "%s/probe%d", bundle, p);
	snprintf(dst, sizeof(dst), "%s/bin/nexus_cli", bundle);
	snprintf(cmd, sizeof(cmd), "cp %s %s", src, dst);
	assert_int_equal(system(cmd), 0);
	chmod(dst, 0555);
	memset(s, 0, sizeof(*s));
	nx_functional_opts_init(&o);
	o.imports = false;
	o.liveness = false;   /* the probe is the selftest's program */
	o.selftest_ms = 3000;
	o.backend = backend;
	fd = open(bundle, O_RDONLY | O_DIRECTORY);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(nx_functional_check(&skipped, fd, bundle, &o, collect, s, NULL), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	close(fd);
	assert_false(skipped);
	assert_true(t1.tv_sec - t0.tv_sec < 10);   /* never a hang */
}

static void probes_are_contained(void **state)
{
	static const char *const expect[] = {
		"", "functional-selftest-failed", "functional-selftest-failed",
		"functional-selftest-failed", "functional-selftest-failed", "functional-timeout",
		"functional-selftest-failed", "functional-timeout", "functional-output-cap",
	};
	struct seen s;
	char owned[128];

	if (!available[backend])
		skip();
	for (int p = 0; p <= 8; p++) {
		run_probe(p, &s);
		if (!expect[p][0])
			assert_string_equal(s.codes, "functional-sandbox::0;");
		else
			assert_non_null(strstr(s.codes, expect[p]));
	}
	snprintf(owned, sizeof(owned), "%s/owned", bundle);
	assert_int_not_equal(access(owned, F_OK), 0);
}

static void write_file(const char *rel, const char *text)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", bundle, rel);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
	chmod(path, 0444);
}

static void python_imports(void **state)
{
	struct nx_functional_opts o;
	struct seen s = {{0}};
	char path[128];
	bool skipped;
	int fd;

	if (!available[backend])
		skip();
	snprintf(path, sizeof(path), "%s/src", bundle);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/config", bundle);
	mkdir(path, 0755);
	write_file("src/__init__.py", "");
	write_file("src/utils.py", "import json, numpy\nfrom numpy.linalg import norm\nx = numpy.zeros(3) + 1\n");
	write_file("src/inference.py", "import os\n\nimport teacher_model\n");
	write_file("config/runtime.yaml", "task: raw\npython_packages: [numpy]\n");
	nx_functional_opts_init(&o);
	o.selftest = false;
	o.liveness = false;   /* the bundle has no runnable model */
	o.backend = backend;
	fd = open(bundle, O_RDONLY | O_DIRECTORY);
	assert_int_equal(nx_functional_check(&skipped, fd, bundle, &o, collect, &s, NULL), 0);
	assert_string_equal(s.codes, "functional-sandbox::0;functional-import:src/inference.py:3;");
	write_file("src/inference.py", "import torch\n");
	memset(&s, 0, sizeof(s));
	unlink(strcat(strcpy(path, bundle), "/src/inference.py"));
	write_file("src/inference.py", "import json\n");
	assert_int_equal(nx_functional_check(&skipped, fd, bundle, &o, collect, &s, NULL), 0);
	assert_string_equal(s.codes, "functional-sandbox::0;");
	close(fd);
}

/* No backend that can run: TRV-5 is a FAIL, a WARN only when allowed, and
 * the message says what is missing. */
static void no_sandbox_fails_unless_allowed(void **state)
{
	struct nx_functional_opts o;
	struct seen s = {{0}};
	nx_error e;
	bool skipped;
	int fd;

	assert_int_equal(nx_sandbox_available(&backend, NX_SANDBOX_BACKEND_BWRAP, "/nonexistent/bwrap",
					      &e), NX_EDEP);
	assert_non_null(strstr(e.message, "bubblewrap not found"));
	assert_non_null(strstr(e.message, "user namespaces"));
	nx_functional_opts_init(&o);
	o.backend = NX_SANDBOX_BACKEND_BWRAP;
	o.bwrap = "/nonexistent/bwrap";
	fd = open(bundle, O_RDONLY | O_DIRECTORY);
	assert_int_equal(nx_functional_check(&skipped, fd, bundle, &o, collect, &s, NULL), 0);
	assert_true(skipped);
	assert_string_equal(s.codes, "functional-sandbox-unavailable::0;");
	assert_int_equal(last_sev, NX_FUNCTIONAL_FAIL);
	o.allow_no_sandbox = true;
	assert_int_equal(nx_functional_check(&skipped, fd, bundle, &o, collect, &s, NULL), 0);
	assert_int_equal(last_sev, NX_FUNCTIONAL_WARN);
	o.strict = true;
	assert_int_equal(nx_functional_check(&skipped, fd, bundle, &o, collect, &s, NULL), 0);
	assert_int_equal(last_sev, NX_FUNCTIONAL_FAIL);
	close(fd);
}

/* The limits scale with the model: a 4.8 GB fp32 student gets the address
 * space it needs instead of a fixed 4 GiB; an override replaces RLIMIT_AS;
 * a limit that stopped a run is named with its value. */
static void limits_scale_with_the_model(void **state)
{
	struct nx_sandbox_opts o;
	struct nx_sandbox_result r = {0};
	char buf[128], err[] = "terminate called after throwing an instance of 'std::bad_alloc'";

	nx_sandbox_opts_init(&o);
	nx_sandbox_scale(&o, 0, 0);
	assert_true(o.as_bytes == NX_SANDBOX_AS_BYTES && o.cpu_seconds == NX_SANDBOX_CPU_SECONDS);
	assert_true(o.wall_ms == NX_SANDBOX_WALL_MS);
	nx_sandbox_opts_init(&o);
	nx_sandbox_scale(&o, 4800000000ull, 0);
	assert_true(o.as_bytes == (1ull << 30) + 4 * 4800000000ull);
	assert_true(o.cpu_seconds == NX_SANDBOX_CPU_SECONDS + 5 * 60);
	assert_true(o.wall_ms == NX_SANDBOX_WALL_MS + 5 * 60000);
	nx_sandbox_scale(&o, 4800000000ull, 8ull << 30);
	assert_true(o.as_bytes == 8ull << 30);
	nx_sandbox_opts_init(&o);
	nx_sandbox_scale(&o, UINT64_MAX, 0);    /* no overflow */
	assert_true(o.as_bytes == UINT64_MAX);
	assert_true(o.cpu_seconds == NX_SANDBOX_CPU_SECONDS + 60 * NX_SANDBOX_SCALE_GIB_MAX);
	nx_sandbox_scale(&o, 4800000000ull, 8ull << 30);
	r.exited = false;
	r.signal = 6;
	r.errout = err;
	assert_string_equal(nx_sandbox_limit_hit(buf, sizeof(buf), &r, &o),
			    "the memory limit (RLIMIT_AS = 8.0 GiB)");
	r.signal = 24;   /* SIGXCPU */
	r.errout = (char *)"";
	assert_non_null(strstr(nx_sandbox_limit_hit(buf, sizeof(buf), &r, &o), "RLIMIT_CPU = 360 s"));
	r.signal = 9;
	assert_null(nx_sandbox_limit_hit(buf, sizeof(buf), &r, &o));
}

static int use_bwrap(void **state)
{
	backend = NX_SANDBOX_BACKEND_BWRAP;
	return 0;
}

static int use_landlock(void **state)
{
	backend = NX_SANDBOX_BACKEND_LANDLOCK;
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(probes_are_contained, use_bwrap),
		cmocka_unit_test_setup(python_imports, use_bwrap),
		cmocka_unit_test_setup(probes_are_contained, use_landlock),
		cmocka_unit_test_setup(python_imports, use_landlock),
		cmocka_unit_test(no_sandbox_fails_unless_allowed),
		cmocka_unit_test(limits_scale_with_the_model),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}

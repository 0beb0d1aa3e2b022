/*
 * verify_functional_py.c - the Python half of TRV-5: import src and every
 * src/<name>.py as src.<name> with `python3 -I -S -B` in the sandbox, where
 * only the standard library, the bundle and stand-ins for runtime.yaml's
 * python_packages resolve.  The driver reports each failed import as one
 * JSON line (prefixed by a per-run nonce) naming the missing module and the
 * bundle file:line of the import statement.
 *
 * The code it imports sees an ordinary interpreter: sys.flags as without
 * -I -S -B, and sys.argv/orig_argv without the driver's arguments (the
 * nonce included), so a module cannot behave one way under the gate and
 * another in production by looking at how it was started.
 */
#include "functional_int.h"
#include "nexus/bundle.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nexus/config.h"
#include "nexus/elf.h"
#include "nexus/hash.h"

#define PY_DIR "/nexus-py"

static const char driver[] =
	"import sys, json, types, importlib, importlib.abc, importlib.machinery, traceback\n"
	"nonce = sys.argv[1]; root = sys.argv[2]; R = root + '/'; sep = sys.argv.index('--')\n"
	"pkgs = sys.argv[3:sep]; mods = sys.argv[sep + 1:]\n"
	"out = sys.stdout\n"
	"def emit(**kw):\n"
	"    out.write('NEXUS-' + nonce + ' ' + json.dumps(kw) + '\\n'); out.flush()\n"
	"class StandIn:\n"
	"    def __init__(self, n): object.__setattr__(self, '_n', n)\n"
	"    def __getattr__(self, k):\n"
	"        if k.startswith('__'): raise AttributeError(k)\n"
	"        return StandIn(self._n + '.' + k)\n"
	"    def __setattr__(self, k, v): pass\n"
	"    def __call__(self, *a, **k): return StandIn(self._n + '()')\n"
	"    def __mro_entries__(self, bases): return (object,)\n"
	"    def __getitem__(self, k): return StandIn(self._n + '[]')\n"
	"    def __iter__(self): return iter(())\n"
	"    def __len__(self): return 0\n"
	"    def __int__(self): return 0\n"
	"    def __index__(self): return 0\n"
	"    def __float__(self): return 0.0\n"
	"    def __enter__(self): return self\n"
	"    def __exit__(self, *a): return False\n"
	"    def _op(self, *a): return StandIn(self._n)\n"
	"    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _op\n"
	"    __truediv__ = __rtruediv__ = __matmul__ = __rmatmul__ = __neg__ = _op\n"
	"class Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):\n"
	"    def find_spec(self, name, path, target=None):\n"
	"        if any(name == p or name.startswith(p + '.') for p in pkgs):\n"
	"            return importlib.machinery.ModuleSpec(name, self, is_package=True)\n"
	"    def create_module(self, spec):\n"
	"        m = types.ModuleType(spec.name); m.__path__ = []\n"
	"        def ga(k, n=spec.name):\n"
	"            if k.startswith('__'): raise AttributeError(k)\n"
	"            return StandIn(n + '.' + k)\n"
	"        m.__getattr__ = ga\n"
	"        return m\n"
	"    def exec_module(self, m): pass\n"
	"sys.meta_path.append(Finder())\n"
	"import collections\n"
	"names = type(sys.flags).__match_args__\n"
	"normal = dict(zip(names, sys.flags))\n"
	"normal.update(isolated=0, ignore_environment=0, no_user_site=0, no_site=0,\n"
	"              dont_write_bytecode=0, safe_path=False)\n"
	"Flags = collections.namedtuple('flags', names)\n"
	"Flags.__module__ = 'sys'\n"
	"Flags.__repr__ = lambda s: 'sys.flags(' + ', '.join('%s=%r' % kv for kv in zip(names, s)) + ')'\n"
	"sys.flags = Flags(**normal)\n"
	"sys.dont_write_bytecode = False\n"
	"sys.argv = ['']; sys.orig_argv = [sys.executable]\n"
	"del names, normal, Flags\n"
	"sys.path += [root, R + 'src']\n"
	"def where(tb):\n"
	"    f, l = '', 0\n"
	"    for fr in traceback.extract_tb(tb):\n"
	"        if fr.filename.startswith(R): f, l = fr.filename[len(R):], fr.lineno\n"
	"    return f, l\n"
	"for name in ['src'] + ['src.' + m for m in mods]:\n"
	"    try:\n"
	"        importlib.import_module(name)\n"
	"    except ImportError as e:\n"
	"        f, l = where(e.__traceback__)\n"
	"        emit(kind='missing', module=e.name or '', importer=name, file=f, line=l, message=str(e)[:300])\n"
	"    except OSError as e:\n"
	"        f, l = where(e.__traceback__)\n"
	"        emit(kind='io', type=type(e).__name__, importer=name, file=f, line=l, message=str(e)[:300])\n"
	"    except BaseException as e:\n"
	"        f, l = where(e.__traceback__)\n"
	"        emit(kind='error', type=type(e).__name__, importer=name, file=f, line=l, message=str(e)[:300])\n"
	"# a bundle file is src, src.<stem> or <stem>; under another name, or\n"
	"# with a __path__, it poses as a package the sandbox lacks (torch.optim)\n"
	"for n, m in list(sys.modules.items()):\n"
	"    d = getattr(m, '__dict__', None)\n"
	"    if not isinstance(d, dict): continue\n"
	"    for f in (getattr(d.get('__spec__'), 'origin', None), d.get('__file__')):\n"
	"        if not isinstance(f, str) or not f.startswith(R): continue\n"
	"        rel = f[len(R):]; stem = rel[4:-3] if rel.startswith('src/') and rel.endswith('.py') else None\n"
	"        ok = ('src',) if rel == 'src/__init__.py' else (stem, 'src.' + stem) if stem and '/' not in stem else ()\n"
	"        if n not in ok or ('__path__' in d and n != 'src'):\n"
	"            emit(kind='posing', module=n, importer=n, file=rel, line=0, message='')\n"
	"            break\n"
	"emit(kind='done')\n";

/* Module names of the .py files in src/ (identifier stems, __init__ excluded). */
static int list_modules(char ***out, size_t *n, int dirfd, nx_error *err)
{
	DIR *d;
	struct dirent *e;
	int fd = openat(dirfd, "src", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC), rc = 0;

	if (fd < 0)
		return 0;           /* no sources: nothing to import */
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return nx_error_errno(err, NX_EIO, errno, "src", "cannot list src/");
	}
	while (!rc && (e = readdir(d))) {
		size_t len = strlen(e->d_name), i;
		char name[NAME_MAX + 1];
		bool ident = len > 3 && !strcmp(e->d_name + len - 3, ".py");

		for (i = 0; ident && i < len - 3; i++) {
			char ch = e->d_name[i];

			ident = ch == '_' || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
				(i && ch >= '0' && ch <= '9');
		}
		if (!ident || !strcmp(e->d_name, "__init__.py"))
			continue;
		if (*n >= NX_FUNCTIONAL_PY_MODULES_MAX) {
			rc = nx_error_set(err, NX_ELIMIT, "src", 0, -1,
					  "more than %d Python files in src/", NX_FUNCTIONAL_PY_MODULES_MAX);
			break;
		}
		snprintf(name, sizeof(name), "%.*s", (int)(len - 3), e->d_name);
		rc = nx_fx__strv_append(out, n, name, err);
	}
	closedir(d);
	return rc;
}

/* python3, its stdlib dir and the ELF closure of both into *paths. */
static int python_paths(char ***paths, size_t *n, const char *python, nx_error *err)
{
	char real[PATH_MAX], stdlib[PATH_MAX], dyn[PATH_MAX + 16], **libs = NULL, **bins = NULL;
	size_t nlibs = 0, nbins = 0, i;
	const char *base;
	DIR *d = NULL;
	struct dirent *e;
	int rc;

	if (!realpath(python, real))
		return nx_error_errno(err, NX_EDEP, errno, python, "cannot find %s", python);
	base = strrchr(real, '/') + 1;
	snprintf(stdlib, sizeof(stdlib), "/usr/lib/%s", base);   /* /usr/lib/python3.11 */
	snprintf(dyn, sizeof(dyn), "%s/lib-dynload", stdlib);
	rc = nx_fx__strv_append(&bins, &nbins, real, err);
	d = opendir(dyn);
	while (!rc && d && (e = readdir(d))) {
		char so[PATH_MAX * 2];
		size_t len = strlen(e->d_name);

		if (len < 4 || strcmp(e->d_name + len - 3, ".so"))
			continue;
		snprintf(so, sizeof(so), "%s/%s", dyn, e->d_name);
		rc = nx_fx__strv_append(&bins, &nbins, so, err);
	}
	if (!rc)
		rc = nx_elf_closure(&libs, &nlibs, (const char *const *)bins, nbins, NULL, err);
	if (!rc)
		rc = nx_fx__strv_append(paths, n, python, err);
	if (!rc && access(stdlib, R_OK) == 0)
		rc = nx_fx__strv_append(paths, n, stdlib, err);
	for (i = 0; !rc && i < nlibs; i++)
		rc = nx_fx__strv_append(paths, n, libs[i], err);
	if (d)
		closedir(d);
	nx_elf_closure_free(libs, nlibs);
	nx_elf_closure_free(bins, nbins);
	return rc;
}

/* One driver line -> a finding.  Returns 1 for the "done" line. */
static int judge_line(struct fx_ctx *c, const char *line, nx_error *err)
{
	json_t *j = json_loads(line, 0, NULL);
	const char *kind = json_string_value(json_object_get(j, "kind"));
	const char *file = json_string_value(json_object_get(j, "file"));
	const char *mod = json_string_value(json_object_get(j, "module"));
	const char *imp = json_string_value(json_object_get(j, "importer"));
	const char *msg = json_string_value(json_object_get(j, "message"));
	const char *type = json_string_value(json_object_get(j, "type"));
	long ln = (long)json_integer_value(json_object_get(j, "line"));
	char text[1024];
	int rc = 0;

	if (!kind) {
		rc = 0;
	} else if (!strcmp(kind, "done")) {
		rc = 1;
	} else if (!strcmp(kind, "missing")) {
		snprintf(text, sizeof(text),
			 "importing %s needs module '%s', which is not in the standard library, "
			 "the bundle or runtime.yaml python_packages (a training library or teacher "
			 "code?): %s", imp ? imp : "?", mod ? mod : "?", msg ? msg : "");
		rc = c->fn(c->ctx, NX_FUNCTIONAL_FAIL, NX_F_FUNCTIONAL_IMPORT, file && *file ? file : "src",
			   ln, text);
	} else if (!strcmp(kind, "posing")) {
		snprintf(text, sizeof(text),
			 "module '%s' was loaded from the bundle file %s, which is not that module "
			 "(or is a module made a package): a bundle file standing in for a package "
			 "the sandbox does not have, which production would import for real",
			 mod ? mod : "?", file && *file ? file : "?");
		rc = c->fn(c->ctx, NX_FUNCTIONAL_FAIL, NX_F_FUNCTIONAL_IMPORT,
			   file && *file ? file : "src", 0, text);
	} else if (!strcmp(kind, "io")) {
		/* the sandbox shows only the bundle: an OSError at import time is
		 * the module reaching for a file, socket or device outside it */
		snprintf(text, sizeof(text),
			 "importing %s tried I/O outside the bundle and was denied by the sandbox "
			 "(%s: %s); serving modules must not touch the host or the network when "
			 "imported", imp ? imp : "?", type ? type : "?", msg ? msg : "");
		rc = c->fn(c->ctx, NX_FUNCTIONAL_FAIL, NX_F_FUNCTIONAL_IMPORT_IO,
			   file && *file ? file : "src", ln, text);
	} else {
		snprintf(text, sizeof(text), "importing %s raised %s: %s", imp ? imp : "?",
			 type ? type : "?", msg ? msg : "");
		rc = c->fn(c->ctx, NX_FUNCTIONAL_WARN, NX_F_FUNCTIONAL_IMPORT_ERROR,
			   file && *file ? file : "src", ln, text);
	}
	json_decref(j);
	(void)err;
	return rc;
}

static int parse_output(struct fx_ctx *c, const struct nx_sandbox_result *r, const char *nonce,
			nx_error *err)
{
	char prefix[64];
	const char *p = r->out;
	bool done = false;
	int rc = 0;

	snprintf(prefix, sizeof(prefix), "NEXUS-%s ", nonce);
	while (!rc && p && *p) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p) : strlen(p);

		if (len > strlen(prefix) && !strncmp(p, prefix, strlen(prefix))) {
			char *line = strndup(p + strlen(prefix), len - strlen(prefix));

			if (!line)
				return nx_error_oom(err, NULL);
			rc = judge_line(c, line, err);
			free(line);
			if (rc == 1) {
				done = true;
				rc = 0;
			}
		}
		p = nl ? nl + 1 : NULL;
	}
	if (!rc && !done)
		rc = c->fn(c->ctx, NX_FUNCTIONAL_FAIL, NX_F_FUNCTIONAL_PYTHON_FAILED, "src", 0,
			   "the Python import check did not finish (a source exited the interpreter "
			   "or crashed it)");
	return rc;
}

int nx_fx__imports(struct fx_ctx *c, nx_error *err)
{
	const char *python = c->o->python ? c->o->python : NX_FUNCTIONAL_PYTHON;
	char tmp[] = "/tmp/nexus-py-XXXXXX", drv[64], nonce[33];
	char **mods = NULL, **paths = NULL, **argv = NULL;
	size_t nmods = 0, npaths = 0, nargv = 0, i;
	const char *map[3] = { tmp, PY_DIR, NULL };
	unsigned char rnd[16];
	nx_runtime_config *rcfg = NULL;
	struct nx_sandbox_result r = {0};
	struct nx_sandbox_opts so;
	bool have_tmp = false, bad;
	int fd = -1, rc;
	struct stat st;

	if (fstatat(c->dirfd, "src", &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode))
		return 0;   /* no sources; the allowlist check judges the layout */
	rc = list_modules(&mods, &nmods, c->dirfd, err);
	if (rc)
		goto out;
	if (nx_runtime_config_load(&rcfg, c->dirfd, NX_BUNDLE_RUNTIME_CONFIG, NULL) != 0)
		rcfg = NULL;   /* reported by the other checks; no packages declared */
	if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
		rc = nx_error_set(err, NX_EINTERNAL, NULL, 0, -1, "no randomness for the nonce");
		goto out;
	}
	for (i = 0; i < sizeof(rnd); i++)
		snprintf(nonce + 2 * i, 3, "%02x", rnd[i]);
	rc = python_paths(&paths, &npaths, python, err);
	if (rc) {
		if (rc == NX_EDEP)
			rc = c->fn(c->ctx, NX_FUNCTIONAL_WARN, NX_F_FUNCTIONAL_SANDBOX_UNAVAILABLE, "src",
				   0, err ? err->message : "python3 not found");
		goto out;
	}
	if (!mkdtemp(tmp)) {
		rc = nx_error_errno(err, NX_EIO, errno, tmp, "cannot create a temporary directory");
		goto out;
	}
	have_tmp = true;
	snprintf(drv, sizeof(drv), "%s/driver.py", tmp);
	fd = open(drv, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0444);
	if (fd < 0 || write(fd, driver, sizeof(driver) - 1) != (ssize_t)(sizeof(driver) - 1) ||
	    chmod(tmp, 0755) != 0) {
		rc = nx_error_errno(err, NX_EIO, errno, drv, "cannot write %s", drv);
		goto out;
	}
	rc = nx_fx__strv_append(&argv, &nargv, python, err);
	/* The bundle's path in the sandbox is an argument: the landlock
	 * backend runs it at its host path (nexus/sandbox.h). */
	for (const char *a[] = { "-I", "-S", "-B", PY_DIR "/driver.py", nonce, NX_SANDBOX_BUNDLE,
				 NULL }, **q = a;
	     !rc && *q; q++)
		rc = nx_fx__strv_append(&argv, &nargv, *q, err);
	for (i = 0; !rc && rcfg && i < rcfg->npython_packages; i++)
		rc = nx_fx__strv_append(&argv, &nargv, rcfg->python_packages[i], err);
	if (!rc)
		rc = nx_fx__strv_append(&argv, &nargv, "--", err);
	for (i = 0; !rc && i < nmods; i++)
		rc = nx_fx__strv_append(&argv, &nargv, mods[i], err);
	if (!rc)
		rc = nx_fx__strv_append(&paths, &npaths, NULL, err);
	if (rc)
		goto out;
	nx_fx__sandbox_opts(&so, c, c->o->import_ms ? c->o->import_ms : NX_FUNCTIONAL_IMPORT_MS);
	so.argv = (const char *const *)argv;
	so.ro_paths = (const char *const *)paths;
	so.ro_map = map;
	so.chdir = "/tmp";
	rc = nx_sandbox_run(&r, &so, err);
	if (rc)
		goto out;
	rc = nx_fx__judge(c, &r, &so, "the Python import check", NX_F_FUNCTIONAL_PYTHON_FAILED, "src", &bad);
	if (!rc && !bad)
		rc = parse_output(c, &r, nonce, err);
out:
	if (fd >= 0)
		close(fd);
	if (have_tmp) {
		unlink(drv);
		rmdir(tmp);
	}
	nx_sandbox_result_release(&r);
	nx_runtime_config_free(rcfg);
	nx_elf_closure_free(mods, nmods);
	nx_elf_closure_free(paths, npaths);
	nx_elf_closure_free(argv, nargv);
	return rc;
}

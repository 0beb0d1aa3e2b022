/*
 * verify_integrity.c - check `integrity`: the files on disk are exactly the
 * manifest's, byte for byte, and nothing on disk could change or redirect
 * what is read (symlinks, hard links, special files, writable or setuid
 * files).  Sizes are compared before any byte is read, and a file is hashed
 * from the descriptor that was fstat'ed, never past the manifest's size.
 */
#include "verify_internal.h"
#include "nexus/bundle.h"

#include <ctype.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK NX_CHECK_INTEGRITY
#define ADD(sev, code, path, ...) \
	do { if (nx_report_add(c->r, CHECK, sev, code, path, 0, __VA_ARGS__)) return NX_ENOMEM; } while (0)

enum job_state { JOB_OK, JOB_SIZE, JOB_HASH, JOB_OPEN };

struct job {
	size_t entry;                  /* index into c->entries */
	const struct nx_manifest_file *mf;
	enum job_state state;
	uint64_t actual_size;
	unsigned char sha256[NX_SHA256_LEN];
	char *error;                   /* JOB_OPEN: message */
};

struct pool {
	struct vfy_ctx *c;
	struct job *jobs;
	size_t njobs, next;
	pthread_mutex_t lock;
};

static void run_job(struct vfy_ctx *c, struct job *j)
{
	const char *path = c->entries[j->entry].path;
	struct stat st;
	nx_error e;
	int fd = -1;

	nx_error_clear(&e);
	if (nx_vfy__open_regular(&fd, &st, c->dirfd, path, &e))
		goto out_error;
	j->actual_size = (uint64_t)st.st_size;
	if (j->actual_size != j->mf->size) {
		/* a sparse 1 TB file with the wrong size costs nothing */
		j->state = JOB_SIZE;
		goto out_close;
	}
	if (c->opts->digests_known &&
	    (!c->opts->digest_still_known ||
	     c->opts->digest_still_known(c->opts->digest_known_ctx, path, &st))) {
		/* The caller wrote this tree and took these digests while
		 * writing it (nx_verify_opts.digests_known): no second read. */
		memcpy(j->sha256, j->mf->sha256, NX_SHA256_LEN);
	} else if (nx_sha256_fd(j->sha256, fd, j->mf->size, path, &e)) {
		goto out_error;
	}
	j->state = memcmp(j->sha256, j->mf->sha256, NX_SHA256_LEN) ? JOB_HASH : JOB_OK;
	goto out_close;
out_error:
	j->state = JOB_OPEN;
	j->error = strdup(e.message);
out_close:
	if (fd >= 0)
		close(fd);
}

static void *worker(void *arg)
{
	struct pool *p = arg;

	for (;;) {
		size_t i;

		pthread_mutex_lock(&p->lock);
		i = p->next++;
		pthread_mutex_unlock(&p->lock);
		if (i >= p->njobs)
			return NULL;
		run_job(p->c, &p->jobs[i]);
	}
}

/* Hash on up to opts->threads threads (2 by default) when there are
 * several files: hashing is what a verify of a large model costs. */
static void run_jobs(struct vfy_ctx *c, struct job *jobs, size_t n)
{
	struct pool p = {.c = c, .jobs = jobs, .njobs = n};
	pthread_t th[8];
	int want = c->opts->threads > 0 ? c->opts->threads : 2, started = 0, i;

	if (want > 8)
		want = 8;
	if (pthread_mutex_init(&p.lock, NULL)) {
		/* no lock to share the jobs by: all on this thread */
		for (p.next = 0; p.next < n; p.next++)
			run_job(c, &jobs[p.next]);
		return;
	}
	for (i = 1; n > 1 && i < want; i++)
		if (pthread_create(&th[started], NULL, worker, &p) == 0)
			started++;
	worker(&p);
	for (i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	pthread_mutex_destroy(&p.lock);
}

static int check_entry_type(struct vfy_ctx *c, const struct nx_fs_entry *e)
{
	nx_error pe;

	if (nx_manifest_path_check(e->path, &pe))
		ADD(NX_SEV_FAIL, NX_F_PATH_INVALID, e->path, "%s", pe.message);
	if (S_ISLNK(e->mode))
		ADD(NX_SEV_FAIL, NX_F_SYMLINK, e->path, "%s is a symbolic link; bundles hold regular files only",
		    e->path);
	else if (!S_ISREG(e->mode) && !S_ISDIR(e->mode))
		ADD(NX_SEV_FAIL, NX_F_SPECIAL_FILE, e->path,
		    "%s is a special file (fifo, socket or device); bundles hold regular files only",
		    e->path);
	if (S_ISLNK(e->mode) || (!S_ISREG(e->mode) && !S_ISDIR(e->mode)))
		return 0;
	if (S_ISREG(e->mode) && e->nlink > 1)
		ADD(NX_SEV_FAIL, NX_F_HARDLINK, e->path,
		    "%s has %lu hard links; a linked file can be changed from outside the bundle",
		    e->path, (unsigned long)e->nlink);
	if (e->mode & (S_ISUID | S_ISGID | S_ISVTX))
		ADD(NX_SEV_FAIL, NX_F_SETUID, e->path, "%s has the setuid, setgid or sticky bit (mode %04o)",
		    e->path, (unsigned)(e->mode & 07777));
	return 0;
}

/* The mode entry i must have: 0555 for a directory, else the manifest's
 * (nx_manifest_file_mode), else the rule of bundles without modes; 0 for
 * what is neither a file nor a directory (the type check names it). */
static mode_t mode_wanted(const struct vfy_ctx *c, size_t i)
{
	const struct nx_fs_entry *e = &c->entries[i];
	const struct nx_manifest_file *mf = c->m ? nx_manifest_find(c->m, e->path) : NULL;

	if (!S_ISREG(e->mode) && !S_ISDIR(e->mode))
		return 0;
	if (S_ISDIR(e->mode))
		return 0555;
	if (mf)
		return nx_manifest_file_mode(mf);
	return !strcmp(e->path, NX_BUNDLE_CLI) ? 0555 : 0444;
}

/* Every regular file and directory is exactly what the manifest lists
 * (extra directories aside), byte for byte: only modes can be wrong. */
static bool content_matches(const struct vfy_ctx *c)
{
	size_t i;

	if (!c->m)
		return false;
	for (i = 0; i < c->nentries; i++) {
		const struct nx_fs_entry *e = &c->entries[i];

		if (S_ISREG(e->mode) && strcmp(e->path, NX_MANIFEST_NAME) &&
		    (!c->files[i].verified || e->nlink > 1))
			return false;
		if (!S_ISREG(e->mode) && !S_ISDIR(e->mode))
			return false;
		if (e->mode & (S_ISUID | S_ISGID | S_ISVTX))
			return false;
	}
	for (i = 0; i < c->m->nfiles; i++)
		if (nx_vfy__find(c, c->m->files[i].path) < 0)
			return false;
	return true;
}

/*
 * Modes.  Transport that drops them (cp --no-preserve=mode, zip artifacts,
 * S3 sync, oras pull) leaves every file 0644 and every directory 0755: one
 * finding per entry would bury the one thing to do.  When the content
 * matches the manifest, several wrong modes are one finding naming the
 * command that restores them; otherwise each entry is named, as tampering
 * may be.
 */
static int check_modes(struct vfy_ctx *c)
{
	const char *fix = "; restore the modes with: nexus fix-modes ";
	const char *at = c->opts->hint_path ? c->opts->hint_path : c->bundle_path;
	char word[NX_ERROR_PATH_MAX];
	size_t i, nbad = 0, first = 0;
	bool fail = false, matches;

	for (i = 0; i < c->nentries; i++) {
		mode_t perm = c->entries[i].mode & 0777, want = mode_wanted(c, i);

		if (!want || perm == want)
			continue;
		if (!nbad++)
			first = i;
		fail |= (perm & 0222) || (want & 0111 && (perm & 0111) != (want & 0111));
	}
	if (!nbad)
		return 0;
	matches = content_matches(c);
	nx_shell_word(word, sizeof(word), at);
	if (matches && nbad > 1) {
		const struct nx_fs_entry *e = &c->entries[first];

		ADD(fail ? NX_SEV_FAIL : NX_SEV_WARN, NX_F_MODES_LOST, e->path,
		    "%zu files and directories do not have the modes the manifest records "
		    "(%s is %04o, expected %04o) although their content matches it: the modes "
		    "were lost in transport (cp --no-preserve=mode, zip, S3 sync, oras pull). "
		    "Restore them with: nexus fix-modes %s", nbad, e->path,
		    (unsigned)(e->mode & 0777), (unsigned)mode_wanted(c, first), word);
		return 0;
	}
	for (i = 0; i < c->nentries; i++) {
		const struct nx_fs_entry *e = &c->entries[i];
		mode_t perm = e->mode & 0777, want = mode_wanted(c, i);

		if (!want || perm == want)
			continue;
		if (perm & 0222)
			ADD(NX_SEV_FAIL, NX_F_WRITABLE, e->path,
			    "%s is writable (mode %04o); bundle files are 0444 (bin/nexus_cli 0555), "
			    "directories 0555%s%s", e->path, (unsigned)perm, matches ? fix : "",
			    matches ? word : "");
		else
			ADD(NX_SEV_WARN, NX_F_MODE_UNEXPECTED, e->path, "%s has mode %04o, expected %04o%s%s",
			    e->path, (unsigned)perm, (unsigned)want, matches ? fix : "",
			    matches ? word : "");
	}
	return 0;
}

static int by_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Names that differ only by case collide on case-insensitive filesystems
 * (macOS, Windows shares): one would silently replace the other. */
static int check_case(struct vfy_ctx *c)
{
	char **low = calloc(c->nentries + 1, sizeof(*low));
	size_t i, j;
	int rc = 0;

	if (!low)
		return NX_ENOMEM;
	for (i = 0; i < c->nentries; i++) {
		if (!(low[i] = strdup(c->entries[i].path))) {
			rc = NX_ENOMEM;
			goto out_free;
		}
		for (j = 0; low[i][j]; j++)
			low[i][j] = (char)tolower((unsigned char)low[i][j]);
	}
	qsort(low, c->nentries, sizeof(*low), by_str);
	for (i = 1; i < c->nentries; i++)
		if (!strcmp(low[i], low[i - 1]) &&
		    (rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_CASE_COLLISION, low[i], 0,
					"two entries are named '%s' when case is ignored", low[i])))
			goto out_free;
out_free:
	for (i = 0; i < c->nentries; i++)
		free(low[i]);
	free(low);
	return rc;
}

static int load_manifest(struct vfy_ctx *c)
{
	long i = nx_vfy__find(c, NX_MANIFEST_NAME);
	nx_error e;

	if (i < 0)
		ADD(NX_SEV_FAIL, NX_F_MANIFEST_MISSING, NX_MANIFEST_NAME,
		    "the bundle has no manifest.json; rebuild it with nexus build");
	/* a directory passes the type check, so it must be named here: with
	 * no manifest nothing was compared and integrity must not PASS */
	if (i >= 0 && S_ISDIR(c->entries[i].mode))
		ADD(NX_SEV_FAIL, NX_F_MANIFEST_MISSING, NX_MANIFEST_NAME,
		    "manifest.json is a directory, not the bundle's manifest; rebuild the "
		    "bundle with nexus build");
	if (i < 0 || !S_ISREG(c->entries[i].mode))
		return 0;   /* symlink / special file reported by the type check */
	nx_error_clear(&e);
	if (nx_manifest_load(&c->m, c->dirfd, NX_MANIFEST_NAME, &e)) {
		if (e.code == NX_ENOMEM)
			return NX_ENOMEM;
		c->m = NULL;
		ADD(NX_SEV_FAIL, NX_F_MANIFEST_INVALID, NX_MANIFEST_NAME, "%s", e.message);
		return 0;
	}
	if (!c->m->teacher_free || !c->m->training_code_excluded)
		ADD(NX_SEV_FAIL, NX_F_MANIFEST_INVARIANT_FALSE, NX_MANIFEST_NAME,
		    "the manifest's invariants are not both true: the bundle did not pass "
		    "teacher-removal validation when it was built");
	return 0;
}

static int compare(struct vfy_ctx *c)
{
	struct job *jobs = NULL;
	size_t i, n = 0;
	int rc = 0;

	jobs = calloc(c->m->nfiles + 1, sizeof(*jobs));
	if (!jobs)
		return NX_ENOMEM;
	for (i = 0; i < c->nentries; i++) {
		const struct nx_fs_entry *e = &c->entries[i];
		const struct nx_manifest_file *mf;

		if (!S_ISREG(e->mode) && !S_ISDIR(e->mode))
			continue;
		if (S_ISDIR(e->mode)) {
			if (!nx_manifest_has_dir(c->m, e->path) &&
			    (rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_EXTRA_DIR, e->path, 0,
						"directory %s holds no file of the manifest", e->path)))
				goto out_free;
			continue;
		}
		if (!strcmp(e->path, NX_MANIFEST_NAME))
			continue;
		mf = nx_manifest_find(c->m, e->path);
		if (!mf) {
			if ((rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_EXTRA_FILE, e->path, 0,
						"%s is not listed in the manifest", e->path)))
				goto out_free;
			continue;
		}
		c->files[i].in_manifest = true;
		jobs[n].entry = i;
		jobs[n++].mf = mf;
	}
	for (i = 0; i < c->m->nfiles; i++) {
		long k = nx_vfy__find(c, c->m->files[i].path);

		if (k < 0 && (rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_MISSING_FILE,
						  c->m->files[i].path, 0,
						  "%s is listed in the manifest but missing",
						  c->m->files[i].path)))
			goto out_free;
	}
	run_jobs(c, jobs, n);
	for (i = 0; !rc && i < n; i++) {
		struct job *j = &jobs[i];
		const char *p = c->entries[j->entry].path;
		char want[2 * NX_SHA256_LEN + 1], got[2 * NX_SHA256_LEN + 1];

		switch (j->state) {
		case JOB_OK:
			c->files[j->entry].verified = true;
			c->files[j->entry].hashed = true;
			memcpy(c->files[j->entry].sha256, j->sha256, NX_SHA256_LEN);
			break;
		case JOB_SIZE:
			rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_SIZE_MISMATCH, p, 0,
					   "%s is %llu bytes, the manifest says %llu", p,
					   (unsigned long long)j->actual_size,
					   (unsigned long long)j->mf->size);
			break;
		case JOB_HASH:
			c->files[j->entry].hashed = true;
			memcpy(c->files[j->entry].sha256, j->sha256, NX_SHA256_LEN);
			nx_hex(want, j->mf->sha256);
			nx_hex(got, j->sha256);
			rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_HASH_MISMATCH, p, 0,
					   "%s has sha256 %s, the manifest says %s", p, got, want);
			break;
		case JOB_OPEN:
			rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_UNREADABLE, p, 0, "%s",
					   j->error ? j->error : "cannot read the file");
			break;
		}
	}
out_free:
	for (i = 0; i < n; i++)
		free(jobs[i].error);
	free(jobs);
	return rc;
}

/* One entry's (or, path NULL, the bundle directory's) extended attributes:
 * data beside the manifest, or privileges (security.capability).  The one
 * exception is the SELinux label an SELinux host puts on every file: it must
 * be label-shaped and the same on every entry as on the bundle directory,
 * so it carries at most NX_FS_SELINUX_LABEL_MAX bytes in all. */
static int check_xattr(struct vfy_ctx *c, const char *path, bool dir, char **root_label)
{
	const char *name = path ? path : ".";
	char *names = NULL, *label = NULL;
	nx_error e;
	int fd = -1, rc;

	nx_error_clear(&e);
	rc = !path ? 0 : dir ? nx_fs_open_beneath(&fd, c->dirfd, path, O_RDONLY | O_DIRECTORY, &e) :
	     nx_vfy__open_regular(&fd, NULL, c->dirfd, path, &e);
	if (!rc && !(rc = nx_fs_xattrs(&names, path ? fd : c->dirfd, path ? path : c->bundle_path,
				       &e)))
		rc = nx_fs_selinux_label(&label, path ? fd : c->dirfd, path ? path : c->bundle_path,
					 &e);
	if (fd >= 0)
		close(fd);
	if (rc && rc != NX_ENOMEM)
		rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL,
				   rc == NX_EUNSAFE ? NX_F_EXTENDED_ATTRIBUTE : NX_F_UNREADABLE, name, 0,
				   "%s", e.message);
	if (rc || e.code)
		goto out_free;
	if (names)
		rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL,
				   strstr(names, "security.capability") ? NX_F_FILE_CAPABILITY : NX_F_EXTENDED_ATTRIBUTE,
				   name, 0, "%s has extended attributes (%s): bundle files carry "
				   "their bytes and mode only; an xattr is data the manifest does not "
				   "cover, a file capability grants privileges like setuid. Rebuild "
				   "with nexus build, which never copies them", name, names);
	if (!rc && !path)
		*root_label = label, label = NULL;
	else if (!rc && (label || *root_label) &&
		 (!label || !*root_label || strcmp(label, *root_label) != 0))
		rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_EXTENDED_ATTRIBUTE, name, 0,
				   "%s has SELinux label '%s' where the bundle directory has '%s': "
				   "a bundle's files carry the one label of their tree (relabel it with "
				   "restorecon -R, or copy it with cp -r)", name, label ? label : "none",
				   *root_label ? *root_label : "none");
out_free:
	free(label);
	free(names);
	return rc;
}

int nx_vfy__integrity(struct vfy_ctx *c, nx_error *err)
{
	char *root_label = NULL;
	nx_error e;
	size_t i;
	int rc;

	nx_error_clear(&e);
	rc = nx_fs_walk(&c->entries, &c->nentries, c->dirfd, NX_VERIFY_ENTRIES_MAX, &e);
	if (rc == NX_ENOMEM)
		return nx_error_set(err, rc, c->bundle_path, 0, -1, "%s", e.message);
	if (rc) {
		c->entries = NULL;
		c->nentries = 0;
		return nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_UNREADABLE, e.path, 0, "%s",
				     e.message);
	}
	c->files = calloc(c->nentries + 1, sizeof(*c->files));
	if (!c->files)
		return NX_ENOMEM;
	for (i = 0; i < c->nentries; i++)
		if ((rc = check_entry_type(c, &c->entries[i])))
			return rc;
	rc = check_xattr(c, NULL, true, &root_label);
	for (i = 0; !rc && i < c->nentries; i++)
		if (S_ISREG(c->entries[i].mode) || S_ISDIR(c->entries[i].mode))
			rc = check_xattr(c, c->entries[i].path, S_ISDIR(c->entries[i].mode),
					 &root_label);
	free(root_label);
	if (rc)
		return rc;
	if ((rc = check_case(c)) || (rc = load_manifest(c)))
		return rc;
	if (c->m && (rc = compare(c)))
		return rc;
	return check_modes(c);
}

static bool same_time(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

/*
 * Every check after the walk reads files again (sniffing, scanning, the
 * ONNX walk, the sandbox).  A file rewritten or renamed over in between
 * was hashed as one thing and judged as another - and can be put back
 * afterwards.  Any write or rename changes an inode's ctime, which no one
 * can set back, so the walk's lstat is compared once all reads are done.
 */
int nx_vfy__unchanged(struct vfy_ctx *c)
{
	size_t i;
	int rc = 0;

	for (i = 0; !rc && i < c->nentries; i++) {
		const struct nx_fs_entry *e = &c->entries[i];
		struct stat st;

		if (!S_ISREG(e->mode) && !S_ISDIR(e->mode))
			continue;
		if (fstatat(c->dirfd, e->path, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    st.st_ino == e->ino && st.st_dev == e->dev && st.st_mode == e->mode &&
		    (uint64_t)st.st_size == e->size && same_time(&st.st_mtim, &e->mtime) &&
		    same_time(&st.st_ctim, &e->ctime))
			continue;
		rc = nx_report_add(c->r, CHECK, NX_SEV_FAIL, NX_F_CHANGED_DURING_VERIFY, e->path, 0,
				   "%s changed while it was verified (its inode, size or times are "
				   "not those it had when listed): what was hashed is not what was "
				   "judged", e->path);
	}
	return rc ? rc : nx_report_check_update(c->r, CHECK);
}

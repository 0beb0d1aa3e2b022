/* test_fs.c - beneath-opens, walks and atomic publish on a real tmp dir. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "nexus/fs.h"

struct fx {
	char root[64];
	int fd;
};

static void put(int dirfd, const char *path, const char *text)
{
	int fd = openat(dirfd, path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static int rm_rf(const char *path)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd), "chmod -R u+w '%s' 2>/dev/null; rm -rf '%s'", path, path);
	return system(cmd);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	strcpy(f->root, "/tmp/nx-test-fs-XXXXXX");
	if (!mkdtemp(f->root))
		return -1;
	f->fd = open(f->root, O_RDONLY | O_DIRECTORY);
	mkdirat(f->fd, "ws", 0755);
	mkdirat(f->fd, "ws/sub", 0755);
	put(f->fd, "ws/a.txt", "hello");
	put(f->fd, "ws/sub/b.txt", "bee");
	put(f->fd, "outside.txt", "secret");
	if (symlinkat("../outside.txt", f->fd, "ws/escape") ||
	    symlinkat("a.txt", f->fd, "ws/inside-link") ||
	    symlinkat("sub", f->fd, "ws/dirlink"))
		return -1;
	mkfifoat(f->fd, "ws/fifo", 0644);
	put(f->fd, "ws/.hidden", "h");
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	nx_fs_test_force_fallback(false);
	close(f->fd);
	rm_rf(f->root);
	free(f);
	return 0;
}

static int wsfd(struct fx *f)
{
	int fd = openat(f->fd, "ws", O_RDONLY | O_DIRECTORY);

	assert_true(fd >= 0);
	return fd;
}

static void check_beneath(struct fx *f)
{
	nx_error e;
	int ws = wsfd(f), fd = -1;

	assert_int_equal(nx_fs_open_beneath(&fd, ws, "a.txt", O_RDONLY, &e), 0);
	close(fd);
	assert_int_equal(nx_fs_open_beneath(&fd, ws, "sub/b.txt", O_RDONLY, &e), 0);
	close(fd);
	assert_int_equal(nx_fs_open_beneath(&fd, ws, "escape", O_RDONLY, &e), NX_EUNSAFE);
	assert_non_null(strstr(e.message, "symlink"));
	/* Even a link that stays inside is refused. */
	assert_int_equal(nx_fs_open_beneath(&fd, ws, "inside-link", O_RDONLY, &e), NX_EUNSAFE);
	assert_int_equal(nx_fs_open_beneath(&fd, ws, "dirlink/b.txt", O_RDONLY, &e), NX_EUNSAFE);
	assert_int_equal(nx_fs_open_beneath(&fd, ws, "../outside.txt", O_RDONLY, &e), NX_EUNSAFE);
	assert_int_equal(nx_fs_open_beneath(&fd, ws, "sub/../../outside.txt", O_RDONLY, &e), NX_EUNSAFE);
	assert_int_equal(nx_fs_open_beneath(&fd, ws, "/etc/passwd", O_RDONLY, &e), NX_EUNSAFE);
	assert_int_equal(nx_fs_open_beneath(&fd, ws, "", O_RDONLY, &e), NX_EUNSAFE);
	assert_int_equal(nx_fs_open_beneath(&fd, ws, "missing", O_RDONLY, &e), NX_EIO);
	close(ws);
}

static void beneath_openat2(void **state)
{
	check_beneath(*state);
}

static void beneath_fallback(void **state)
{
	nx_fs_test_force_fallback(true);
	check_beneath(*state);
}

static void regular_refuses_fifo_and_caps_size(void **state)
{
	struct fx *f = *state;
	struct stat st;
	nx_error e;
	char *buf = NULL;
	size_t len = 0;
	int ws = wsfd(f), fd = -1;

	/* O_NONBLOCK: opening a fifo with no writer must not hang. */
	assert_int_equal(nx_fs_open_regular(&fd, &st, ws, "fifo", 100, &e), NX_EUNSAFE);
	assert_non_null(strstr(e.message, "fifo"));
	assert_int_equal(nx_fs_open_regular(&fd, &st, ws, "sub", 100, &e), NX_EUNSAFE);
	assert_non_null(strstr(e.message, "directory"));
	assert_int_equal(nx_fs_open_regular(&fd, &st, ws, "a.txt", 4, &e), NX_ELIMIT);
	assert_int_equal(nx_fs_open_regular(&fd, &st, ws, "a.txt", 5, &e), 0);
	assert_int_equal(st.st_size, 5);
	assert_int_equal(fcntl(fd, F_GETFL) & O_NONBLOCK, 0);
	close(fd);
	assert_int_equal(nx_fs_read_all(&buf, &len, ws, "sub/b.txt", 100, &e), 0);
	assert_int_equal(len, 3);
	assert_string_equal(buf, "bee");
	free(buf);
	assert_int_equal(nx_fs_read_all(&buf, &len, ws, "escape", 100, &e), NX_EUNSAFE);
	close(ws);
}

/* The build clears every xattr of a staged file but the host's SELinux
 * label; verify lists the others and judges the label's shape. */
static void xattrs_keep_only_a_label_shaped_selinux_label(void **state)
{
	struct fx *f = *state;
	static const char label[] = "system_u:object_r:usr_t:s0";
	char *names = NULL, *got = NULL, buf[64];
	nx_error e;
	int ws = wsfd(f), fd = openat(ws, "a.txt", O_RDONLY);

	assert_true(fd >= 0);
	if (fsetxattr(fd, "user.x", "data", 4, 0) || fsetxattr(fd, NX_FS_SELINUX_XATTR, label,
							      sizeof(label), 0)) {
		close(fd);
		close(ws);
		skip();   /* a filesystem without user or security xattrs */
	}
	assert_int_equal(nx_fs_xattrs(&names, fd, "a.txt", &e), 0);
	assert_string_equal(names, "user.x");   /* the label is not listed */
	free(names);
	assert_int_equal(nx_fs_selinux_label(&got, fd, "a.txt", &e), 0);
	assert_string_equal(got, label);
	free(got);

	assert_int_equal(nx_fs_clear_xattrs(fd, "a.txt", &e), 0);
	assert_int_equal(nx_fs_xattrs(&names, fd, "a.txt", &e), 0);
	assert_null(names);
	assert_true(fgetxattr(fd, NX_FS_SELINUX_XATTR, buf, sizeof(buf)) > 0);

	/* data in the label's place is not a label */
	assert_int_equal(fsetxattr(fd, NX_FS_SELINUX_XATTR, "aGVsbG8gd29ybGQ=", 16, 0), 0);
	assert_int_equal(nx_fs_selinux_label(&got, fd, "a.txt", &e), NX_EUNSAFE);
	assert_null(got);
	close(fd);
	close(ws);
}

/* nx_fs_read_fd reads an fd the caller opened (verify's trusted list): from
 * its offset, within the cap, which is checked before reading. */
static void read_fd_from_offset_and_caps_size(void **state)
{
	struct fx *f = *state;
	nx_error e;
	char *buf = NULL;
	size_t len = 0;
	int fd = openat(f->fd, "ws/a.txt", O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(nx_fs_read_fd(&buf, &len, fd, "a.txt", 4, &e), NX_ELIMIT);
	assert_null(buf);
	assert_int_equal(lseek(fd, 2, SEEK_SET), 2);
	assert_int_equal(nx_fs_read_fd(&buf, &len, fd, "a.txt", 5, &e), 0);
	assert_int_equal(len, 3);
	assert_string_equal(buf, "llo");
	free(buf);
	close(fd);
}

static void walk_lists_without_following(void **state)
{
	static const char *want[] = { ".hidden", "a.txt", "dirlink", "escape", "fifo",
				      "inside-link", "sub", "sub/b.txt" };
	struct fx *f = *state;
	struct nx_fs_entry *v = NULL;
	size_t n = 0, i;
	nx_error e;
	int ws = wsfd(f);

	assert_int_equal(nx_fs_walk(&v, &n, ws, 100, &e), 0);
	assert_int_equal(n, sizeof(want) / sizeof(want[0]));
	for (i = 0; i < n; i++)
		assert_string_equal(v[i].path, want[i]);
	assert_true(S_ISLNK(v[2].mode));
	assert_true(S_ISFIFO(v[4].mode));
	assert_true(S_ISDIR(v[6].mode));
	assert_int_equal(v[7].size, 3);
	nx_fs_entries_free(v, n);
	assert_int_equal(nx_fs_walk(&v, &n, ws, 3, &e), NX_ELIMIT);
	close(ws);
}

static void walk_depth_limit(void **state)
{
	struct fx *f = *state;
	struct nx_fs_entry *v = NULL;
	char path[1024] = "deep";
	size_t n = 0;
	nx_error e;
	int i, d;

	for (i = 0; i <= NX_FS_DEPTH_MAX + 1; i++) {
		assert_int_equal(mkdirat(f->fd, path, 0755), 0);
		strcat(path, "/d");
	}
	d = openat(f->fd, "deep", O_RDONLY | O_DIRECTORY);
	assert_int_equal(nx_fs_walk(&v, &n, d, 1000, &e), NX_ELIMIT);
	close(d);
}

static bool exists(int dirfd, const char *p)
{
	struct stat st;

	return fstatat(dirfd, p, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static int count_stages(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;

	while ((de = readdir(d)))
		if (strstr(de->d_name, ".nexus-stage."))
			n++;
	closedir(d);
	return n;
}

static void stage_publish_modes_and_noreplace(void **state)
{
	struct fx *f = *state;
	char final[128], stage_path[256];
	nx_stage *s = NULL;
	struct stat st;
	nx_error e;
	int fd;

	snprintf(final, sizeof(final), "%s/out", f->root);
	assert_int_equal(nx_stage_create(&s, final, false, &e), 0);
	strcpy(stage_path, nx_stage_path(s));
	assert_true(strstr(stage_path, "/.out.nexus-stage.") != NULL);
	assert_int_equal(stat(stage_path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(nx_stage_create_file(&fd, s, "bin/tool", true, &e), 0);
	close(fd);
	assert_int_equal(nx_stage_create_file(&fd, s, "model/tok/v.txt", false, &e), 0);
	assert_int_equal(write(fd, "x", 1), 1);
	close(fd);
	assert_int_equal(nx_stage_create_file(&fd, s, "model/tok/v.txt", false, &e), NX_EIO);
	assert_false(exists(f->fd, "out"));
	assert_int_equal(nx_stage_publish(s, &e), 0);
	nx_stage_free(s);
	assert_int_equal(stat(stage_path, &st), -1);
	assert_int_equal(fstatat(f->fd, "out/bin/tool", &st, 0), 0);
	assert_int_equal(st.st_mode & 07777, 0555);
	assert_int_equal(fstatat(f->fd, "out/model/tok/v.txt", &st, 0), 0);
	assert_int_equal(st.st_mode & 07777, 0444);
	assert_int_equal(fstatat(f->fd, "out/model", &st, 0), 0);
	assert_int_equal(st.st_mode & 07777, 0555);
	assert_int_equal(fstatat(f->fd, "out", &st, 0), 0);
	assert_int_equal(st.st_mode & 07777, 0555);

	/* Exists, no force: refused up front. */
	s = NULL;
	assert_int_equal(nx_stage_create(&s, final, false, &e), NX_EEXIST);
	assert_null(s);

	/* Appears between create and publish: NOREPLACE refuses, old tree kept. */
	snprintf(final, sizeof(final), "%s/race", f->root);
	assert_int_equal(nx_stage_create(&s, final, false, &e), 0);
	assert_int_equal(mkdirat(f->fd, "race", 0755), 0);
	put(f->fd, "race/keep", "k");
	assert_int_equal(nx_stage_publish(s, &e), NX_EEXIST);
	nx_stage_free(s);
	assert_true(exists(f->fd, "race/keep"));
	assert_int_equal(count_stages(f->root), 0);

	/* Force: exchanged, old tree removed. */
	snprintf(final, sizeof(final), "%s/out", f->root);
	assert_int_equal(nx_stage_create(&s, final, true, &e), 0);
	assert_int_equal(nx_stage_create_file(&fd, s, "new", false, &e), 0);
	close(fd);
	assert_int_equal(nx_stage_publish(s, &e), 0);
	nx_stage_free(s);
	assert_true(exists(f->fd, "out/new"));
	assert_false(exists(f->fd, "out/bin"));
	assert_int_equal(count_stages(f->root), 0);
}

static void stage_free_removes(void **state)
{
	struct fx *f = *state;
	char final[128];
	nx_stage *s = NULL;
	nx_error e;
	int fd;

	snprintf(final, sizeof(final), "%s/gone", f->root);
	assert_int_equal(nx_stage_create(&s, final, false, &e), 0);
	assert_int_equal(nx_stage_create_file(&fd, s, "a/b/c", false, &e), 0);
	close(fd);
	assert_int_equal(count_stages(f->root), 1);
	assert_int_equal(nx_stage_remove_signal_safe(s), 0);
	assert_int_equal(count_stages(f->root), 0);
	nx_stage_free(s);
	nx_stage_free(NULL);
	assert_false(exists(f->fd, "gone"));
}

static void stale_stage_swept(void **state)
{
	struct fx *f = *state;
	char final[512], dead[128], alive[128];
	nx_stage *s = NULL;
	nx_error e;
	pid_t pid;

	/* A pid that surely is dead: a child we reaped. */
	pid = fork();
	if (pid == 0)
		_exit(0);
	waitpid(pid, NULL, 0);
	snprintf(dead, sizeof(dead), ".b.nexus-stage.%ld.00", (long)pid);
	snprintf(alive, sizeof(alive), ".b.nexus-stage.%ld.00", (long)getppid());
	assert_int_equal(mkdirat(f->fd, dead, 0755), 0);
	assert_int_equal(mkdirat(f->fd, alive, 0755), 0);
	snprintf(final, sizeof(final), "%s/%s/x", f->root, dead);
	assert_int_equal(mkdirat(f->fd, final + strlen(f->root) + 1, 0555), 0);
	/* A different bundle's stale stage is not ours to sweep. */
	snprintf(final, sizeof(final), ".other.nexus-stage.%ld.00", (long)pid);
	assert_int_equal(mkdirat(f->fd, final, 0755), 0);

	snprintf(final, sizeof(final), "%s/b", f->root);
	assert_int_equal(nx_stage_create(&s, final, false, &e), 0);
	assert_false(exists(f->fd, dead));
	assert_true(exists(f->fd, alive));
	snprintf(final, sizeof(final), ".other.nexus-stage.%ld.00", (long)pid);
	assert_true(exists(f->fd, final));
	nx_stage_free(s);
}

/* nx_write_all: every byte through a pipe; -1 with errno from /dev/full. */
static void write_all_whole_or_errno(void **state)
{
	char big[200000], back[sizeof(big)];
	int p[2], fd, status;
	size_t got = 0;
	pid_t pid;

	(void)state;
	memset(big, 'x', sizeof(big));
	assert_int_equal(pipe(p), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {   /* the reader: the pipe holds less than big */
		close(p[1]);
		while (got < sizeof(back)) {
			ssize_t n = read(p[0], back + got, sizeof(back) - got);

			if (n <= 0)
				_exit(1);
			got += (size_t)n;
		}
		_exit(memcmp(big, back, sizeof(big)) != 0);
	}
	close(p[0]);
	assert_int_equal(nx_write_all(p[1], big, sizeof(big)), 0);
	close(p[1]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	fd = open("/dev/full", O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		errno = 0;
		assert_int_equal(nx_write_all(fd, big, 10), -1);
		assert_int_equal(errno, ENOSPC);
		close(fd);
	}
}

/* nx_pread_full: the range at an offset, short only at the end of the
 * file, -1 with errno on a bad fd. */
static void pread_full_range_or_eof(void **state)
{
	char path[] = "/tmp/nx-pread-XXXXXX", buf[70000], big[70000];
	int fd = mkstemp(path);
	size_t i;

	(void)state;
	assert_true(fd >= 0);
	unlink(path);
	for (i = 0; i < sizeof(big); i++)
		big[i] = (char)(i * 7);
	assert_int_equal(nx_write_all(fd, big, sizeof(big)), 0);
	assert_int_equal(nx_pread_full(fd, buf, 1000, 5), 1000);
	assert_memory_equal(buf, big + 5, 1000);
	assert_int_equal(nx_pread_full(fd, buf, sizeof(buf), 100), sizeof(big) - 100);
	assert_memory_equal(buf, big + 100, sizeof(big) - 100);
	assert_int_equal(nx_pread_full(fd, buf, 10, sizeof(big)), 0);
	close(fd);
	errno = 0;
	assert_int_equal(nx_pread_full(fd, buf, 10, 0), -1);
	assert_int_equal(errno, EBADF);
}

static void stage_bad_parent(void **state)
{
	nx_stage *s = NULL;
	nx_error e;

	assert_int_equal(nx_stage_create(&s, "/nonexistent-nx/dir/out", false, &e), NX_EIO);
	assert_int_equal(nx_stage_create(&s, "..", false, &e), NX_EUSAGE);
	assert_null(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(beneath_openat2, setup, teardown),
		cmocka_unit_test_setup_teardown(beneath_fallback, setup, teardown),
		cmocka_unit_test_setup_teardown(regular_refuses_fifo_and_caps_size, setup, teardown),
		cmocka_unit_test_setup_teardown(read_fd_from_offset_and_caps_size, setup, teardown),
		cmocka_unit_test_setup_teardown(xattrs_keep_only_a_label_shaped_selinux_label, setup,
						teardown),
		cmocka_unit_test_setup_teardown(walk_lists_without_following, setup, teardown),
		cmocka_unit_test_setup_teardown(walk_depth_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(stage_publish_modes_and_noreplace, setup, teardown),
		cmocka_unit_test_setup_teardown(stage_free_removes, setup, teardown),
		cmocka_unit_test_setup_teardown(stale_stage_swept, setup, teardown),
		cmocka_unit_test_setup_teardown(stage_bad_parent, setup, teardown),
		cmocka_unit_test(write_all_whole_or_errno),
		cmocka_unit_test(pread_full_range_or_eof),
	};
	return cmocka_run_group_tests_name("fs", tests, NULL, NULL);
}

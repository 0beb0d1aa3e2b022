/*
 * serve.c - `nexus_cli serve`: bind the listening socket (127.0.0.1 by
 * default), start libmicrohttpd on it, then load the bundle (integrity
 * check, session, one warm-up inference) while /health answers 503; then
 * answer until SIGTERM or SIGINT, which stop accepting, drain what is in
 * flight and exit 0.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "serve.h"

static int listen_on(const char *addr, long port, long *bound, nx_error *err)
{
	struct addrinfo hints = { .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV,
				  .ai_socktype = SOCK_STREAM }, *ai = NULL;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char service[16];
	int fd = -1, one = 1, rc;

	snprintf(service, sizeof(service), "%ld", port);
	if ((rc = getaddrinfo(addr, service, &hints, &ai)))
		return nx_error_set(err, NX_EUSAGE, NULL, 0, -1, "--listen %s: %s (give a numeric "
				    "IPv4 or IPv6 address)", addr, gai_strerror(rc));
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) || listen(fd, 512) ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl)) {
		rc = nx_error_errno(err, NX_EIO, errno, NULL, "cannot listen on %s port %ld%s", addr,
				    port, errno == EADDRINUSE ? " (in use; --port 0 picks a free one)" : "");
		if (fd >= 0)
			close(fd);
		freeaddrinfo(ai);
		return rc;
	}
	freeaddrinfo(ai);
	*bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
						: ((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}

/*
 * A unix socket at `path`.  A socket file already there is taken over only
 * when nothing answers on it (a server that died without removing it);
 * anything else there is an error, never removed.  Who may connect is what
 * the file's mode (umask) and its directory allow.
 */
static int listen_unix(const char *path, nx_error *err)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd, rc, probe;

	if (strlen(path) >= sizeof(sa.sun_path))
		return nx_error_set(err, NX_EUSAGE, path, 0, -1,
				    "--unix %s: longer than a unix socket path may be (%zu bytes)",
				    path, sizeof(sa.sun_path) - 1);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if (!lstat(path, &st)) {
		if (!S_ISSOCK(st.st_mode))
			return nx_error_set(err, NX_EUSAGE, path, 0, -1, "--unix %s: a file that is "
					    "not a socket is there; give another path", path);
		probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		rc = probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) && errno == ECONNREFUSED;
		if (probe >= 0)
			close(probe);
		if (!rc)
			return nx_error_set(err, NX_EIO, path, 0, -1, "--unix %s: another server "
					    "answers there", path);
		unlink(path);   /* a stale socket: nothing listens */
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 512)) {
		rc = nx_error_errno(err, NX_EIO, errno, path, "cannot listen on unix socket %s", path);
		if (fd >= 0)
			close(fd);
		return rc;
	}
	return fd;
}

/* A listening socket inherited as descriptor fd (from `nexus serve`, which
 * bound it outside the sandbox); its port in *bound (0 for a unix socket). */
static int inherited(long fd, long *bound, nx_error *err)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int on = 0;
	socklen_t ol = sizeof(on);

	if (getsockopt((int)fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &ol) || !on ||
	    getsockname((int)fd, (struct sockaddr *)&ss, &sl))
		return nx_error_set(err, NX_EUSAGE, NULL, 0, -1,
				    "--listen-fd %ld: not a listening socket", fd);
	fcntl((int)fd, F_SETFD, FD_CLOEXEC);
	*bound = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
	       : ss.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port) : 0;
	return (int)fd;
}

/* --stop-on-eof: read standard input to its end, then stop the server as
 * SIGTERM would (the parent of a sandboxed server cannot signal it). */
static void *wait_eof(void *arg)
{
	char buf[256];
	ssize_t n;

	(void)arg;
	do
		n = read(0, buf, sizeof(buf));
	while (n > 0 || (n < 0 && errno == EINTR));
	kill(getpid(), SIGTERM);
	return NULL;
}

/* The bound port, one line, written to a temporary and renamed into place
 * so that a reader never sees half of it. */
static int write_ready(const char *path, long port, const char *unix_path, nx_error *err)
{
	char tmp[4096];
	FILE *f;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
		return nx_error_set(err, NX_EUSAGE, path, 0, -1, "--ready-file: path too long");
	if (!(f = fopen(tmp, "we")))
		return nx_error_errno(err, NX_EIO, errno, path, "cannot write %s", tmp);
	if (unix_path)
		fprintf(f, "%s\n", unix_path);
	else
		fprintf(f, "%ld\n", port);
	if (fclose(f) || rename(tmp, path))
		return nx_error_errno(err, NX_EIO, errno, path, "cannot write %s", path);
	return 0;
}

/* One inference before /health says ready: the first Run allocates and
 * picks kernels, which should not be a client's latency.  One short word
 * (a token or two with the special tokens), so that a model with few
 * positions takes it. */
static int warm_up(struct rt_bundle *b, struct rt_session *s, nx_error *err)
{
	static const char text[] = "a";
	int64_t *ids = calloc(b->set.max_len, sizeof(*ids));
	json_t *res = NULL;
	size_t n = 0;
	int rc;

	if (!ids)
		return nx_error_set(err, NX_ENOMEM, NULL, 0, -1, "out of memory");
	rc = nx_tokenizer_encode(b->tok, text, sizeof(text) - 1, b->set.max_len, ids, &n, err);
	if (!rc)
		rc = rt_session_run(s, b, &ids, NULL, NULL, &n, 1, &res, err);
	json_decref(res);
	free(ids);
	return rc;
}

static void drain(struct sv_server *sv, struct MHD_Daemon *d)
{
	time_t until = time(NULL) + SV_DRAIN_S;
	MHD_socket fd;
	size_t left;

	pthread_mutex_lock(&sv->mu);
	sv->draining = true;
	pthread_mutex_unlock(&sv->mu);
	fd = sv->mhd.quiesce_daemon(d);
	if (fd != MHD_INVALID_SOCKET)
		close(fd);
	for (;;) {
		pthread_mutex_lock(&sv->mu);
		left = sv->inflight;
		pthread_mutex_unlock(&sv->mu);
		if (!left || time(NULL) >= until)
			break;
		nanosleep(&(struct timespec){ 0, 10000000L }, NULL);
	}
	if (left)
		fprintf(stderr, "nexus_cli serve: %zu requests still open after %d s; closing them\n",
			left, SV_DRAIN_S);
}

int rt_cmd_serve(const struct rt_verb *v, int argc, char **argv)
{
	struct sv_server sv;
	struct MHD_Daemon *d = NULL;
	struct rt_session *s = NULL;
	struct rt_bundle b;
	struct rt_args a;
	sigset_t sigs;
	nx_error err;
	long port = 0;
	int rc, fd = -1, sig;
	bool loaded = false, made_unix = false;
	struct stat sock, now;
	pthread_t eof_thread;

	if ((rc = rt_parse(&a, v, argc, argv)))
		return free(a.texts), rc < 0 ? 0 : rc;
	free(a.texts);
	memset(&sv, 0, sizeof(sv));
	pthread_mutex_init(&sv.mu, NULL);
	sv.max_body = (size_t)a.max_body;
	sv.max_inputs = a.queue < SV_INPUTS_MAX ? (size_t)a.queue : SV_INPUTS_MAX;
	nx_error_clear(&err);
	if ((rc = sv_mhd_open(&sv.mhd, &err)) || (rc = sv_metrics_new(&sv.metrics)))
		goto fail;
	/* every thread started from here on inherits the blocked signals;
	 * this one takes them with sigwait */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	if ((a.unix_path || a.listen_fd >= 0) && (a.listen || a.port != 8080 ||
						   (a.unix_path && a.listen_fd >= 0))) {
		rc = rt_usage(v, "give one of --unix, --listen-fd or --listen/--port");
		goto out;
	}
	fd = a.listen_fd >= 0 ? inherited(a.listen_fd, &port, &err)
	   : a.unix_path ? listen_unix(a.unix_path, &err)
	   : listen_on(a.listen ? a.listen : "127.0.0.1", a.port, &port, &err);
	if (fd < 0) {
		rc = fd;
		goto fail;
	}
	if (a.unix_path && !stat(a.unix_path, &sock))
		made_unix = true;       /* ours to remove at exit */
	d = sv.mhd.start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
				MHD_USE_POLL | MHD_USE_ITC, 0, NULL, NULL, sv_http_handle, &sv,
				MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
				MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)a.timeout,
				MHD_OPTION_CONNECTION_LIMIT, (unsigned int)a.max_conn,
				MHD_OPTION_NOTIFY_COMPLETED, sv_http_completed, &sv,
				MHD_OPTION_END);
	if (!d) {
		rc = nx_error_set(&err, NX_EIO, NULL, 0, -1, "libmicrohttpd did not start");
		goto fail;
	}
	if (a.unix_path)
		fprintf(stderr, "nexus_cli serve: listening on unix socket %s\n", a.unix_path);
	else if (a.listen_fd >= 0)
		fprintf(stderr, "nexus_cli serve: answering on descriptor %ld\n", a.listen_fd);
	else
		fprintf(stderr, "nexus_cli serve: listening on %s port %ld\n",
			a.listen ? a.listen : "127.0.0.1", port);
	if (a.ready_file && (rc = write_ready(a.ready_file, port, a.unix_path, &err)))
		goto fail;
	if ((rc = rt_start(&b, &s, v->name, &a, true)))
		goto out;      /* rt_start printed why */
	loaded = true;
	if (a.max_batch)
		b.set.batch_size = (size_t)a.max_batch;
	sv.b = &b;
	sv.json_flags = rt_session_json_flags(s);
	if ((rc = warm_up(&b, s, &err)) ||
	    (rc = sv_engine_start(&sv.engine, &b, s, sv.metrics, (size_t)a.queue,
				  b.set.batch_size, a.max_wait, &err)))
		goto fail;
	pthread_mutex_lock(&sv.mu);
	sv.ready = true;
	pthread_mutex_unlock(&sv.mu);
	fprintf(stderr, "nexus_cli serve: ready (%s)\n", b.manifest->bundle_id);
	if (a.stop_on_eof && (rc = pthread_create(&eof_thread, NULL, wait_eof, NULL))) {
		rc = nx_error_errno(&err, NX_EIO, rc, NULL, "cannot start the stdin thread");
		goto fail;
	}
	do
		sig = sigwaitinfo(&sigs, NULL);
	while (sig < 0 && errno == EINTR);
	fprintf(stderr, "nexus_cli serve: %s: draining\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
	drain(&sv, d);
	rc = 0;
	goto out;
fail:
	rc = rt_fail(v->name, &err);
out:
	if (d)
		sv.mhd.stop_daemon(d);
	else if (fd >= 0)
		close(fd);
	sv_engine_stop(sv.engine);
	if (loaded) {
		rt_session_free(s);
		rt_bundle_release(&b);
	}
	sv_metrics_free(sv.metrics);
	sv_mhd_close(&sv.mhd);
	pthread_mutex_destroy(&sv.mu);
	if (a.ready_file && rc)
		unlink(a.ready_file);
	/* the socket file, if it is still the one bound here */
	if (made_unix && !stat(a.unix_path, &now) && now.st_dev == sock.st_dev &&
	    now.st_ino == sock.st_ino)
		unlink(a.unix_path);
	return rc;
}

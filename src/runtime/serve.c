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
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "nexus/net.h"
#include "serve.h"

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
	char where[32];

	if ((rc = rt_parse(&a, v, argc, argv)))
		return free(a.texts), rc < 0 ? 0 : rc;
	free(a.texts);
	memset(&sv, 0, sizeof(sv));
	nx_error_clear(&err);
	if ((rc = pthread_mutex_init(&sv.mu, NULL))) {
		nx_error_errno(&err, NX_EIO, rc, NULL, "cannot make the server's lock");
		return rt_fail(v->name, &err);
	}
	sv.max_body = (size_t)a.max_body;
	sv.max_inputs = a.queue < SV_INPUTS_MAX ? (size_t)a.queue : SV_INPUTS_MAX;
	if ((rc = sv_mhd_open(&sv.mhd, &err)) || (rc = sv_metrics_new(&sv.metrics, &err)))
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
	   : a.unix_path ? nx_listen_unix(a.unix_path, &err)
	   : nx_listen_tcp(a.listen ? a.listen : "127.0.0.1", a.port, &port, &err);
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
	snprintf(where, sizeof(where), "%ld", port);
	if (a.ready_file && (rc = nx_ready_file_write(a.ready_file, a.unix_path ? a.unix_path : where,
						      &err)))
		goto fail;
	if ((rc = rt_start(&b, &s, v->name, &a, true)))
		goto out;      /* rt_start printed why */
	loaded = true;
	if (a.max_batch)
		b.set.batch_size = (size_t)a.max_batch;
	sv.b = &b;
	sv.json_flags = rt_session_json_flags(s);
	if (b.set.task == RT_TASK_GENERATION)
		rc = sv_gen_start(&sv.gen, &b, s, (size_t)a.queue, &err);
	else if (!(rc = warm_up(&b, s, &err)))
		rc = sv_engine_start(&sv.engine, &b, s, sv.metrics, (size_t)a.queue,
				     b.set.batch_size, a.max_wait, &err);
	if (rc)
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
	sv_gen_stop(sv.gen);
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

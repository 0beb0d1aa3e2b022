/* net.c - listening sockets (nexus/net.h). */
#include "nexus/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int nx_listen_tcp(const char *addr, long port, long *bound, nx_error *err)
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

int nx_listen_unix(const char *path, nx_error *err)
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

int nx_ready_file_write(const char *path, const char *line, nx_error *err)
{
	char tmp[4096];
	FILE *f;

	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
		return nx_error_set(err, NX_EUSAGE, path, 0, -1, "--ready-file: path too long");
	if (!(f = fopen(tmp, "we")))
		return nx_error_errno(err, NX_EIO, errno, path, "cannot write %s", tmp);
	fprintf(f, "%s\n", line);
	if (fclose(f) || rename(tmp, path))
		return nx_error_errno(err, NX_EIO, errno, path, "cannot write %s", path);
	return 0;
}

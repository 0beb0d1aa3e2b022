/*
 * nexus/net.h - listening sockets for a server (`nexus_cli serve`, and
 * `nexus serve`, which binds them outside the sandbox and passes them in).
 * Errors follow nexus/error.h: NX_EUSAGE for an address or path that cannot
 * be used (the message names the option, --listen or --unix), NX_EIO for
 * the system saying no.
 */
#ifndef NEXUS_NET_H
#define NEXUS_NET_H

#include "nexus/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A TCP socket listening on the numeric address addr, port (0: a free
 * one); its fd (close-on-exec) and the bound port in *bound, or < 0. */
int nx_listen_tcp(const char *addr, long port, long *bound, nx_error *err);

/*
 * A unix socket listening at path; its fd (close-on-exec) or < 0.  A
 * socket file already there is taken over only when nothing answers on it
 * (a server that died without removing it); anything else there is an
 * error and is never removed.  Who may connect is what the file's mode
 * (umask) and its directory allow.
 */
int nx_listen_unix(const char *path, nx_error *err);

/* Write `line` and a newline to path through path.tmp renamed into place,
 * so that a reader (a test, a supervisor) never sees half of it: the
 * server's --ready-file, holding its port or socket path. */
int nx_ready_file_write(const char *path, const char *line, nx_error *err);

#ifdef __cplusplus
}
#endif
#endif

/*
 * sd.h - systemd's socket activation and readiness notification, as
 * keywayd speaks them without libsystemd (sd.c).
 */
#ifndef KEYWAYD_SD_H
#define KEYWAYD_SD_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Take in what the service manager handed this process: the sockets of
 * $LISTEN_PID, $LISTEN_FDS and $LISTEN_FDNAMES (sd_listen_fds(3)), and the
 * address of $NOTIFY_SOCKET (sd_notify(3)).  The variables are unset, so
 * that nothing started later takes them for its own.  Call once, before
 * any thread starts.  False, logged, when a variable is malformed.
 */
bool kwd_sd_init(void);

/*
 * The listening socket systemd passed under name (FileDescriptorName=,
 * or the socket unit's own name, "name.socket"); a single socket passed
 * without a name counts as "keyway".  It is checked to be a listening
 * Unix stream socket; its path (or "@name" for an abstract one) goes
 * into path.  The descriptor, -1 when systemd passed none of that name,
 * -2 after logging why it cannot be used.
 */
int kwd_sd_socket(const char *name, char *path, size_t pathlen);

/*
 * The listening TCP socket systemd passed under name, checked to be a
 * listening stream socket bound to want (daemon.tcp's address and port):
 * so that the port is held from boot on, and no other local user can bind
 * it first and read the token clients send.  The descriptor, -1 when
 * systemd passed none of that name, -2 after logging why it cannot be
 * used.
 */
struct sockaddr_storage;
int kwd_sd_tcp_socket(const char *name, const struct sockaddr_storage *want);

/* Whether systemd passed a socket under name. */
bool kwd_sd_has(const char *name);

/* How many sockets systemd passed this process (0 without activation). */
int kwd_sd_passed(void);

/*
 * Tell the service manager state ("READY=1", "RELOADING=1",
 * "STOPPING=1", with "STATUS=..." lines) when $NOTIFY_SOCKET named one;
 * nothing otherwise.  A failure is logged once.
 */
void kwd_sd_notify(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* "RELOADING=1", with the time that Type=notify-reload wants. */
void kwd_sd_reloading(void);

#endif /* KEYWAYD_SD_H */

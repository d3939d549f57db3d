/*
 * audit_sink.h - where the audit trail's lines go: a file, or the syslog
 * daemon's socket (audit_sink.c).  Only audit.c and audit_sink.c include
 * it.
 */
#ifndef KEYWAY_AUDIT_SINK_H
#define KEYWAY_AUDIT_SINK_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include <keyway/keyway.h>

#include "audit.h"

struct kwi_diag;

struct kwi_audit_sink {
	struct kwi_audit_conf conf;
	int fd;              /* the file, or -1 */
	int sock;            /* connected to the daemon, or -1 */
	bool stream;         /* sock is SOCK_STREAM: messages end in NUL */
	/* Held around each write, so that a short one can be taken back. */
	pthread_mutex_t lock;
	bool torn;           /* the file may end in part of a line */
};

/* Set s up as c says, opening nothing.  False when out of resources;
 * otherwise kwi_audit_sink_close() it. */
bool kwi_audit_sink_init(struct kwi_audit_sink *s,
			 const struct kwi_audit_conf *c);
/* Open the file, checking it as every file keyway writes is checked
 * (created unless checking); the syslog socket is connected at the first
 * line.  KW_OK, or a failure said to d. */
kw_status kwi_audit_sink_open(struct kwi_audit_sink *s, bool checking,
			      struct kwi_diag *d);
void kwi_audit_sink_close(struct kwi_audit_sink *s);
/* Write one line (len bytes, ending in '\n'), whole or not at all.
 * KW_OK, or KW_ERR_IO with kw_last_error() set. */
kw_status kwi_audit_sink_write(struct kwi_audit_sink *s, const char *line,
			       size_t len);

#endif /* KEYWAY_AUDIT_SINK_H */

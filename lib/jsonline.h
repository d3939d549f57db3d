/*
 * jsonline.h - one JSON object written as one line, straight into a buffer
 * on the stack (jsonline.c).  Never installed.
 *
 * Usage: kwi_line_init(), kwi_line_open(l, NULL), members, kwi_line_end(),
 * then write l->buf (l->len bytes, '\n' included) and kwi_line_release().
 * Running out of memory midway is remembered and told by kwi_line_end().
 */
#ifndef KEYWAY_JSONLINE_H
#define KEYWAY_JSONLINE_H

#include <stdbool.h>
#include <stddef.h>

/* Room for any line of ordinary names; longer ones move to the heap. */
#define KWI_LINE_STACK 1024

struct kwi_line {
	char *buf;      /* stack, or heap once it outgrew it */
	size_t len;
	size_t cap;
	bool comma;     /* the next member needs a ',' before it */
	bool nomem;
	char stack[KWI_LINE_STACK];
};

void kwi_line_init(struct kwi_line *l);
/* Free what the line took from the heap; l->buf is then gone. */
void kwi_line_release(struct kwi_line *l);
/* Open an object: the outermost (name NULL) or a member "name":{. */
void kwi_line_open(struct kwi_line *l, const char *name);
void kwi_line_close(struct kwi_line *l);
/*
 * "name":"value", or "name":null for a NULL value when null_ok.  A member
 * that cannot be a JSON string (NULL where null is not allowed, or not
 * UTF-8) is left out, as it always was when jansson built the line.
 */
void kwi_line_member(struct kwi_line *l, const char *name, const char *value,
		     bool null_ok);
/* "name":value, a number. */
void kwi_line_int(struct kwi_line *l, const char *name, long long value);
/* "time":"2024-05-01T10:00:00.123Z", now, in UTC. */
void kwi_line_time(struct kwi_line *l);
/* Close the outermost object and end the line with '\n'.  False when
 * memory ran out on the way: the line is then not whole. */
bool kwi_line_end(struct kwi_line *l);

#endif /* KEYWAY_JSONLINE_H */

/*
 * config_text.c - the text of keyway.conf: its files read and checked,
 * @include expanded, parsed by libconfig, and every setting and every
 * message put back at the file and line it was written at.
 *
 * Over 800 lines: putting the files together and explaining libconfig's
 * syntax errors both follow its scanner line by line, and are read
 * together.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libconfig.h>

#include "conf.h"
#include "config_int.h"
#include "context.h"
#include "error.h"
#include "fsutil.h"

/*
 * A setting's file: NULL for the main file, else the path of the included
 * file, which the context owns.
 */
static const char *resolve_source(struct kw_ctx *ctx, const char *f)
{
	return f != NULL ? f : ctx->path;
}

const char *kwi_source_path(struct kw_ctx *ctx, const config_setting_t *s)
{
	return resolve_source(ctx, config_setting_source_file(s));
}

/*
 * The configuration file and the files it includes: each opened once,
 * checked on the descriptor that is then read, and put together here into
 * the one text libconfig parses.  libconfig 1.5 opens an @include by name
 * itself, after the checks could be made; so every line its scanner would
 * take for an @include is replaced by the file's text first, and a map
 * from lines of the whole back to lines of each file keeps every message
 * and every setting at its own file:line.
 */

#define INCLUDE_DEPTH 10              /* as libconfig's own limit */
#define INCLUDE_MAX 256               /* files included, in all */
#define CONFIG_FILE_MAX (1024 * 1024) /* per file */
#define CONFIG_TEXT_MAX (8 * CONFIG_FILE_MAX) /* all put together */

/* Where a run of lines of the whole text comes from. */
struct seg {
	unsigned start;      /* first line of the whole text */
	const char *file;    /* NULL: the main file */
	unsigned first;      /* its line in that file */
};

struct text {
	char *buf;
	size_t len, size;
	unsigned lines;      /* lines begun so far, counting from 1 */
	struct seg *segs;
	size_t nsegs;
	enum { SCAN_CODE, SCAN_COMMENT, SCAN_STRING } state;
	struct stat open[INCLUDE_DEPTH + 1]; /* files being read, outermost
					      * first */
	int depth;
	unsigned includes;   /* @include lines read so far */
	bool too_big;        /* text_put() failed for CONFIG_TEXT_MAX */
};

static bool text_put(struct text *t, const char *s, size_t n)
{
	if (t->len + n > CONFIG_TEXT_MAX) {
		t->too_big = true;
		return false;
	}
	if (t->len + n + 1 > t->size) {
		size_t size = t->size != 0 ? t->size : 4096;
		char *grown;

		while (t->len + n + 1 > size)
			size *= 2;
		grown = realloc(t->buf, size);
		if (grown == NULL)
			return false;
		t->buf = grown;
		t->size = size;
	}
	memcpy(t->buf + t->len, s, n);
	t->len += n;
	t->buf[t->len] = '\0';
	for (size_t i = 0; i < n; i++)
		t->lines += s[i] == '\n';
	return true;
}

/* Lines of the whole text from here on come from file, line `first` on. */
static bool text_from(struct text *t, const char *file, unsigned first)
{
	struct seg *grown;

	if (t->nsegs > 0 && t->segs[t->nsegs - 1].start == t->lines)
		t->nsegs--;
	grown = realloc(t->segs, (t->nsegs + 1) * sizeof(*grown));
	if (grown == NULL)
		return false;
	t->segs = grown;
	grown[t->nsegs].start = t->lines;
	grown[t->nsegs].file = file;
	grown[t->nsegs].first = first;
	t->nsegs++;
	return true;
}

/* The file and line that line `line` of the whole text comes from. */
static const char *text_origin(const struct text *t, unsigned line,
			       unsigned *out)
{
	const struct seg *s = NULL;
	size_t lo = 0, hi = t->nsegs;

	/* The last run that starts at or before it: runs are in order. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (t->segs[mid].start <= line)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo > 0)
		s = &t->segs[lo - 1];
	if (s == NULL || line == 0) {
		*out = line;
		return NULL;
	}
	*out = s->first + (line - s->start);
	return s->file;
}

/* Read all of fd, at most CONFIG_FILE_MAX bytes. */
static kw_status read_whole(int fd, char **out, size_t *outlen)
{
	size_t len = 0, size = 4096;
	char *buf = malloc(size), *grown;
	ssize_t n;

	*out = NULL;
	if (buf == NULL)
		return KW_ERR_NOMEM;
	for (;;) {
		if (len == size) {
			if (size > CONFIG_FILE_MAX) {
				free(buf);
				return KW_ERR_CONFIG;
			}
			grown = realloc(buf, size * 2);
			if (grown == NULL) {
				free(buf);
				return KW_ERR_NOMEM;
			}
			buf = grown;
			size *= 2;
		}
		n = read(fd, buf + len, size - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			free(buf);
			return KW_ERR_IO;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (len > CONFIG_FILE_MAX) {
		free(buf);
		return KW_ERR_CONFIG;
	}
	*out = buf;
	*outlen = len;
	return KW_OK;
}

/* The context keeps the paths of included files for as long as settings
 * name them, each once: returns the path kept (path itself, or the same
 * name kept before, path then freed), or NULL when out of memory. */
static char *keep_source(struct kw_ctx *ctx, char *path)
{
	struct kwi_path *grown;

	for (size_t i = 0; i < ctx->nsources; i++) {
		if (strcmp(ctx->sources[i].value, path) == 0) {
			free(path);
			return ctx->sources[i].value;
		}
	}
	grown = realloc(ctx->sources, (ctx->nsources + 1) * sizeof(*grown));
	if (grown == NULL)
		return NULL;
	ctx->sources = grown;
	grown[ctx->nsources].name = path;
	grown[ctx->nsources].value = path;
	ctx->nsources++;
	return path;
}

/* Report that open() failed with errno e (from, line: as open_file()). */
static void open_failed(struct kwi_loader *l, const char *path,
			const char *from, unsigned line, int e)
{
	if (from == NULL)
		kwi_diag(l->d, e == ENOENT ? KW_ERR_CONFIG : KW_ERR_IO, path, 0,
			 "cannot open configuration: %s", strerror(e));
	else if (e == ELOOP)
		kwi_diag(l->d, KW_ERR_CONFIG, from, (int)line,
			 "cannot include %s: it is a symbolic link; include "
			 "the file itself",
			 path);
	else
		kwi_diag(l->d, e == ENOENT ? KW_ERR_CONFIG : KW_ERR_IO, from,
			 (int)line, "cannot include %s: %s", path,
			 strerror(e));
}

/*
 * Open one file of the configuration and check what was opened: a regular
 * file, owned by root or the caller, not writable by group or others.
 * `from`:`line` is the @include that names it; NULL for the main file.
 * Returns the descriptor, or -1 with the problem reported.
 */
static int open_file(struct kwi_loader *l, const char *path, const char *from,
		     unsigned line, struct stat *st)
{
	int flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
	const char *what = from == NULL ? "configuration"
					: "included configuration";
	char why[256];
	int fd;

	/* The caller names the main file, and a link to it is theirs to
	 * make; an included file is named in a directory nobody checks, so
	 * a link there could lead anywhere. */
	if (from != NULL)
		flags |= O_NOFOLLOW;
	fd = open(path, flags);
	if (fd < 0) {
		open_failed(l, path, from, line, errno);
		return -1;
	}
	if (fstat(fd, st) != 0) {
		kwi_diag(l->d, KW_ERR_IO, path, 0, "%s", strerror(errno));
		close(fd);
		return -1;
	}
	if (!S_ISREG(st->st_mode)) {
		if (from == NULL)
			kwi_diag(l->d, KW_ERR_CONFIG, path, 0,
				 "configuration is not a regular file");
		else
			kwi_diag(l->d, KW_ERR_CONFIG, from, (int)line,
				 "cannot include %s: it is %s, not a regular "
				 "file",
				 path,
				 S_ISDIR(st->st_mode) ? "a directory"
				 : S_ISFIFO(st->st_mode) ? "a FIFO"
							 : "a special file");
		close(fd);
		return -1;
	}
	if (!kwi_stat_trusted(st, false, why, sizeof(why))) {
		if (st->st_uid != 0 && st->st_uid != geteuid())
			kwi_diag(l->d, KW_ERR_PERM, path, 0,
				 "refusing to read the %s: it is %s (chown %u "
				 "%s)",
				 what, why, (unsigned)geteuid(), path);
		else
			kwi_diag(l->d, KW_ERR_PERM, path, 0,
				 "refusing to read the %s: it is %s (chmod "
				 "go-w %s)",
				 what, why, path);
		close(fd);
		return -1;
	}
	return fd;
}

static bool expand(struct kwi_loader *l, struct text *t, const char *file,
		   const char *buf, size_t len);

/* The path of the file that `spelled` names, included at at:line, kept by
 * the context; NULL, with the problem reported, when out of memory or
 * when it would be one file too many or too deep. */
static const char *include_path(struct kwi_loader *l, struct text *t,
				const char *at, unsigned line,
				const char *spelled)
{
	char *path = kwi_config_abs(l->ctx, spelled), *kept;

	kept = path != NULL ? keep_source(l->ctx, path) : NULL;
	if (kept == NULL) {
		free(path);
		kwi_diag(l->d, KW_ERR_NOMEM, at, (int)line, "out of memory");
		return NULL;
	}
	if (++t->includes > INCLUDE_MAX) {
		kwi_diag(l->d, KW_ERR_CONFIG, at, (int)line,
			 "cannot include %s: more than %d files are included "
			 "in all",
			 kept, INCLUDE_MAX);
		return NULL;
	}
	if (t->depth == INCLUDE_DEPTH) {
		kwi_diag(l->d, KW_ERR_CONFIG, at, (int)line,
			 "cannot include %s: files include one another more "
			 "than %d deep",
			 kept, INCLUDE_DEPTH);
		return NULL;
	}
	return kept;
}

/* Put the file that `spelled` names, included at from:line, in its
 * place. */
static bool include_file(struct kwi_loader *l, struct text *t, const char *from,
			 unsigned line, const char *spelled)
{
	const char *at = resolve_source(l->ctx, from);
	const char *path;
	char *buf = NULL;
	bool ok = false;
	struct stat st;
	size_t len = 0;
	kw_status rc;
	int fd;

	path = include_path(l, t, at, line, spelled);
	if (path == NULL)
		return false;
	fd = open_file(l, path, at, line, &st);
	if (fd < 0)
		return false;
	for (int i = 0; i <= t->depth; i++) {
		if (t->open[i].st_dev == st.st_dev &&
		    t->open[i].st_ino == st.st_ino) {
			kwi_diag(l->d, KW_ERR_CONFIG, at, (int)line,
				 "cannot include %s: it is already being "
				 "read (an @include loop)",
				 path);
			goto out;
		}
	}
	rc = read_whole(fd, &buf, &len);
	if (rc != KW_OK) {
		if (rc == KW_ERR_CONFIG)
			kwi_diag(l->d, rc, path, 0,
				 "configuration file larger than 1 MiB");
		else
			kwi_diag(l->d, rc, path, 0, "%s",
				 rc == KW_ERR_NOMEM ? "out of memory"
						    : strerror(errno));
		goto out;
	}
	t->open[++t->depth] = st;
	ok = expand(l, t, path, buf, len);
	t->depth--;
	if (ok && t->state != SCAN_CODE) {
		kwi_diag(l->d, KW_ERR_CONFIG, path, 0,
			 "the file ends inside %s",
			 t->state == SCAN_STRING ? "a string (a missing \")"
						 : "a /* comment */");
		ok = false;
	}
out:
	free(buf);
	close(fd);
	return ok;
}

/*
 * If p starts a line that libconfig's scanner reads as an include,
 * `^[ \t]*@include[ \t]+"NAME"`, set *name (malloc'd, with \\ and \"
 * unescaped) and *after past the closing quote.  False with *name NULL
 * when it does not; false with *name set to "" when the name is bad.
 */
static bool is_include(const char *p, const char *end, char **name,
		       const char **after)
{
	size_t n = 0;
	char *out;

	*name = NULL;
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	if (end - p < 9 || memcmp(p, "@include", 8) != 0 ||
	    (p[8] != ' ' && p[8] != '\t'))
		return false;
	p += 8;
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	if (p == end || *p != '"')
		return false;
	p++;
	out = malloc((size_t)(end - p) + 1);
	if (out == NULL)
		return false;
	*name = out;
	for (; p < end && *p != '"'; p++) {
		if (*p == '\\' && p + 1 < end && (p[1] == '\\' || p[1] == '"'))
			p++;
		else if (*p == '\\' || *p == '\n' || *p == '\r')
			break;
		out[n++] = *p;
	}
	if (p == end || *p != '"' || n == 0) {
		out[0] = '\0';
		return false;
	}
	out[n] = '\0';
	*after = p + 1;
	return true;
}

/* Whether only blanks and comments follow on p's line. */
static bool only_comment(const char *p, const char *end)
{
	for (;;) {
		while (p < end && (*p == ' ' || *p == '\t' || *p == '\r'))
			p++;
		if (p == end || *p == '\n' || *p == '#' ||
		    (p[0] == '/' && p + 1 < end && p[1] == '/'))
			return true;
		if (!(p[0] == '/' && p + 1 < end && p[1] == '*'))
			return false;
		/* A comment that ends on the line; one that goes on past
		 * it is read as such. */
		for (p += 2; p < end && *p != '\n' &&
			     !(p[0] == '*' && p + 1 < end && p[1] == '/');
		     p++)
			;
		if (p == end || *p == '\n')
			return true;
		p += 2;
	}
}

/* What an @include at the start of a line came to. */
enum include_step { INC_NONE, INC_DONE, INC_FAILED, INC_NOMEM };

/*
 * If the line of `file` (`at` in messages) that starts at p is an
 * @include, put the file it names in its place and set *after past the
 * name.  INC_FAILED with the problem reported; INC_NOMEM for the caller
 * to report.
 */
static enum include_step expand_include(struct kwi_loader *l, struct text *t,
					const char *file, const char *at,
					unsigned line, const char *p,
					const char *end, const char **after)
{
	char *name = NULL;
	bool ok;

	if (!is_include(p, end, &name, after)) {
		if (name == NULL)
			return INC_NONE;
		free(name);
		kwi_diag(l->d, KW_ERR_CONFIG, at, (int)line,
			 "@include: the file name must be one line, in double "
			 "quotes, with only \\\" and \\\\ escaped");
		return INC_FAILED;
	}
	if (!only_comment(*after, end)) {
		free(name);
		kwi_diag(l->d, KW_ERR_CONFIG, at, (int)line,
			 "@include: only a comment may follow the file name "
			 "on its line");
		return INC_FAILED;
	}
	ok = include_file(l, t, file, line, name);
	free(name);
	if (!ok)
		return INC_FAILED;
	/* The rest of the line goes on after the included text, as
	 * libconfig's scanner goes back to it. */
	if (t->len > 0 && t->buf[t->len - 1] != '\n' && !text_put(t, "\n", 1))
		return INC_NOMEM;
	return text_from(t, file, line) ? INC_DONE : INC_NOMEM;
}

/* How many bytes at p libconfig's scanner takes in one step from state
 * t->state, which it moves on. */
static size_t scan_step(struct text *t, const char *p, const char *end)
{
	size_t n = 1;

	switch (t->state) {
	case SCAN_CODE:
		if (p[0] == '"') {
			t->state = SCAN_STRING;
		} else if (p[0] == '/' && p + 1 < end && p[1] == '*') {
			t->state = SCAN_COMMENT;
			n = 2;
		} else if (p[0] == '#' ||
			   (p[0] == '/' && p + 1 < end && p[1] == '/')) {
			const char *nl = memchr(p, '\n',
						(size_t)(end - p));

			n = (size_t)((nl != NULL ? nl : end) - p);
		}
		break;
	case SCAN_COMMENT:
		if (p[0] == '*' && p + 1 < end && p[1] == '/') {
			t->state = SCAN_CODE;
			n = 2;
		}
		break;
	case SCAN_STRING:
		if (p[0] == '\\' && p + 1 < end &&
		    (p[1] == '"' || p[1] == '\\'))
			n = 2;
		else if (p[0] == '"')
			t->state = SCAN_CODE;
		break;
	}
	return n;
}

/*
 * Append buf, the text of `file` (NULL: the main file), replacing each
 * line libconfig would read as an @include with the file it names.  The
 * scanner's state carries on from file to file, as libconfig's does.
 */
static bool expand(struct kwi_loader *l, struct text *t, const char *file,
		   const char *buf, size_t len)
{
	const char *at = resolve_source(l->ctx, file);
	const char *p = buf, *end = buf + len, *nul;
	unsigned line = 1;
	bool bol = true;

	nul = memchr(buf, '\0', len);
	if (nul != NULL) {
		for (const char *q = buf; q < nul; q++)
			line += *q == '\n';
		kwi_diag(l->d, KW_ERR_CONFIG, at, (int)line,
			 "a NUL byte: this is not a configuration file");
		return false;
	}
	if (!text_from(t, file, 1))
		goto nomem;
	while (p < end) {
		size_t n;

		if (bol && t->state == SCAN_CODE) {
			const char *after = NULL;

			switch (expand_include(l, t, file, at, line, p, end,
					       &after)) {
			case INC_NONE:
				break;
			case INC_DONE:
				p = after;
				bol = false;
				continue;
			case INC_FAILED:
				return false;
			case INC_NOMEM:
				goto nomem;
			}
		}
		n = scan_step(t, p, end);
		if (!text_put(t, p, n))
			goto nomem;
		bol = p[n - 1] == '\n';
		line += bol;
		p += n;
	}
	return true;
nomem:
	if (t->too_big)
		kwi_diag(l->d, KW_ERR_CONFIG, at, (int)line,
			 "the configuration and the files it includes come "
			 "to more than 8 MiB");
	else
		kwi_diag(l->d, KW_ERR_NOMEM, at, (int)line, "out of memory");
	return false;
}

/* ---- what libconfig's "syntax error" was about ---- */

enum tok_kind { TOK_END, TOK_NAME, TOK_STRING, TOK_NUMBER, TOK_PUNCT,
		TOK_OTHER };

struct tok {
	const char *start;
	size_t len;
	unsigned line;       /* where it ends, as libconfig counts */
	enum tok_kind kind;
};

static bool is_name_char(char c, bool first)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '*' ||
	       (!first && ((c >= '0' && c <= '9') || c == '-' || c == '_'));
}

/* The next token of libconfig's language from *pp, roughly as its scanner
 * cuts them (close enough to point at one).  One scanner, read top to
 * bottom: it stays in one piece. */
static void next_token(const char **pp, const char *end, unsigned *line,
		       struct tok *tk)
{
	const char *p = *pp;

	tk->kind = TOK_END;
	while (p < end) {
		if (*p == '\n') {
			++*line;
			p++;
		} else if (*p == ' ' || *p == '\t' || *p == '\r' ||
			   *p == '\f') {
			p++;
		} else if (*p == '#' ||
			   (p[0] == '/' && p + 1 < end && p[1] == '/')) {
			while (p < end && *p != '\n')
				p++;
		} else if (p[0] == '/' && p + 1 < end && p[1] == '*') {
			for (p += 2; p < end && !(p[0] == '*' && p + 1 < end &&
						  p[1] == '/');
			     p++)
				*line += *p == '\n';
			p = p < end ? p + 2 : end;
		} else {
			break;
		}
	}
	tk->start = p;
	if (p == end)
		goto out;
	if (*p == '"') {
		tk->kind = TOK_STRING;
		for (p++; p < end && *p != '"'; p++) {
			if (*p == '\\' && p + 1 < end &&
			    (p[1] == '"' || p[1] == '\\'))
				p++;
			*line += *p == '\n';
		}
		p = p < end ? p + 1 : end;
	} else if (is_name_char(*p, true)) {
		tk->kind = TOK_NAME;
		while (p < end && is_name_char(*p, false))
			p++;
	} else if ((*p >= '0' && *p <= '9') ||
		   ((*p == '-' || *p == '+' || *p == '.') && p + 1 < end &&
		    ((p[1] >= '0' && p[1] <= '9') || p[1] == '.'))) {
		tk->kind = TOK_NUMBER;
		for (p++; p < end && ((*p >= '0' && *p <= '9') ||
				      (*p >= 'A' && *p <= 'Z') ||
				      (*p >= 'a' && *p <= 'z') || *p == '.' ||
				      ((*p == '-' || *p == '+') &&
				       (p[-1] == 'e' || p[-1] == 'E')));
		     p++)
			;
	} else {
		tk->kind = strchr("=:,;{}[]()", *p) != NULL ? TOK_PUNCT
							     : TOK_OTHER;
		p++;
	}
out:
	tk->len = (size_t)(p - tk->start);
	tk->line = *line;
	*pp = p;
}

/*
 * Does libconfig stop at line `line` when it reads text up to the end of
 * tk?  A text cut short elsewhere fails at its end, the line after.
 * libconfig 1.5 leaks a string it stops at, so a string is tried as a
 * number, which any place that refuses the one refuses too, unless it
 * follows a string (which it would continue).
 */
static bool fails_at(const char *text, const struct tok *tk,
		     const struct tok *prev, unsigned line, const char *msg)
{
	size_t n = (size_t)(tk->start + tk->len - text);
	char *cut;
	bool at = false;
	config_t cfg;

	if (tk->kind == TOK_STRING && prev->kind == TOK_STRING)
		return false;
	cut = malloc(n + 2);
	if (cut == NULL)
		return false;
	memcpy(cut, text, n);
	if (tk->kind == TOK_STRING) {
		/* As many newlines as the string holds keep the line. */
		size_t k = (size_t)(tk->start - text);

		for (const char *q = tk->start; q < tk->start + tk->len; q++)
			if (*q == '\n')
				cut[k++] = '\n';
		cut[k++] = '0';
		n = k;
	}
	cut[n] = '\n';
	cut[n + 1] = '\0';
	config_init(&cfg);
	config_set_include_dir(&cfg, "/dev/null");
	if (config_read_string(&cfg, cut) != CONFIG_TRUE)
		at = (unsigned)config_error_line(&cfg) == line &&
		     config_error_text(&cfg) != NULL &&
		     strcmp(config_error_text(&cfg), msg) == 0;
	config_destroy(&cfg);
	free(cut);
	return at;
}

static bool ends_value(const struct tok *tk)
{
	return tk->kind == TOK_STRING || tk->kind == TOK_NUMBER ||
	       (tk->kind == TOK_NAME &&
		(strncasecmp(tk->start, "true", tk->len) == 0 ||
		 strncasecmp(tk->start, "false", tk->len) == 0)) ||
	       (tk->kind == TOK_PUNCT && tk->len == 1 &&
		strchr("}])", tk->start[0]) != NULL);
}

/*
 * Finding the token costs a parse of the text up to each one tried: only
 * the last TRY_TOKENS tokens of the line are tried, and no more than
 * TRY_BYTES of text in all, so that a long line stays cheap; past that
 * the bare message is all there is.
 */
#define TRY_TOKENS 32
#define TRY_BYTES (4 * 1024 * 1024)
#define SHOW_NAME_MAX 32 /* a longer name may be a key */

/* A token, and the one before it, that fails_at() may try. */
struct try {
	struct tok tk, prev;
};

/*
 * libconfig says "syntax error" or "duplicate setting name" and a line.
 * Find the token it stopped at, by parsing the text cut after each token
 * of that line in turn, and say which it was.  Only punctuation and a
 * short name in a setting name's place (before '=' or ':') are shown:
 * anything else may be a key pasted in the wrong place, so only its kind
 * is named.
 */
/* Say which token tk (after prev; the text ends at end) libconfig's
 * message msg was about, into out. */
static void say_token(const char *end, const struct tok *tk,
		      const struct tok *prev, const char *msg, bool dup,
		      char *out, size_t outlen)
{
	const char *hint = "", *q;
	struct tok next;
	unsigned nat;
	bool named;

	/* A name in a setting name's place is followed by '=' or ':'. */
	q = tk->start + tk->len;
	nat = tk->line;
	next_token(&q, end, &nat, &next);
	named = tk->kind == TOK_NAME && tk->len <= SHOW_NAME_MAX &&
		next.kind == TOK_PUNCT &&
		(next.start[0] == '=' || next.start[0] == ':');
	if (dup && named) {
		snprintf(out, outlen,
			 "duplicate setting \"%.*s\": it is already set in "
			 "this group",
			 (int)tk->len, tk->start);
		return;
	}
	/* What to look for, from the token before. */
	if (tk->kind == TOK_NAME && prev->kind == TOK_PUNCT &&
	    (prev->start[0] == '=' || prev->start[0] == ':'))
		hint = " (a string value must be in double quotes)";
	else if (tk->kind != TOK_PUNCT && tk->kind != TOK_OTHER &&
		 prev->kind == TOK_NAME && !ends_value(prev))
		hint = " (a missing '=' before it?)";
	else if ((tk->kind != TOK_PUNCT || strchr("{([", tk->start[0])) &&
		 ends_value(prev))
		hint = " (a missing ',' or ';' before it?)";
	/* An editor's mark, not text: the file is fine once saved
	 * without it. */
	if (tk->kind == TOK_OTHER && end - tk->start >= 3 &&
	    memcmp(tk->start, "\xef\xbb\xbf", 3) == 0) {
		snprintf(out, outlen, "%s at a UTF-8 byte-order mark: save "
			 "the file without it", msg);
		return;
	}
	/* A control character or a stray byte of UTF-8, quoted as it is,
	 * would break the message's line. */
	if (tk->kind == TOK_OTHER && ((unsigned char)tk->start[0] <= 0x20 ||
				      (unsigned char)tk->start[0] >= 0x7f))
		snprintf(out, outlen, "%s at byte 0x%02x%s", msg,
			 (unsigned char)tk->start[0], hint);
	else if (tk->kind == TOK_PUNCT || tk->kind == TOK_OTHER || named)
		snprintf(out, outlen, "%s at '%.*s'%s", msg, (int)tk->len,
			 tk->start, hint);
	else if (prev->kind == TOK_PUNCT &&
		 (prev->start[0] == '=' || prev->start[0] == ':'))
		snprintf(out, outlen, "%s at a value after '%c'%s", msg,
			 prev->start[0], hint);
	else
		snprintf(out, outlen, "%s at %s%s", msg,
			 tk->kind == TOK_STRING ? "a string"
			 : tk->kind == TOK_NUMBER ? "a number"
						 : "an unquoted word",
			 hint);
}

static void describe_error(const char *text, unsigned line, const char *msg,
			   char *out, size_t outlen)
{
	const char *p = text, *end = text + strlen(text);
	struct tok tk, prev = { NULL, 0, 0, TOK_END };
	struct try ring[TRY_TOKENS];
	size_t nring = 0, first = 0, budget = TRY_BYTES;
	unsigned at = 1;
	bool dup = strcmp(msg, "duplicate setting name") == 0;
	bool dropped = false;

	snprintf(out, outlen, "%s", msg);
	/* The tokens of the line, the last TRY_TOKENS of them kept. */
	for (;;) {
		next_token(&p, end, &at, &tk);
		if (tk.kind == TOK_END || tk.line > line)
			break;
		if (tk.line == line) {
			if (nring == TRY_TOKENS) {
				first = (first + 1) % TRY_TOKENS;
				nring--;
				dropped = true;
			}
			ring[(first + nring) % TRY_TOKENS] =
				(struct try){ tk, prev };
			nring++;
		}
		prev = tk;
	}
	for (size_t i = 0; i < nring; i++) {
		const struct try *t = &ring[(first + i) % TRY_TOKENS];
		size_t n = (size_t)(t->tk.start + t->tk.len - text);

		if (n > budget)
			return;
		budget -= n;
		if (fails_at(text, &t->tk, &t->prev, line, msg)) {
			/* The first token kept may not be the first that
			 * fails. */
			if (i == 0 && dropped)
				return;
			say_token(end, &t->tk, &t->prev, msg, dup, out,
				  outlen);
			return;
		}
	}
	if (!dup && tk.kind == TOK_END && !dropped)
		snprintf(out, outlen,
			 "%s at the end of the file (a missing } or )?)", msg);
}

/*
 * The line of the text the first string starts at that runs on past the
 * end of its line, before line `line` where libconfig stopped, or 0: a
 * string whose closing '"' is missing takes in the lines after it, up to
 * the next '"', and libconfig stops where that leaves it, lines later.
 * keyway's settings hold no string of several lines.
 */
static unsigned open_string_line(const char *text, unsigned line)
{
	const char *p = text, *end = text + strlen(text);
	unsigned at = 1, start;
	struct tok tk;

	for (;;) {
		next_token(&p, end, &at, &tk);
		if (tk.kind == TOK_END)
			return 0;
		start = tk.line;
		for (size_t i = 0; i < tk.len; i++)
			start -= tk.start[i] == '\n';
		if (start >= line)
			return 0;
		if (tk.kind == TOK_STRING && start < tk.line)
			return start;
	}
}

/* Settings name the file and line they were written at, not their place
 * in the text put together. */
static void relocate(const struct text *t, config_setting_t *s)
{
	unsigned line;

	if (s->line != 0) {
		s->file = text_origin(t, s->line, &line);
		s->line = line;
	}
	if (config_setting_is_aggregate(s))
		for (int i = 0; i < config_setting_length(s); i++)
			relocate(t, config_setting_get_elem(s, i));
}

bool kwi_config_read(struct kwi_loader *l, const char *path)
{
	struct kw_ctx *ctx = l->ctx;
	struct text t = { .lines = 1 };
	char *buf = NULL;
	bool ok = false;
	size_t len = 0;
	kw_status rc;
	int fd;

	fd = open_file(l, path, NULL, 0, &t.open[0]);
	if (fd < 0)
		return false;
	rc = read_whole(fd, &buf, &len);
	if (rc != KW_OK)
		kwi_diag(l->d, rc, path, 0, "%s",
			 rc == KW_ERR_CONFIG ? "configuration file larger than "
					       "1 MiB"
			 : rc == KW_ERR_NOMEM ? "out of memory"
					      : strerror(errno));
	close(fd);
	if (rc != KW_OK)
		goto out;
	if (!expand(l, &t, NULL, buf, len))
		goto out;
	/* Anything libconfig would still take for an include (none, unless
	 * it reads a line otherwise than expand() does) must fail, not be
	 * opened by name: nothing can be opened under /dev/null. */
	config_set_include_dir(&ctx->cfg, "/dev/null");
	if (config_read_string(&ctx->cfg, t.buf != NULL ? t.buf : "") !=
	    CONFIG_TRUE) {
		unsigned at = (unsigned)config_error_line(&ctx->cfg), line;
		const char *f = text_origin(&t, at, &line);
		const char *msg = config_error_text(&ctx->cfg);
		char what[256];

		unsigned open_at = 0;

		if (msg == NULL)
			msg = "cannot parse";
		if (strcmp(msg, "syntax error") == 0)
			open_at = open_string_line(t.buf != NULL ? t.buf : "",
						   at);
		if (open_at != 0) {
			f = text_origin(&t, open_at, &line);
			snprintf(what, sizeof(what),
				 "unterminated string starting at line %u "
				 "(a missing '\"' at its end?)", line);
		} else if (strcmp(msg, "syntax error") == 0 ||
		    strcmp(msg, "duplicate setting name") == 0)
			describe_error(t.buf != NULL ? t.buf : "", at, msg,
				       what, sizeof(what));
		else
			snprintf(what, sizeof(what), "%s", msg);
		kwi_diag(l->d, KW_ERR_CONFIG, resolve_source(ctx, f), (int)line,
			 "%s", what);
		goto out;
	}
	relocate(&t, config_root_setting(&ctx->cfg));
	ok = true;
out:
	free(buf);
	free(t.buf);
	free(t.segs);
	return ok;
}

/*
 * readkey.c - the key put and rotate store: prompted for on the terminal
 * without echo, or read whole from standard input, into locked memory.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"

/* The most put and rotate read, trailing newline included. */
#define KEY_INPUT_MAX (64 * 1024)

int cli_key_buf_alloc(const char *cmd, struct key_buf *kb)
{
	void *p;
	int err;

	kb->data = NULL;
	kb->len = 0;
	kb->size = KEY_INPUT_MAX;
	p = mmap(NULL, kb->size, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		fprintf(stderr, "keyway: %s: out of memory\n", cmd);
		return EXIT_ERR;
	}
	if (mlock(p, kb->size) != 0) {
		err = errno;
		munmap(p, kb->size);
		fprintf(stderr, "keyway: %s: cannot lock memory for the key: "
			"%s\n", cmd, strerror(err));
		return EXIT_ERR;
	}
	/* Belt and braces: the process is not dumpable either. */
	(void)madvise(p, kb->size, MADV_DONTDUMP);
	kb->data = p;
	return GO_ON;
}

void cli_key_buf_free(struct key_buf *kb)
{
	if (!kb->data)
		return;
	explicit_bzero(kb->data, kb->size);
	munlock(kb->data, kb->size);
	munmap(kb->data, kb->size);
	kb->data = NULL;
	kb->len = 0;
}

static int read_piped_key(const char *cmd, struct key_buf *kb)
{
	ssize_t n;
	char extra;

	while (kb->len < kb->size) {
		n = read(STDIN_FILENO, kb->data + kb->len, kb->size - kb->len);
		if (n == 0)
			return GO_ON;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		kb->len += (size_t)n;
	}
	/* Full: one byte more and it is too long. */
	do {
		n = read(STDIN_FILENO, &extra, 1);
	} while (n < 0 && errno == EINTR);
	explicit_bzero(&extra, sizeof(extra));
	if (n < 0)
		goto fail;
	if (n > 0) {
		fprintf(stderr, "keyway: %s: key too long\n", cmd);
		return EXIT_ERR;
	}
	return GO_ON;

fail:
	fprintf(stderr, "keyway: %s: cannot read the key from standard input: "
		"%s\n", cmd, strerror(errno));
	return EXIT_ERR;
}

/* Set by the signals that end a prompt; the command ends by it once the
 * terminal has its echo back and the key is wiped. */
static volatile sig_atomic_t caught_signal;

static void catch_signal(int sig)
{
	caught_signal = sig;
}

static const int prompt_signals[] = { SIGHUP, SIGINT, SIGQUIT, SIGTERM };
#define NPROMPT_SIGNALS (sizeof(prompt_signals) / sizeof(prompt_signals[0]))

/* End as the signal that interrupted the prompt would have ended us. */
static int resend_signal(int sig)
{
	sigset_t set;

	signal(sig, SIG_DFL);
	sigemptyset(&set);
	sigaddset(&set, sig);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	raise(sig);
	return 128 + sig;
}

int cli_key_signal_status(int rc)
{
	return caught_signal ? resend_signal(caught_signal) : rc;
}

/* What a prompt changes, to give back. */
struct prompt {
	int fd;                  /* /dev/tty */
	struct termios saved_tio;
	bool tio_changed;
	sigset_t saved_mask;
	sigset_t wait_mask;      /* while ppoll() waits */
	struct sigaction saved_act[NPROMPT_SIGNALS];
};

/*
 * Block the signals that end a program, and the stops, and catch the
 * former: the signals the caller ignores stay ignored.
 */
static void hold_signals(struct prompt *p)
{
	struct sigaction catcher = { .sa_handler = catch_signal };
	sigset_t block;
	size_t i;

	sigemptyset(&block);
	for (i = 0; i < NPROMPT_SIGNALS; i++)
		sigaddset(&block, prompt_signals[i]);
	sigaddset(&block, SIGTSTP);
	sigaddset(&block, SIGTTIN);
	sigaddset(&block, SIGTTOU);
	sigprocmask(SIG_BLOCK, &block, &p->saved_mask);
	p->wait_mask = p->saved_mask;
	sigaddset(&p->wait_mask, SIGTSTP);
	sigaddset(&p->wait_mask, SIGTTIN);
	sigaddset(&p->wait_mask, SIGTTOU);

	caught_signal = 0;
	sigemptyset(&catcher.sa_mask);
	for (i = 0; i < NPROMPT_SIGNALS; i++) {
		sigaction(prompt_signals[i], NULL, &p->saved_act[i]);
		if (p->saved_act[i].sa_handler != SIG_IGN)
			sigaction(prompt_signals[i], &catcher, NULL);
	}
}

/* Echo off; 0 or the errno. */
static int echo_off(struct prompt *p)
{
	struct termios tio;

	if (tcgetattr(p->fd, &p->saved_tio) != 0)
		return errno;
	tio = p->saved_tio;
	tio.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK);
	/* One line, and its newline shown so the next output starts afresh. */
	tio.c_lflag |= ICANON | ECHONL;
	if (tcsetattr(p->fd, TCSAFLUSH, &tio) != 0)
		return errno;
	p->tio_changed = true;
	return 0;
}

/*
 * Read one line into kb until a signal is caught; 0 or the errno.
 * *line_ended when it ended with its newline, *too_long when kb filled
 * without one.
 */
static int read_line(struct prompt *p, struct key_buf *kb, bool *line_ended,
		     bool *too_long)
{
	struct pollfd pfd;
	ssize_t n;

	while (!caught_signal) {
		pfd.fd = p->fd;
		pfd.events = POLLIN;
		pfd.revents = 0;
		if (ppoll(&pfd, 1, NULL, &p->wait_mask) < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		n = read(p->fd, kb->data + kb->len, kb->size - kb->len);
		if (n < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return errno;
		}
		if (n == 0)
			break; /* ^D */
		kb->len += (size_t)n;
		if (kb->data[kb->len - 1] == '\n') {
			*line_ended = true;
			break;
		}
		if (kb->len == kb->size) {
			*too_long = true;
			break;
		}
	}
	return 0;
}

/* Give the terminal and the signals back as they were. */
static void end_prompt(struct prompt *p, bool line_ended)
{
	ssize_t written;
	size_t i;

	if (p->tio_changed) {
		/* TCSANOW: what is typed next belongs to the shell. */
		tcsetattr(p->fd, TCSANOW, &p->saved_tio);
		/* Failing leaves the prompt's line open: harmless. */
		if (!line_ended) {
			written = write(p->fd, "\n", 1);
			(void)written;
		}
	}
	close(p->fd);
	/* A signal still pending reaches catch_signal, not the default. */
	sigprocmask(SIG_SETMASK, &p->saved_mask, NULL);
	for (i = 0; i < NPROMPT_SIGNALS; i++)
		sigaction(prompt_signals[i], &p->saved_act[i], NULL);
}

/*
 * Prompt for a key on the terminal with echo off and read one line.
 *
 * A signal must not leave the terminal mute: the signals that end a
 * program are blocked except while ppoll() waits, so one can only arrive
 * there, and it ends the wait (no SA_RESTART) without killing us.  A stop
 * (^Z) is held until the terminal is restored.  Signals the caller ignores
 * stay ignored.
 */
static int prompt_key(const char *cmd, const char *provider,
		      struct key_buf *kb)
{
	struct prompt p = { .tio_changed = false };
	bool line_ended = false, too_long = false;
	int err, rc = EXIT_ERR;
	int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);

	if (fd < 0) {
		fprintf(stderr, "keyway: %s: /dev/tty: %s\n", cmd,
			strerror(errno));
		return EXIT_ERR;
	}
	p.fd = fd;
	hold_signals(&p);
	err = echo_off(&p);
	if (!err && dprintf(p.fd, "Key for %s: ", provider) < 0)
		err = errno;
	if (!err)
		err = read_line(&p, kb, &line_ended, &too_long);
	if (!err && !too_long && !caught_signal)
		rc = GO_ON;
	end_prompt(&p, line_ended);
	/* Only now, on a line of its own and with the echo back. */
	if (err)
		fprintf(stderr, "keyway: %s: /dev/tty: %s\n", cmd,
			strerror(err));
	else if (too_long)
		fprintf(stderr, "keyway: %s: key too long\n", cmd);
	if (caught_signal)
		rc = EXIT_ERR;
	return rc;
}

int cli_read_key(const char *cmd, const char *provider, struct key_buf *kb)
{
	int rc;

	if (isatty(STDIN_FILENO))
		rc = prompt_key(cmd, provider, kb);
	else
		rc = read_piped_key(cmd, kb);
	if (rc != GO_ON)
		return rc;

	if (kb->len > 0 && kb->data[kb->len - 1] == '\n') {
		kb->len--;
		if (kb->len > 0 && kb->data[kb->len - 1] == '\r')
			kb->len--;
	}
	if (kb->len == 0) {
		fprintf(stderr, "keyway: %s: empty key\n", cmd);
		return EXIT_ERR;
	}
	/* Keys are handed out as C strings: one with a NUL would come back
	 * cut short. */
	if (memchr(kb->data, '\0', kb->len)) {
		fprintf(stderr, "keyway: %s: key contains a NUL byte\n", cmd);
		return EXIT_ERR;
	}
	return GO_ON;
}

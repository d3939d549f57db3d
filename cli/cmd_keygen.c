/*
 * cmd_keygen.c - keygen: a new random master key, printed or written to a
 * file of its own.
 */
#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "cli.h"

#define MASTER_KEY_BYTES 32

static int fill_random(unsigned char *buf, size_t len)
{
	ssize_t n;

	while (len > 0) {
		n = getrandom(buf, len, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static int write_key_file(const char *path, const char *buf, size_t len)
{
	size_t off = 0;
	ssize_t n;
	int fd, err;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		  0600);
	if (fd < 0) {
		fprintf(stderr, "keyway: keygen: %s: %s\n", path,
			strerror(errno));
		return EXIT_ERR;
	}
	while (off < len) {
		n = write(fd, buf + off, len - off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		off += (size_t)n;
	}
	if (fsync(fd) != 0)
		goto fail;
	if (close(fd) != 0) {
		fd = -1;
		goto fail;
	}
	return EXIT_OK;

fail:
	err = errno;
	if (fd >= 0)
		close(fd);
	/* We created it (O_EXCL): a truncated key must not be left behind. */
	unlink(path);
	fprintf(stderr, "keyway: keygen: %s: %s\n", path, strerror(err));
	return EXIT_ERR;
}

int cmd_keygen(const struct command *cmd, int argc, char **argv,
	       const char *config)
{
	static const char digits[] = "0123456789abcdef";
	unsigned char key[MASTER_KEY_BYTES];
	char hex[2 * MASTER_KEY_BYTES + 1];
	const char *output = NULL;
	struct cli_option options[] = {
		CLI_OPT("output", 'o', CLI_VALUE, text, &output),
		CLI_END
	};
	struct cli_args a = { .config = config };
	size_t i;
	int rc;

	rc = cli_parse_operands(cmd, argc, argv, options, &a, 0, NULL);
	if (rc != GO_ON)
		return rc;

	if (fill_random(key, sizeof(key)) != 0) {
		fprintf(stderr, "keyway: keygen: getrandom: %s\n",
			strerror(errno));
		rc = EXIT_ERR;
		goto out;
	}
	for (i = 0; i < sizeof(key); i++) {
		hex[2 * i] = digits[key[i] >> 4];
		hex[2 * i + 1] = digits[key[i] & 0x0f];
	}
	if (output) {
		hex[2 * sizeof(key)] = '\n';
		rc = write_key_file(output, hex, sizeof(hex));
	} else {
		rc = cli_write_secret(hex, 2 * sizeof(key));
	}
out:
	explicit_bzero(key, sizeof(key));
	explicit_bzero(hex, sizeof(hex));
	return rc;
}

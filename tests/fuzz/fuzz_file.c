/*
 * fuzz_file.c - a fuzz target for the bytes of a keyway file
 * (backends/file/format.c, docs/file-format.md): file_parse_header() and
 * file_parse().
 *
 * Random bytes almost never pass the envelope's GCM tag, so the first
 * byte of an input says what the rest is (its value modulo 3):
 *
 *   0  a whole file, parsed as it is;
 *   1  the envelope's plaintext (the records): sealed under a valid header
 *      with the keyring's master key, as file_build() seals, then parsed;
 *   2  as 1, with a made-up secret (FZ_MARK) written over the plaintext
 *      from the offset the next byte picks (into a name, in the corpus).
 *
 * The keyring holds two master keys (FZ_MASTER, current, and FZ_OLD), from
 * a context opened once; the corpus's files and the sealed values in its
 * plaintexts are sealed under them.  What must hold, else abort():
 *
 *   - a refusal has the status e->rc says and one printable line in
 *     e->msg, which holds neither master key nor FZ_MARK;
 *   - file_parse() refuses a header exactly as file_parse_header() does;
 *   - a file that parses is rebuilt by file_build() into one that parses
 *     to the same header and the same plaintext, byte for byte;
 *   - guarded memory is released with the size it was asked for, and
 *     everything is released (LeakSanitizer sees what is not).
 *
 * Guarded memory is plain malloc() here, so that AddressSanitizer sees a
 * read past the plaintext, which the library's slabs would hide.
 */
#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <keyway/keyway.h>
#include <keyway/module.h>

#include "crypto.h"
#include "file.h"
#include "fuzz.h"
#include "fuzzutil.h"
#include "host.h"

/* The corpus was made with these keys: keep them. */
#define FZ_MASTER "6675a22e0c0b5f1d9b3e7c4a2f8d1e6b" \
		  "3a9c5e7f0d2b4a6c8e1f3d5b7a9c0e2f"
#define FZ_OLD "0f1e2d3c4b5a69788796a5b4c3d2e1f0" \
	       "ffeeddccbbaa99887766554433221100"
#define FZ_MARK "sk-fuzz-SECRET-planted-7d1c"

/* Made at the first input and kept for the life of the process, as the
 * keyring is the context's (reachable, so no leak either). */
static kw_ctx *fz_ctx;
static kw_keyring *fz_ring;
static kw_host fz_host;
/* $KWFUZZ_VERBOSE set: say on stderr what became of each input. */
static bool fz_verbose;
/* The header of the files that mode 1 and 2 seal. */
static unsigned char fz_header[FILE_HEADER_LEN];

static void die(const char *what, const char *detail)
{
	fprintf(stderr, "fuzz_file: %s%s%s\n", what, detail ? ": " : "",
		detail ? detail : "");
	abort();
}

/* Open a context on the two keys, through a configuration in a private
 * directory removed at once.  A configuration names a backend and a
 * chain: the env module's, from $KEYWAY_MODULE_DIR. */
static void open_ctx(void)
{
	static const char conf[] =
		"keyway: {\n"
		"  master_key = { source = \"env\"; "
		"var = \"KWFUZZ_MASTER_KEY\"; };\n"
		"  old_master_keys = ( { source = \"env\"; "
		"var = \"KWFUZZ_OLD_KEY\"; } );\n"
		"};\n"
		"backends: { env: { module = \"env\"; }; };\n"
		"chains: { default = ( { backend = \"env\"; "
		"control = \"required\"; } ); };\n";
	const char *tmp = getenv("TMPDIR");
	char dir[512], path[600];
	FILE *f;
	kw_status rc;

	snprintf(dir, sizeof(dir), "%s/kwfuzz.XXXXXX",
		 tmp != NULL && *tmp != '\0' ? tmp : "/tmp");
	if (mkdtemp(dir) == NULL)
		die("cannot make a directory under $TMPDIR", dir);
	snprintf(path, sizeof(path), "%s/keyway.conf", dir);
	f = fopen(path, "w");
	if (f == NULL || fputs(conf, f) == EOF || fclose(f) != 0)
		die("cannot write", path);
	setenv("KWFUZZ_MASTER_KEY", FZ_MASTER, 1);
	setenv("KWFUZZ_OLD_KEY", FZ_OLD, 1);
	rc = kw_open(&fz_ctx, path);
	unsetenv("KWFUZZ_MASTER_KEY");
	unsetenv("KWFUZZ_OLD_KEY");
	unlink(path);
	rmdir(dir);
	if (rc != KW_OK)
		die("cannot open a context", kw_last_error());
}

static unsigned char *seal_plain(const unsigned char *plain, size_t len,
				 size_t *outlen);
static void setup(void)
{
	static const unsigned char salt[KW_SALT_SIZE] = "kwfuzz salt 0001";
	static const unsigned char empty[4] = { 0, 0, 0, 0 };
	struct file_header h = {
		.version = FILE_VERSION,
		.kdf = 0,
		.file_id = "kwfuzz file id 1",
		.generation = 7,
	};
	struct file_snap snap;
	struct file_err e = { 0 };
	unsigned char *buf;
	size_t len;
	char why[400];
	kw_status rc;

	fz_verbose = getenv("KWFUZZ_VERBOSE") != NULL;
	open_ctx();
	if (kwi_keyring_get(fz_ctx, salt, &fz_ring) != KW_OK)
		die("cannot make the keyring", NULL);
	if (kwi_keyring_ready(fz_ring, why, sizeof(why)) != KW_OK)
		die("cannot seal here", why);
	fz_host = kwi_host;
	fz_host.secure_alloc = fz_secure_alloc;
	fz_host.secure_free = fz_secure_free;

	/* The header as file_build() writes it. */
	memcpy(h.salt, salt, KW_SALT_SIZE);
	if (file_build(&fz_host, fz_ring, &h, NULL, 0, &buf, &len) != KW_OK)
		die("file_build() of no records failed", NULL);
	memcpy(fz_header, buf, FILE_HEADER_LEN);
	free(buf);

	/* The envelope as this file seals it must be file_build()'s, or
	 * modes 1 and 2 would test nothing past the tag. */
	buf = seal_plain(empty, sizeof(empty), &len);
	memset(&snap, 0, sizeof(snap));
	rc = file_parse(&fz_host, fz_ring, buf, len, &snap, &e);
	if (rc != KW_OK || snap.n != 0)
		die("an envelope sealed as file_build() seals is refused",
		    e.msg);
	file_snap_clear(&fz_host, &snap);
	free(buf);
}

/* fz_header and the envelope around plain: malloc'd, *outlen bytes. */
static unsigned char *seal_plain(const unsigned char *plain, size_t len,
				 size_t *outlen)
{
	char id[FILE_AAD_ID_LEN + 1];
	kw_seal_aad aad = { id, KW_SCOPE_NONE, NULL, "" };
	unsigned char *sealed, *buf;
	size_t sealed_len;

	file_hex(fz_header, FILE_HEADER_LEN, id);
	if (fz_host.seal(fz_ring, &aad, (const char *)plain, len, &sealed,
			 &sealed_len) != KW_OK)
		die("cannot seal a plaintext", NULL);
	buf = malloc(FILE_HEADER_LEN + sealed_len);
	if (buf == NULL)
		die("out of memory", NULL);
	memcpy(buf, fz_header, FILE_HEADER_LEN);
	memcpy(buf + FILE_HEADER_LEN, sealed, sealed_len);
	free(sealed);
	*outlen = FILE_HEADER_LEN + sealed_len;
	return buf;
}

/* A refusal says what its status is, in one printable line that gives
 * nothing secret away. */
static void check_refusal(kw_status rc, const struct file_err *e)
{
	static const char *const secrets[] = { FZ_MARK, FZ_MASTER, FZ_OLD,
					       NULL };
	const char *bad;

	if (rc == KW_OK)
		return;
	if (e->rc != rc)
		die("the status returned is not the one in e->rc", e->msg);
	if (rc != KW_ERR_BACKEND && rc != KW_ERR_CRYPTO && rc != KW_ERR_NOMEM)
		die("a refusal of an unexpected status",
		    kw_status_str(rc));
	if (e->msg[0] == '\0')
		die("a refusal without a message", kw_status_str(rc));
	bad = fz_bad_message(e->msg, secrets);
	if (bad != NULL)
		die("a bad refusal", bad);
}

static bool same_header(const struct file_header *a,
			const struct file_header *b)
{
	return a->version == b->version && a->kdf == b->kdf &&
	       memcmp(a->kdf_params, b->kdf_params,
		      sizeof(a->kdf_params)) == 0 &&
	       memcmp(a->salt, b->salt, KW_SALT_SIZE) == 0 &&
	       memcmp(a->file_id, b->file_id, FILE_ID_LEN) == 0 &&
	       a->generation == b->generation;
}

/* What a parsed file holds, as the module relies on it. */
static void check_records(const struct file_snap *s)
{
	if (s->n > s->cap)
		die("more records than were allocated", NULL);
	for (size_t i = 0; i < s->n; i++) {
		const struct file_rec *r = &s->recs[i];

		if (r->scope < KW_SCOPE_USER || r->scope > KW_SCOPE_SYSTEM)
			die("a record of no scope", NULL);
		if ((r->scope == KW_SCOPE_SYSTEM) != (r->owner == NULL))
			die("a record's owner does not go with its scope",
			    NULL);
		if (r->owner != NULL && r->owner[0] == '\0')
			die("a record with an empty owner", NULL);
		if (r->provider == NULL || r->name == NULL || r->sealed == NULL)
			die("a record without a provider, name or value", NULL);
		if (i > 0 && file_rec_cmp(r->scope, r->owner, r->provider,
					  &s->recs[i - 1]) <= 0)
			die("records out of order", NULL);
	}
}

/* file_build() of what parsed, parsed again, is the same file but for
 * the envelope's key id, nonce and tag. */
static void check_rebuilt(const struct file_snap *s, const unsigned char *buf)
{
	struct file_snap again;
	struct file_err e = { 0 };
	unsigned char *out;
	size_t len;
	kw_status rc;

	rc = file_build(&fz_host, fz_ring, &s->h, s->recs, s->n, &out, &len);
	if (rc != KW_OK)
		die("file_build() of a parsed file failed", kw_status_str(rc));
	if (memcmp(out, buf, FILE_HEADER_LEN) != 0)
		die("the rebuilt header differs", NULL);
	memset(&again, 0, sizeof(again));
	rc = file_parse(&fz_host, fz_ring, out, len, &again, &e);
	if (rc != KW_OK)
		die("a rebuilt file is refused", e.msg);
	if (!same_header(&again.h, &s->h) || again.n != s->n ||
	    again.plain_len != s->plain_len ||
	    memcmp(again.plain, s->plain, s->plain_len) != 0)
		die("a rebuilt file holds other records", NULL);
	file_snap_clear(&fz_host, &again);
	free(out);
}

static void parse_file(const unsigned char *buf, size_t len)
{
	struct file_header h;
	struct file_snap snap;
	struct file_err he = { 0 }, e = { 0 };
	kw_status hrc, rc;

	memset(&snap, 0, sizeof(snap));
	hrc = file_parse_header(buf, len, &h, &he);
	check_refusal(hrc, &he);
	rc = file_parse(&fz_host, fz_ring, buf, len, &snap, &e);
	if (fz_verbose)
		fprintf(stderr, "# %zu bytes: %s\n", len,
			rc == KW_OK ? "read" : e.msg);
	check_refusal(rc, &e);
	if (hrc != KW_OK && (rc != hrc || strcmp(he.msg, e.msg) != 0))
		die("file_parse() does not refuse the header as "
		    "file_parse_header() does", e.msg);
	if (rc == KW_OK) {
		if (hrc != KW_OK || !same_header(&h, &snap.h))
			die("file_parse() reads another header", NULL);
		check_records(&snap);
		check_rebuilt(&snap, buf);
	}
	file_snap_clear(&fz_host, &snap);
}

static void parse_plain(const unsigned char *plain, size_t len)
{
	size_t flen;
	unsigned char *file = seal_plain(plain, len, &flen);

	parse_file(file, flen);
	free(file);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	unsigned char *plain;
	size_t len;

	if (!ready) {
		setup();
		ready = true;
	}
	if (size == 0)
		return 0;
	switch (data[0] % 3) {
	case 0:
		parse_file(data + 1, size - 1);
		break;
	case 1:
		parse_plain(data + 1, size - 1);
		break;
	default:
		if (size < 2)
			break;
		/* The rest, with FZ_MARK over it from offset data[1]
		 * (modulo its length), lengthened if need be. */
		plain = fz_plant(data + 1, size - 1, FZ_MARK, &len);
		if (plain == NULL)
			die("out of memory", NULL);
		parse_plain(plain, len);
		free(plain);
		break;
	}
	return 0;
}

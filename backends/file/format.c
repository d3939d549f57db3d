/*
 * format.c - the bytes of a keyway file (docs/file-format.md): the header
 * read and checked, the envelope opened and sealed through the host, the
 * records inside it read and written.  Knows nothing of paths, locks or
 * threads: file.c does.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <keyway/module.h>

#include "file.h"

/* Fixed part of a record: scope, flags, three string lengths, four
 * 64-bit numbers, the sealed value's length. */
#define REC_FIXED (1 + 1 + 2 + 2 + 2 + 8 * 4 + 4)

static uint32_t get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static uint64_t get64(const unsigned char *p)
{
	return (uint64_t)get32(p) << 32 | get32(p + 4);
}

static void put16(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 8);
	p[1] = (unsigned char)v;
}

static void put32(unsigned char *p, uint32_t v)
{
	put16(p, v >> 16);
	put16(p + 2, v);
}

static void put64(unsigned char *p, uint64_t v)
{
	put32(p, (uint32_t)(v >> 32));
	put32(p + 4, (uint32_t)v);
}

void file_hex(const unsigned char *in, size_t len, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < len; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * len] = '\0';
}

static void fail(struct file_err *e, kw_status rc, const char *fmt, ...)
	KW_PRINTF(3, 4);

static void fail(struct file_err *e, kw_status rc, const char *fmt, ...)
{
	va_list ap;

	e->rc = rc;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
}

kw_status file_parse_header(const unsigned char *buf, size_t len,
			    struct file_header *h, struct file_err *e)
{
	if (len < FILE_MAGIC_LEN ||
	    memcmp(buf, FILE_MAGIC, FILE_MAGIC_LEN) != 0) {
		/* A file cut short inside the magic is no keyway file
		 * either. */
		if (len >= FILE_MAGIC_LEN ||
		    memcmp(buf, FILE_MAGIC, len) != 0) {
			fail(e, KW_ERR_BACKEND,
			     "is not a keyway file (bad magic)");
			return e->rc;
		}
	}
	if (len < FILE_MIN_LEN) {
		fail(e, KW_ERR_BACKEND,
		     "is truncated (%zu bytes; a keyway file has at least %d): "
		     "restore it from a backup",
		     len, FILE_MIN_LEN);
		return e->rc;
	}
	h->version = (uint32_t)buf[FILE_OFF_VERSION] << 8 |
		     buf[FILE_OFF_VERSION + 1];
	if (h->version != FILE_VERSION) {
		fail(e, KW_ERR_BACKEND,
		     "has format version %u, which this keyway does not read "
		     "(it reads version %d): upgrade keyway",
		     (unsigned)h->version, FILE_VERSION);
		return e->rc;
	}
	h->kdf = buf[FILE_OFF_KDF];
	if (h->kdf > KW_KDF_PBKDF2_SHA256 || buf[FILE_OFF_KDF + 1] != 0) {
		fail(e, KW_ERR_BACKEND,
		     "names an unknown key derivation (%u.%u): restore it "
		     "from a backup",
		     (unsigned)buf[FILE_OFF_KDF], (unsigned)buf[FILE_OFF_KDF + 1]);
		return e->rc;
	}
	for (int i = 0; i < 3; i++)
		h->kdf_params[i] = get32(buf + FILE_OFF_KDF_PARAMS + 4 * i);
	if (h->kdf == KW_KDF_NONE &&
	    (h->kdf_params[0] | h->kdf_params[1] | h->kdf_params[2]) != 0) {
		fail(e, KW_ERR_BACKEND,
		     "has key derivation parameters but no key derivation: "
		     "restore it from a backup");
		return e->rc;
	}
	memcpy(h->salt, buf + FILE_OFF_SALT, KW_SALT_SIZE);
	memcpy(h->file_id, buf + FILE_OFF_FILE_ID, FILE_ID_LEN);
	h->generation = get64(buf + FILE_OFF_GENERATION);
	return KW_OK;
}

static void header_bytes(const struct file_header *h,
			 unsigned char out[FILE_HEADER_LEN])
{
	memset(out, 0, FILE_HEADER_LEN);
	memcpy(out, FILE_MAGIC, FILE_MAGIC_LEN);
	put16(out + FILE_OFF_VERSION, h->version);
	out[FILE_OFF_KDF] = (unsigned char)h->kdf;
	for (int i = 0; i < 3; i++)
		put32(out + FILE_OFF_KDF_PARAMS + 4 * i, h->kdf_params[i]);
	memcpy(out + FILE_OFF_SALT, h->salt, KW_SALT_SIZE);
	memcpy(out + FILE_OFF_FILE_ID, h->file_id, FILE_ID_LEN);
	put64(out + FILE_OFF_GENERATION, h->generation);
}

/* The envelope is bound to every byte of the header, in hex. */
static void envelope_aad(const unsigned char *header,
			 char id[FILE_AAD_ID_LEN + 1], kw_seal_aad *aad)
{
	file_hex(header, FILE_HEADER_LEN, id);
	aad->store_id = id;
	aad->scope = KW_SCOPE_NONE;
	aad->owner = NULL;
	aad->provider = "";
}

/* No control character (NUL included) in a name: what keyway wrote
 * never holds one, and names reach messages and listings. */
static bool plain_text(const unsigned char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] < 0x20 || p[i] == 0x7f)
			return false;
	return true;
}

/* Read the records of snap->plain into snap->recs and snap->strs. */
static kw_status parse_records(struct file_snap *snap, struct file_err *e)
{
	const unsigned char *p = (const unsigned char *)snap->plain;
	const unsigned char *end = p + snap->plain_len;
	char *s;
	uint32_t n;

	if (end - p < 4)
		goto short_;
	n = get32(p);
	p += 4;
	if (n > (size_t)(end - p) / REC_FIXED)
		goto short_;
	snap->recs = calloc(n > 0 ? n : 1, sizeof(*snap->recs));
	/* Every string and its NUL fit in the plaintext's size plus one
	 * byte per string. */
	snap->strs = malloc(snap->plain_len + 3 * (size_t)n + 1);
	if (snap->recs == NULL || snap->strs == NULL) {
		fail(e, KW_ERR_NOMEM, "out of memory");
		return e->rc;
	}
	snap->cap = n;
	s = snap->strs;
	for (uint32_t i = 0; i < n; i++) {
		struct file_rec *r = &snap->recs[i];
		const char **str[3] = { &r->owner, &r->provider, &r->name };
		size_t lens[3];

		if ((size_t)(end - p) < REC_FIXED)
			goto short_;
		r->scope = (kw_scope)p[0];
		if (r->scope < KW_SCOPE_USER || r->scope > KW_SCOPE_SYSTEM ||
		    (p[1] & ~1u) != 0) {
			fail(e, KW_ERR_BACKEND, "is damaged: record %u has scope "
			     "%u, flags %u", (unsigned)i, (unsigned)p[0],
			     (unsigned)p[1]);
			return e->rc;
		}
		r->active = (p[1] & 1u) != 0;
		p += 2;
		for (int k = 0; k < 3; k++) {
			lens[k] = (size_t)p[0] << 8 | p[1];
			p += 2;
		}
		r->created = (int64_t)get64(p);
		r->rotated = (int64_t)get64(p + 8);
		r->usage_count = get64(p + 16);
		r->last_used = (int64_t)get64(p + 24);
		p += 32;
		for (int k = 0; k < 3; k++) {
			if ((size_t)(end - p) < lens[k])
				goto short_;
			if (!plain_text(p, lens[k])) {
				fail(e, KW_ERR_BACKEND,
				     "is damaged: record %u holds a control "
				     "character", (unsigned)i);
				return e->rc;
			}
			memcpy(s, p, lens[k]);
			s[lens[k]] = '\0';
			*str[k] = s;
			s += lens[k] + 1;
			p += lens[k];
		}
		if (r->scope == KW_SCOPE_SYSTEM ? lens[0] != 0 : lens[0] == 0) {
			fail(e, KW_ERR_BACKEND, "is damaged: record %u has %s "
			     "owner", (unsigned)i,
			     lens[0] == 0 ? "no" : "a system key with an");
			return e->rc;
		}
		if (lens[1] == 0) {
			fail(e, KW_ERR_BACKEND, "is damaged: record %u has no "
			     "provider", (unsigned)i);
			return e->rc;
		}
		if (r->scope == KW_SCOPE_SYSTEM)
			r->owner = NULL;
		if ((size_t)(end - p) < 4)
			goto short_;
		r->sealed_len = get32(p);
		p += 4;
		if ((size_t)(end - p) < r->sealed_len)
			goto short_;
		r->sealed = p;
		p += r->sealed_len;
		if (i > 0 && file_rec_cmp(r->scope, r->owner, r->provider,
					  &snap->recs[i - 1]) <= 0) {
			fail(e, KW_ERR_BACKEND,
			     "is damaged: its records are out of order");
			return e->rc;
		}
		snap->n++;
	}
	if (p != end) {
		fail(e, KW_ERR_BACKEND,
		     "is damaged: %zu byte%s after its last record",
		     (size_t)(end - p), end - p == 1 ? "" : "s");
		return e->rc;
	}
	return KW_OK;
short_:
	fail(e, KW_ERR_BACKEND, "is damaged: its records end early");
	return e->rc;
}

kw_status file_parse(const kw_host *host, const kw_keyring *kr,
		     const unsigned char *buf, size_t len,
		     struct file_snap *snap, struct file_err *e)
{
	const unsigned char *sealed;
	size_t sealed_len;
	char aad_id[FILE_AAD_ID_LEN + 1], why[200];
	kw_seal_aad aad;
	kw_status rc;

	rc = file_parse_header(buf, len, &snap->h, e);
	if (rc != KW_OK)
		return rc;
	/* At least FILE_MIN_LEN bytes, the header said. */
	sealed = buf + FILE_SEAL_AT;
	sealed_len = len - FILE_SEAL_AT;
	file_hex(snap->h.file_id, FILE_ID_LEN, snap->file_id_hex);
	if (host->sealed_key_id(sealed, sealed_len, snap->key_id) != KW_OK) {
		fail(e, KW_ERR_BACKEND,
		     "has an envelope of unknown version %u: upgrade keyway",
		     (unsigned)sealed[0]);
		return e->rc;
	}
	if (!host->keyring_knows(kr, snap->key_id)) {
		fail(e, KW_ERR_CRYPTO,
		     "is sealed under master key %s, which neither "
		     "keyway.master_key nor keyway.old_master_keys holds: "
		     "configure that key (or its passphrase)",
		     snap->key_id);
		return e->rc;
	}
	/* Ordinary memory, wiped when freed: the plaintext holds names and
	 * sealed values, no key in the clear (each opens only through the
	 * host, into guarded memory), and guarded pages for a whole file of
	 * 10,000 keys would cost a reload a third of its time. */
	snap->plain_len = sealed_len - KW_SEAL_OVERHEAD;
	snap->plain = malloc(snap->plain_len + 1);
	if (snap->plain == NULL) {
		fail(e, KW_ERR_NOMEM, "out of memory");
		return e->rc;
	}
	envelope_aad(buf, aad_id, &aad);
	why[0] = '\0';
	rc = host->unseal(kr, &aad, sealed, sealed_len, snap->plain, why,
			  sizeof(why));
	if (rc != KW_OK) {
		fail(e, rc, "cannot be opened: it was altered or damaged "
		     "(%s): restore it from a backup", why);
		return rc;
	}
	rc = parse_records(snap, e);
	if (rc != KW_OK)
		return rc;
	/* A key sealed under a master key we lack could never be handed
	 * out, nor rekey move it: refuse the file, as the envelope's. */
	for (size_t i = 0; i < snap->n; i++) {
		char id[KW_KEY_ID_SIZE];
		const struct file_rec *r = &snap->recs[i];

		if (host->sealed_key_id(r->sealed, r->sealed_len, id) != KW_OK) {
			fail(e, KW_ERR_BACKEND, "is damaged: record %zu holds "
			     "no sealed value", i);
			return e->rc;
		}
		if (!host->keyring_knows(kr, id)) {
			fail(e, KW_ERR_CRYPTO,
			     "holds keys sealed under master key %s, which "
			     "neither keyway.master_key nor "
			     "keyway.old_master_keys holds: configure that key "
			     "(or its passphrase)",
			     id);
			return e->rc;
		}
	}
	return KW_OK;
}

/* The record's bytes at p (NULL: only count them); returns their size. */
static size_t record_bytes(const struct file_rec *r, unsigned char *p)
{
	const char *str[3] = { r->owner != NULL ? r->owner : "", r->provider,
			       r->name != NULL ? r->name : "" };
	size_t lens[3], total = REC_FIXED + r->sealed_len;

	for (int k = 0; k < 3; k++) {
		lens[k] = strlen(str[k]);
		total += lens[k];
	}
	if (p == NULL)
		return total;
	p[0] = (unsigned char)r->scope;
	p[1] = r->active ? 1 : 0;
	for (int k = 0; k < 3; k++)
		put16(p + 2 + 2 * k, (uint32_t)lens[k]);
	p += 8;
	put64(p, (uint64_t)r->created);
	put64(p + 8, (uint64_t)r->rotated);
	put64(p + 16, r->usage_count);
	put64(p + 24, (uint64_t)r->last_used);
	p += 32;
	for (int k = 0; k < 3; k++) {
		memcpy(p, str[k], lens[k]);
		p += lens[k];
	}
	put32(p, (uint32_t)r->sealed_len);
	memcpy(p + 4, r->sealed, r->sealed_len);
	return total;
}

kw_status file_build(const kw_host *host, const kw_keyring *kr,
		     const struct file_header *h, const struct file_rec *recs,
		     size_t n, unsigned char **out, size_t *outlen)
{
	unsigned char header[FILE_HEADER_LEN], *sealed = NULL, *buf = NULL;
	char aad_id[FILE_AAD_ID_LEN + 1];
	char *plain = NULL;
	size_t len = 4, sealed_len = 0;
	kw_seal_aad aad;
	kw_status rc;

	*out = NULL;
	*outlen = 0;
	for (size_t i = 0; i < n; i++)
		len += record_bytes(&recs[i], NULL);
	if (len > INT32_MAX - FILE_MIN_LEN || n > UINT32_MAX)
		return KW_ERR_INVAL;
	/* The plaintext holds no key in the clear, but what keys there
	 * are, and whose: it stays in guarded memory all the same. */
	plain = host->secure_alloc(len);
	if (plain == NULL)
		return KW_ERR_NOMEM;
	put32((unsigned char *)plain, (uint32_t)n);
	for (size_t i = 0, at = 4; i < n; i++)
		at += record_bytes(&recs[i], (unsigned char *)plain + at);
	header_bytes(h, header);
	envelope_aad(header, aad_id, &aad);
	rc = host->seal(kr, &aad, plain, len, &sealed, &sealed_len);
	if (rc != KW_OK)
		goto out;
	buf = malloc(FILE_HEADER_LEN + sealed_len);
	if (buf == NULL) {
		rc = KW_ERR_NOMEM;
		goto out;
	}
	memcpy(buf, header, FILE_HEADER_LEN);
	memcpy(buf + FILE_HEADER_LEN, sealed, sealed_len);
	*out = buf;
	*outlen = FILE_HEADER_LEN + sealed_len;
out:
	free(sealed);
	host->secure_free(plain, len);
	return rc;
}

void file_snap_clear(const kw_host *host, struct file_snap *snap)
{
	(void)host;
	/* A snapshot's records point into its plaintext and strs: they own
	 * nothing (only a write's copy does, freed with it). */
	free(snap->recs);
	if (snap->strs != NULL) {
		explicit_bzero(snap->strs, snap->plain_len + 3 * snap->cap + 1);
		free(snap->strs);
	}
	if (snap->plain != NULL) {
		explicit_bzero(snap->plain, snap->plain_len + 1);
		free(snap->plain);
	}
	snap->recs = NULL;
	snap->strs = NULL;
	snap->plain = NULL;
	snap->n = snap->cap = 0;
}

int file_rec_cmp(kw_scope scope, const char *owner, const char *provider,
		 const struct file_rec *r)
{
	int c;

	if (scope != r->scope)
		return scope < r->scope ? -1 : 1;
	c = strcmp(owner != NULL ? owner : "",
		   r->owner != NULL ? r->owner : "");
	return c != 0 ? c : strcmp(provider, r->provider);
}

size_t file_find(const struct file_rec *recs, size_t n, kw_scope scope,
		 const char *owner, const char *provider, bool *found)
{
	size_t lo = 0, hi = n;

	*found = false;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = file_rec_cmp(scope, owner, provider, &recs[mid]);

		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return lo;
}

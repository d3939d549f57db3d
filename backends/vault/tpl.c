/*
 * tpl.c - the path template: "keyway/{scope}/{owner}/{provider}" made
 * into the path of one key, and matched against the names a LIST returns
 * so that ls can say which key a path holds.
 *
 * {scope} is "user", "org" or "system"; {owner} the user or org, and for
 * system keys nothing: a segment that is just "{owner}" is left out.
 * Each segment is URL-escaped on its own; an owner or provider that would
 * change the shape of the path ('/', ".", "..", empty) names no key.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vault.h"

char *vault_escape(const char *text, size_t len)
{
	char *esc, *copy;

	/* curl_easy_escape() ignores its handle since 7.82. */
	esc = curl_easy_escape(NULL, text, (int)len);
	if (esc == NULL)
		return NULL;
	copy = strdup(esc);
	curl_free(esc);
	return copy;
}

void vault_tpl_free(struct vault_tpl *t)
{
	for (size_t i = 0; i < t->nsegs; i++)
		free(t->segs[i].parts);
	free(t->segs);
	free(t->copy);
	memset(t, 0, sizeof(*t));
}

static bool add_part(struct vault_seg *seg, enum vault_part_kind kind,
		     const char *text, size_t len)
{
	struct vault_part *grown = realloc(seg->parts, (seg->nparts + 1) *
							       sizeof(*grown));

	if (grown == NULL)
		return false;
	seg->parts = grown;
	seg->parts[seg->nparts++] = (struct vault_part){ kind, text, len };
	return true;
}

/* One segment [s, s + len) of the template into seg. */
static kw_status parse_seg(struct vault_seg *seg, const char *s, size_t len,
			   bool *has_owner, bool *has_provider, char *why,
			   size_t whylen)
{
	static const struct {
		const char *name;
		enum vault_part_kind kind;
	} names[] = { { "{scope}", VP_SCOPE },
		      { "{owner}", VP_OWNER },
		      { "{provider}", VP_PROVIDER } };
	const char *p = s, *end = s + len;
	bool last_var = false;

	if (len == 0) {
		snprintf(why, whylen, "path has an empty segment (\"//\", or "
			 "a '/' at either end)");
		return KW_ERR_CONFIG;
	}
	if ((len == 1 && s[0] == '.') || (len == 2 && memcmp(s, "..", 2) == 0)) {
		snprintf(why, whylen, "path may not hold a \".\" or \"..\" "
			 "segment");
		return KW_ERR_CONFIG;
	}
	while (p < end) {
		const char *open = memchr(p, '{', (size_t)(end - p));
		const char *close = memchr(p, '}', (size_t)(end - p));
		size_t i;

		if (close != NULL && (open == NULL || close < open)) {
			snprintf(why, whylen, "path has a '}' without its '{'");
			return KW_ERR_CONFIG;
		}
		if (open == NULL)
			open = end;
		if (open > p) {
			if (!add_part(seg, VP_TEXT, p, (size_t)(open - p)))
				goto nomem;
			last_var = false;
		}
		if (open == end)
			break;
		for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			if ((size_t)(end - open) >= strlen(names[i].name) &&
			    memcmp(open, names[i].name,
				   strlen(names[i].name)) == 0)
				break;
		if (i == sizeof(names) / sizeof(names[0])) {
			snprintf(why, whylen, "path: unknown placeholder at "
				 "\"%.*s\" (path takes {scope}, {owner} and "
				 "{provider})",
				 (int)(end - open), open);
			return KW_ERR_CONFIG;
		}
		/* ls could not tell where one ends and the next begins. */
		if (last_var) {
			snprintf(why, whylen, "path: two placeholders must be "
				 "kept apart by some text");
			return KW_ERR_CONFIG;
		}
		if (!add_part(seg, names[i].kind, NULL, 0))
			goto nomem;
		*has_owner |= names[i].kind == VP_OWNER;
		*has_provider |= names[i].kind == VP_PROVIDER;
		last_var = true;
		p = open + strlen(names[i].name);
	}
	seg->owner_only = seg->nparts == 1 && seg->parts[0].kind == VP_OWNER;
	seg->fixed = seg->nparts == 1 && seg->parts[0].kind == VP_TEXT;
	return KW_OK;
nomem:
	snprintf(why, whylen, "out of memory");
	return KW_ERR_NOMEM;
}

kw_status vault_tpl_parse(struct vault_tpl *t, const char *text, kw_scope scope,
			  char *why, size_t whylen)
{
	bool has_owner = false, has_provider = false;
	const char *p, *slash;
	struct vault_seg *grown;
	kw_status rc;

	memset(t, 0, sizeof(*t));
	t->copy = strdup(text);
	if (t->copy == NULL) {
		snprintf(why, whylen, "out of memory");
		return KW_ERR_NOMEM;
	}
	for (p = t->copy;; p = slash + 1) {
		slash = strchr(p, '/');
		if (slash == NULL)
			slash = p + strlen(p);
		grown = realloc(t->segs, (t->nsegs + 1) * sizeof(*grown));
		if (grown == NULL) {
			snprintf(why, whylen, "out of memory");
			return KW_ERR_NOMEM;
		}
		t->segs = grown;
		memset(&t->segs[t->nsegs], 0, sizeof(t->segs[0]));
		t->nsegs++;
		rc = parse_seg(&t->segs[t->nsegs - 1], p, (size_t)(slash - p),
			       &has_owner, &has_provider, why, whylen);
		if (rc != KW_OK)
			return rc;
		if (*slash == '\0')
			break;
	}
	if (!has_provider) {
		snprintf(why, whylen, "path must hold {provider}: each "
			 "provider's key has a path of its own");
		return KW_ERR_CONFIG;
	}
	if (!has_owner && scope != KW_SCOPE_SYSTEM) {
		snprintf(why, whylen, "path must hold {owner}: a %s key has a "
			 "path per %s", kw_scope_name(scope),
			 kw_scope_name(scope));
		return KW_ERR_CONFIG;
	}
	if (t->segs[t->nsegs - 1].owner_only) {
		snprintf(why, whylen, "path may not end with {owner}");
		return KW_ERR_CONFIG;
	}
	return KW_OK;
}

/* What a part of a segment stands for (text: part->len bytes of it). */
static const char *part_value(const struct vault_part *part, kw_scope scope,
			      const char *owner, const char *provider)
{
	switch (part->kind) {
	case VP_SCOPE:
		return kw_scope_name(scope);
	case VP_OWNER:
		return owner;
	case VP_PROVIDER:
		return provider;
	default:
		return part->text;
	}
}

static size_t part_len(const struct vault_part *part, kw_scope scope,
		       const char *owner, const char *provider)
{
	if (part->kind == VP_TEXT)
		return part->len;
	return strlen(part_value(part, scope, owner, provider));
}

/* Whether a name can be one segment as it is. */
static bool fits_segment(const char *s)
{
	return s[0] != '\0' && strchr(s, '/') == NULL && strcmp(s, ".") != 0 &&
	       strcmp(s, "..") != 0;
}

/* Whether a segment needs no escaping: RFC 3986's unreserved bytes. */
static bool unreserved(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '-' || c == '.' ||
		      c == '_' || c == '~'))
			return false;
	}
	return true;
}

/*
 * The path is built in one buffer sized for the worst case (every byte
 * escaped to three), so a lookup costs one allocation; libcurl escapes
 * only the segments that need it.  This runs on every cache hit.
 */
kw_status vault_tpl_expand(const struct vault_tpl *t, kw_scope scope,
			   const char *owner, const char *provider, char **out,
			   char *why, size_t whylen)
{
	char *path, *esc;
	size_t plen = 0, cap = 1;

	*out = NULL;
	if (owner == NULL)
		owner = "";
	if (scope != KW_SCOPE_SYSTEM && !fits_segment(owner)) {
		snprintf(why, whylen, "%s \"%s\" cannot be named in a Vault "
			 "path (it is empty, \".\", \"..\" or holds '/')",
			 kw_scope_name(scope), owner);
		return KW_ERR_INVAL;
	}
	if (!fits_segment(provider)) {
		snprintf(why, whylen, "provider \"%s\" cannot be named in a "
			 "Vault path", provider);
		return KW_ERR_INVAL;
	}
	/* A template may name {owner} any number of times. */
	for (size_t i = 0; i < t->nsegs; i++)
		for (size_t j = 0; j < t->segs[i].nparts; j++)
			cap += 3 * part_len(&t->segs[i].parts[j], scope, owner,
					    provider) + 1;
	path = malloc(cap);
	if (path == NULL)
		goto nomem;
	for (size_t i = 0; i < t->nsegs; i++) {
		const struct vault_seg *s = &t->segs[i];
		size_t start, slen;

		if (s->owner_only && scope == KW_SCOPE_SYSTEM)
			continue;
		if (plen > 0)
			path[plen++] = '/';
		start = plen;
		for (size_t j = 0; j < s->nparts; j++) {
			const struct vault_part *part = &s->parts[j];
			size_t n = part_len(part, scope, owner, provider);

			memcpy(path + plen,
			       part_value(part, scope, owner, provider), n);
			plen += n;
		}
		path[plen] = '\0';
		slen = plen - start;
		if (!fits_segment(path + start)) {
			snprintf(why, whylen, "the path for provider \"%s\" has "
				 "an empty or dot segment", provider);
			free(path);
			return KW_ERR_INVAL;
		}
		if (unreserved(path + start, slen))
			continue;
		/* curl_easy_escape() ignores its handle since 7.82. */
		esc = curl_easy_escape(NULL, path + start, (int)slen);
		if (esc == NULL)
			goto nomem;
		plen = start + strlen(esc); /* at most 3 * slen: it fits */
		memcpy(path + start, esc, plen - start + 1);
		curl_free(esc);
	}
	path[plen] = '\0';
	*out = path;
	return KW_OK;
nomem:
	free(path);
	snprintf(why, whylen, "out of memory");
	return KW_ERR_NOMEM;
}

static bool set_bound(char **slot, const char *s, size_t len)
{
	char *v;

	if (*slot != NULL)
		return strlen(*slot) == len && memcmp(*slot, s, len) == 0;
	v = strndup(s, len);
	if (v == NULL)
		return false;
	*slot = v;
	return true;
}

/* Match parts[i..] against text; placeholders take at least one byte. */
static bool match_from(const struct vault_seg *seg, size_t i, kw_scope scope,
		       const char *text, char **owner, char **provider)
{
	const struct vault_part *part;
	size_t tlen = strlen(text);

	if (i == seg->nparts)
		return tlen == 0;
	part = &seg->parts[i];
	if (part->kind == VP_TEXT)
		return tlen >= part->len &&
		       memcmp(text, part->text, part->len) == 0 &&
		       match_from(seg, i + 1, scope, text + part->len, owner,
				  provider);
	if (part->kind == VP_SCOPE) {
		const char *w = kw_scope_name(scope);

		return strncmp(text, w, strlen(w)) == 0 &&
		       match_from(seg, i + 1, scope, text + strlen(w), owner,
				  provider);
	}
	for (size_t n = 1; n <= tlen; n++) {
		char **slot = part->kind == VP_OWNER ? owner : provider;
		char *before = *slot != NULL ? strdup(*slot) : NULL;
		bool had = *slot != NULL;

		if (had && before == NULL)
			return false;
		if (set_bound(slot, text, n) &&
		    match_from(seg, i + 1, scope, text + n, owner, provider)) {
			free(before);
			return true;
		}
		if (!had) {
			free(*slot);
			*slot = NULL;
		}
		free(before);
	}
	return false;
}

bool vault_seg_match(const struct vault_seg *seg, kw_scope scope,
		     const char *text, char **owner, char **provider)
{
	return fits_segment(text) &&
	       match_from(seg, 0, scope, text, owner, provider);
}

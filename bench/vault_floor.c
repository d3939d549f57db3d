/*
 * vault_floor.c - the floor under a vault backend's miss: one libcurl GET
 * of a Vault path on an easy handle whose connection is already open and
 * kept alive, with the options and headers the vault module sends
 * (X-Vault-Token, X-Vault-Request; peer and host verified against the CA
 * file), the answer read into a buffer, and nothing else: no JSON parsed,
 * no secure memory, no chain.
 *
 *     vault_floor -u URL -T TOKEN_FILE -C CA_FILE -w WANT_FILE [-k OPS]
 *                 [-r REPS]
 *
 * URL is the whole URL of the secret (https://127.0.0.1:PORT/v1/...).
 * The token is the first line of TOKEN_FILE (never in argv); WANT_FILE
 * holds the key the answer must contain, checked in one answer in 1024.
 * Every answer must be HTTP 200.  Prints one JSON line: ns per GET for
 * each rep, and how many connections libcurl opened in the timed reps
 * (0 when the connection was kept alive).
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "benchutil.h"

static const char *prog = "vault_floor";

struct body {
	char *data;
	size_t len, cap;
};

static size_t write_body(char *data, size_t size, size_t n, void *arg)
{
	struct body *b = arg;
	size_t add = size * n;

	if (b->len + add + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		char *grown;

		while (cap < b->len + add + 1)
			cap *= 2;
		grown = realloc(b->data, cap);
		if (grown == NULL)
			return 0;
		b->data = grown;
		b->cap = cap;
	}
	memcpy(b->data + b->len, data, add);
	b->len += add;
	b->data[b->len] = '\0';
	return add;
}

/* The first line of a file, into a malloc'd string; NULL on failure. */
static char *first_line(const char *path)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	FILE *f = fopen(path, "r");

	if (f == NULL)
		return NULL;
	n = getline(&line, &cap, f);
	fclose(f);
	if (n <= 0) {
		free(line);
		return NULL;
	}
	line[strcspn(line, "\r\n")] = '\0';
	return line;
}

static void usage(void)
{
	fprintf(stderr, "usage: %s -u URL -T TOKEN_FILE -C CA_FILE -w WANT_FILE "
		"[-k OPS] [-r REPS]\n", prog);
	exit(2);
}

int main(int argc, char **argv)
{
	const char *url = NULL, *token_file = NULL, *ca = NULL;
	const char *want_file = NULL;
	uint64_t ops = 1000;
	int reps = 5, c, ret = 1;
	char *token = NULL, *want = NULL, *hdr = NULL;
	struct curl_slist *headers = NULL, *more;
	struct body b = { 0 };
	long connects = 0;
	double *ns = NULL;
	CURL *h = NULL;

	while ((c = getopt(argc, argv, "u:T:C:w:k:r:")) != -1) {
		switch (c) {
		case 'u':
			url = optarg;
			break;
		case 'T':
			token_file = optarg;
			break;
		case 'C':
			ca = optarg;
			break;
		case 'w':
			want_file = optarg;
			break;
		case 'k':
			ops = bu_count(prog, "-k", optarg);
			break;
		case 'r':
			reps = (int)bu_count(prog, "-r", optarg);
			break;
		default:
			usage();
		}
	}
	if (url == NULL || token_file == NULL || ca == NULL ||
	    want_file == NULL || ops == 0 || reps <= 0 || optind != argc)
		usage();
	token = first_line(token_file);
	want = first_line(want_file);
	if (token == NULL || want == NULL || want[0] == '\0') {
		fprintf(stderr, "%s: cannot read the first line of %s; write "
			"the token and the expected key there\n", prog,
			token == NULL ? token_file : want_file);
		goto out;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK ||
	    (h = curl_easy_init()) == NULL ||
	    asprintf(&hdr, "X-Vault-Token: %s", token) < 0) {
		fprintf(stderr, "%s: cannot set up libcurl\n", prog);
		goto out;
	}
	more = curl_slist_append(headers, "X-Vault-Request: true");
	if (more != NULL)
		headers = more;
	more = more ? curl_slist_append(headers, hdr) : NULL;
	ns = calloc((size_t)reps, sizeof(*ns));
	if (more == NULL || ns == NULL) {
		fprintf(stderr, "%s: out of memory\n", prog);
		goto out;
	}
	/* As backends/vault/http.c sets up its handles. */
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http");
	curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(h, CURLOPT_CAINFO, ca);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);

	/* rep -1 is the untimed warm-up; it opens the connection. */
	for (int rep = -1; rep < reps; rep++) {
		uint64_t n = rep < 0 ? ops / 4 + 1 : ops, t0 = bu_now_ns();

		for (uint64_t k = 0; k < n; k++) {
			long status = 0, opened = 0;
			CURLcode rc;

			b.len = 0;
			rc = curl_easy_perform(h);
			if (rc != CURLE_OK) {
				fprintf(stderr, "%s: GET %s: %s\n", prog, url,
					curl_easy_strerror(rc));
				goto out;
			}
			curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
			curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &opened);
			if (rep >= 0)
				connects += opened;
			if (status != 200 || ((k & 1023) == 0 &&
			    (b.data == NULL || strstr(b.data, want) == NULL))) {
				fprintf(stderr, "%s: GET %s: HTTP %ld%s\n", prog,
					url, status, status == 200 ?
					", without the expected key" : "");
				goto out;
			}
		}
		if (rep >= 0)
			ns[rep] = (double)(bu_now_ns() - t0) / (double)n;
	}
	printf("{\"bench\": \"vault_floor\", \"ops\": %" PRIu64 ", "
	       "\"connects\": %ld, ", ops, connects);
	bu_json_list(stdout, "ns_per_op", ns, (size_t)reps);
	printf("}\n");
	ret = 0;
out:
	if (h != NULL)
		curl_easy_cleanup(h);
	curl_slist_free_all(headers);
	if (hdr != NULL)
		explicit_bzero(hdr, strlen(hdr));
	if (token != NULL)
		explicit_bzero(token, strlen(token));
	free(hdr);
	free(token);
	free(want);
	free(b.data);
	free(ns);
	curl_global_cleanup();
	return ret;
}

/*
 * kwt.c - the state of allocation torture (kwt.h): the counter that fails
 * the nth allocation of the armed thread, and the table of every live
 * allocation keyway's code made, by which a torture program finds what a
 * failed call left behind.
 *
 * The table lives in its own mapping and holds addresses XORed with a
 * constant, so that LeakSanitizer, when it runs too, does not take it for
 * a reference to the blocks it tracks.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kwt.h"

#define SLOTS (1u << 20)
#define MASK ((uintptr_t)0xa5c3f00d5a3c0ff1ull)

/* What an allocation was, kept by value: the module whose wrapper named
 * it may be unloaded before the allocation is reported. */
struct slot {
	uintptr_t key; /* address ^ MASK; 0: empty */
	size_t size;
	char what[20];
	unsigned file;         /* index in files[] of the caller's object */
	unsigned long offset;  /* the caller's offset in it */
	unsigned long epoch;
};

#define NFILES 64
static char *files[NFILES];

static __thread bool armed;
static __thread unsigned long count, nth;
static __thread bool failed;
static __thread const char *failed_what;
static __thread char failed_what_copy[20];
static __thread char failed_where[512];

/*
 * A whole process, as keywayd, is tortured without a call to arm:
 * KWT_PROCESS_FAIL_AT=N (0: count only) counts, in one counter, the
 * allocations of every thread but the main one and those libkeyway
 * starts itself (kwt_quiet_thread()): the threads of libmicrohttpd that
 * serve the requests.  At exit, KWT_REPORT gets "counted C", "failed 0|1"
 * and "live L" lines and the live allocations those threads made.
 */
static bool process_mode;
static atomic_ulong process_count;
static unsigned long process_nth;
static atomic_bool process_failed;
static const char *report_path;
static __thread bool quiet;
static char process_where[600];

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct slot *table;
static unsigned long epoch;
static size_t used;

void kwt_arm(unsigned long n)
{
	count = 0;
	nth = n;
	failed = false;
	failed_what = NULL;
	armed = true;
}

unsigned long kwt_disarm(void)
{
	armed = false;
	return count;
}

bool kwt_failed(void)
{
	return failed;
}

const char *kwt_failed_what(void)
{
	return failed_what != NULL ? failed_what : "";
}

const char *kwt_failed_where(void)
{
	return failed ? failed_where : "";
}

static void describe(void *pc, char *buf, size_t len);

void kwt_quiet_thread(void)
{
	quiet = true;
}

static bool process_thread(void)
{
	return process_mode && !quiet && gettid() != getpid();
}

bool kwt_fail_now(const char *what, void *caller)
{
	if (process_thread()) {
		if (atomic_fetch_add(&process_count, 1) + 1 != process_nth)
			return false;
		atomic_store(&process_failed, true);
		snprintf(process_where, sizeof(process_where), "%s at ", what);
		describe(caller, process_where + strlen(process_where),
			 sizeof(process_where) - strlen(process_where));
		errno = ENOMEM;
		return true;
	}
	if (!armed)
		return false;
	if (++count != nth)
		return false;
	failed = true;
	snprintf(failed_what_copy, sizeof(failed_what_copy), "%s", what);
	failed_what = failed_what_copy;
	/* Now: the module the caller is in may be unloaded by the time the
	 * failure is reported. */
	describe(caller, failed_where, sizeof(failed_where));
	errno = ENOMEM;
	return true;
}

static size_t hash(uintptr_t k)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdull;
	k ^= k >> 33;
	return (size_t)k & (SLOTS - 1);
}

/* Called with lock held. */
static bool table_ready(void)
{
	if (table != NULL)
		return true;
	table = mmap(NULL, SLOTS * sizeof(*table), PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (table == MAP_FAILED) {
		table = NULL;
		return false;
	}
	return true;
}

/*
 * The file the object at pc was loaded from, into buf.  keyway loads a
 * module through /proc/self/fd/N, the name dladdr() gives: the mapping
 * in /proc/self/maps names the file itself.
 */
static void object_path(void *pc, const char *name, char *buf, size_t len)
{
	unsigned long lo, hi, at = (unsigned long)pc;
	char line[1024], path[900];
	FILE *f;

	snprintf(buf, len, "%s", name);
	if (strncmp(name, "/proc/self/fd/", 14) != 0 ||
	    (f = fopen("/proc/self/maps", "re")) == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %899s", &lo, &hi,
			   path) == 3 && lo <= at && at < hi) {
			snprintf(buf, len, "%s", path);
			break;
		}
	fclose(f);
}

static void describe(void *pc, char *buf, size_t len)
{
	Dl_info info;
	char path[900];

	if (dladdr(pc, &info) == 0 || info.dli_fname == NULL) {
		snprintf(buf, len, "%p", pc);
		return;
	}
	object_path(pc, info.dli_fname, path, sizeof(path));
	snprintf(buf, len, "%s+0x%lx", path,
		 (unsigned long)((char *)pc - (char *)info.dli_fbase));
}

/* The index of the object code at pc is in; called with lock held. */
static unsigned file_of(void *pc, unsigned long *offset)
{
	static char last_name[900];
	static unsigned last = NFILES;
	char path[900];
	Dl_info info;
	unsigned i;

	*offset = (unsigned long)pc;
	if (dladdr(pc, &info) == 0 || info.dli_fname == NULL)
		return NFILES;
	*offset = (unsigned long)((char *)pc - (char *)info.dli_fbase);
	if (last < NFILES && strcmp(last_name, info.dli_fname) == 0)
		return last;
	object_path(pc, info.dli_fname, path, sizeof(path));
	for (i = 0; i < NFILES && files[i] != NULL; i++)
		if (strcmp(files[i], path) == 0)
			break;
	if (i < NFILES && files[i] == NULL &&
	    (files[i] = strdup(path)) == NULL)
		return NFILES;
	if (i == NFILES)
		return NFILES;
	snprintf(last_name, sizeof(last_name), "%s", info.dli_fname);
	last = i;
	return i;
}

void kwt_track(void *p, size_t n, const char *what, void *caller)
{
	uintptr_t k = (uintptr_t)p ^ MASK;
	unsigned long offset;
	unsigned file;
	size_t i;

	if (p == NULL)
		return;
	pthread_mutex_lock(&lock);
	file = file_of(caller, &offset);
	if (!table_ready() || used >= SLOTS / 2) {
		pthread_mutex_unlock(&lock);
		return;
	}
	for (i = hash(k); table[i].key != 0 && table[i].key != k;
	     i = (i + 1) & (SLOTS - 1))
		;
	if (table[i].key == 0)
		used++;
	table[i] = (struct slot){ .key = k, .size = n, .file = file,
				  .offset = offset,
				  .epoch = process_mode ?
					   (unsigned long)process_thread() :
					   epoch };
	snprintf(table[i].what, sizeof(table[i].what), "%s", what);
	pthread_mutex_unlock(&lock);
}

void kwt_untrack(void *p)
{
	uintptr_t k = (uintptr_t)p ^ MASK;
	size_t i, j;

	if (p == NULL)
		return;
	pthread_mutex_lock(&lock);
	if (table == NULL) {
		pthread_mutex_unlock(&lock);
		return;
	}
	for (i = hash(k); table[i].key != 0 && table[i].key != k;
	     i = (i + 1) & (SLOTS - 1))
		;
	if (table[i].key == 0) {
		pthread_mutex_unlock(&lock);
		return; /* not ours: made by a library and freed by keyway */
	}
	/* Linear probing: shift back what follows, so no tombstones. */
	table[i].key = 0;
	used--;
	for (j = (i + 1) & (SLOTS - 1); table[j].key != 0;
	     j = (j + 1) & (SLOTS - 1)) {
		size_t h = hash(table[j].key);

		if ((j > i && (h <= i || h > j)) ||
		    (j < i && (h <= i && h > j))) {
			table[i] = table[j];
			table[j].key = 0;
			i = j;
		}
	}
	pthread_mutex_unlock(&lock);
}

void kwt_epoch(void)
{
	pthread_mutex_lock(&lock);
	epoch++;
	pthread_mutex_unlock(&lock);
}

size_t kwt_live(char *buf, size_t len)
{
	size_t n = 0, off = 0;

	if (len > 0)
		buf[0] = '\0';
	pthread_mutex_lock(&lock);
	for (size_t i = 0; table != NULL && i < SLOTS; i++) {
		struct slot *s = &table[i];
		int w;

		if (s->key == 0 || s->epoch != epoch)
			continue;
		if (n++ >= 8 || off >= len)
			continue;
		w = snprintf(buf + off, len - off,
			     "#   %s of %zu bytes from %s+0x%lx\n", s->what,
			     s->size, s->file < NFILES ? files[s->file] : "?",
			     s->offset);
		if (w > 0)
			off += (size_t)w;
	}
	pthread_mutex_unlock(&lock);
	return n;
}

static void process_report(void)
{
	char live[4096];
	size_t n;
	FILE *f;

	epoch = 1; /* what the served threads allocated */
	n = kwt_live(live, sizeof(live));
	if (report_path == NULL || (f = fopen(report_path, "we")) == NULL)
		return;
	fprintf(f, "counted %lu\nfailed %d\nwhere %s\nlive %zu\n%s",
		atomic_load(&process_count), (int)atomic_load(&process_failed),
		process_where, n, live);
	fclose(f);
}

__attribute__((constructor)) static void process_start(void)
{
	const char *at = getenv("KWT_PROCESS_FAIL_AT");

	if (at == NULL || *at == '\0')
		return;
	process_nth = strtoul(at, NULL, 10);
	report_path = getenv("KWT_REPORT");
	process_mode = true;
	atexit(process_report);
}

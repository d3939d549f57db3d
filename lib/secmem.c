/*
 * secmem.c - guarded memory for secrets.
 *
 * sodium_malloc() gives every allocation its own guard pages, which costs an
 * mmap, several mprotect calls and an munmap per secret: too slow for a
 * resolver that hands out hundreds of thousands of keys a second.  Small
 * secrets therefore come from slabs of pages that are locked (mlock), kept
 * out of core dumps (MADV_DONTDUMP) and fenced by PROT_NONE guard pages;
 * a slot is wiped when it is freed and again before it is reused.  Larger
 * allocations go to sodium_malloc().
 */
#include "config.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <sodium.h>

#include "secmem.h"

#define SLAB_DATA (64 * 1024)
#define NCLASSES 7
#define MIN_SLOT 32 /* NCLASSES classes: 32 .. 2048 bytes */
_Static_assert((MIN_SLOT << (NCLASSES - 1)) <= SLAB_DATA,
	       "a slab holds at least one slot of the largest class");

struct free_slot {
	struct free_slot *next;
};

struct size_class {
	pthread_mutex_t lock;
	struct free_slot *free;
};

static struct size_class classes[NCLASSES] = {
	[0 ... NCLASSES - 1] = { PTHREAD_MUTEX_INITIALIZER, NULL }
};

void kwi_secmem_lock_all(void)
{
	for (int c = 0; c < NCLASSES; c++)
		pthread_mutex_lock(&classes[c].lock);
}

void kwi_secmem_unlock_all(void)
{
	for (int c = NCLASSES - 1; c >= 0; c--)
		pthread_mutex_unlock(&classes[c].lock);
}

void kwi_wipe(void *p, size_t len)
{
	if (p != NULL && len > 0)
		sodium_memzero(p, len);
}

static int class_of(size_t len)
{
	size_t slot = MIN_SLOT;

	for (int c = 0; c < NCLASSES; c++, slot <<= 1)
		if (len <= slot)
			return c;
	return -1;
}

static size_t slot_size(int c)
{
	return (size_t)MIN_SLOT << c;
}

/* Map one slab and thread its slots onto the class's free list.  Called
 * with the class lock held. */
static bool slab_grow(struct size_class *sc, size_t slot)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t total = SLAB_DATA + 2 * page;
	unsigned char *base, *data;

	base = mmap(NULL, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		    0);
	if (base == MAP_FAILED)
		return false;
	data = base + page;
	if (mprotect(data, SLAB_DATA, PROT_READ | PROT_WRITE) != 0) {
		munmap(base, total);
		return false;
	}
#ifdef MADV_DONTDUMP
	(void)madvise(data, SLAB_DATA, MADV_DONTDUMP);
#endif
	/*
	 * Locking can fail under a small RLIMIT_MEMLOCK; the memory is still
	 * excluded from core dumps and wiped, as libsodium does in that case.
	 */
	(void)mlock(data, SLAB_DATA);

	/* Slabs live for the life of the process: secrets may outlive the
	 * kw_ctx that produced them. */
	for (size_t off = SLAB_DATA; off >= slot; off -= slot) {
		struct free_slot *fs = (struct free_slot *)(data + off - slot);

		fs->next = sc->free;
		sc->free = fs;
	}
	return sc->free != NULL;
}

void *kwi_secure_alloc(size_t len)
{
	struct size_class *sc;
	struct free_slot *fs;
	int c = class_of(len);

	if (c < 0) {
		/* sodium_malloc() ends the block against its guard page, so
		 * only a multiple of 16 comes back aligned for a struct. */
		void *p = sodium_malloc((len + 15) & ~(size_t)15);

		if (p != NULL)
			memset(p, 0, len);
		return p;
	}

	sc = &classes[c];
	pthread_mutex_lock(&sc->lock);
	if (sc->free == NULL && !slab_grow(sc, slot_size(c))) {
		pthread_mutex_unlock(&sc->lock);
		return NULL;
	}
	fs = sc->free;
	sc->free = fs->next;
	pthread_mutex_unlock(&sc->lock);

	fs->next = NULL;
	return fs;
}

void kwi_secure_free(void *p, size_t len)
{
	struct size_class *sc;
	struct free_slot *fs = p;
	int c;

	if (p == NULL)
		return;
	c = class_of(len);
	if (c < 0) {
		sodium_free(p); /* wipes */
		return;
	}
	sodium_memzero(p, slot_size(c));

	sc = &classes[c];
	pthread_mutex_lock(&sc->lock);
	fs->next = sc->free;
	sc->free = fs;
	pthread_mutex_unlock(&sc->lock);
}

/*
 * conformance.c - keyway-conformance(1): load a module as keyway does and
 * check that it keeps the contract of <keyway/module.h>.
 *
 *     keyway-conformance ./kw_mystore.so --config my.conf [--backend NAME]
 *
 * The descriptor is read with dlopen() (it is public: struct kw_module);
 * everything else goes through libkeyway's own API on a copy of the
 * configuration (next to it, so that relative paths mean the same) that
 * adds a chain of the one backend, sends the modules' log lines to stderr,
 * which is captured, and, for the settings checks, changes the backend's
 * settings.  Each check prints one line, "ok WHAT" or "FAIL WHAT — FIX".
 *
 * The module runs in a child process, never in the first one: that one
 * waits for it, turns a crash or a check that does not end into a FAIL
 * line naming the check, and removes every file the child made, also when
 * it is killed itself.  Exit status 0 when every check passes, 1 when one
 * fails, 2 on a usage error, 3 when the module crashed or hung (the checks
 * after it did not run).
 */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libconfig.h>
#include <limits.h>
#include <link.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <keyway/keyway.h>
#include <keyway/module.h>

#define CHAIN "conformance"
#define MAX_PROVIDERS 16
#define MAX_SECRETS 64

/* What an answer of the module is expected to be. */
struct expect {
	const char *provider;
	kw_status status;
};

static struct {
	const char *module;   /* the .so given */
	const char *config;   /* --config */
	const char *backend;  /* --backend, or found in the config */
	bool ledger;          /* the instance is keyway.ledger */
	const char *user, *org;
	int threads, lookups, cycles, timeout;
	struct expect expect[MAX_PROVIDERS];
	size_t nexpect;
	const struct kw_module *desc;
	void *handle;
	kw_scope scope;
} opt = {
	.user = "kwconf-user",
	.org = "kwconf-org",
	.threads = 8,
	.lookups = 200,
	.cycles = 16,
	.timeout = 60,
};

/*
 * What the child shares with the process that waits for it: the check it
 * is running (and what it was doing in it), how many failed, and every
 * file it made, to remove when it cannot.
 */
#define MAX_TEMPS 8
static struct shared {
	unsigned long seq; /* bumped by every begin() */
	int failures;
	int done;          /* the checks ran to their end */
	char *log;         /* the temps slot of what stderr took */
	char check[200];
	char doing[200];
	char temps[MAX_TEMPS][PATH_MAX];
} *sh;

/* A ledger is checked through a backend of its own with a quota. */
#define LEDGER_LIMIT 40
#define LEDGER_VAR "KEYWAY_CONFORMANCE_LEDGER_KEY"
static char qbackend[64];

/* The module stays loaded after dlclose(): this program keeps it, so that
 * valgrind and LeakSanitizer name its frames. */
static bool resident;

static int failures;
static int real_stderr = -1;
static char *logpath; /* a temp_slot() */

/* Every value a lookup handed out, searched for in every message. */
static char *secrets[MAX_SECRETS];
static size_t nsecrets;

/* Every message keyway or the module wrote, checked at the end. */
struct msg {
	char *text;
	char *what;
};
static struct msg *msgs;
static size_t nmsgs;

static void out(bool ok, const char *what, const char *fixfmt, ...)
	KW_PRINTF(3, 4);

static void out(bool ok, const char *what, const char *fixfmt, ...)
{
	va_list ap;

	if (ok) {
		printf("ok %s\n", what);
		fflush(stdout);
		return;
	}
	failures++;
	__atomic_store_n(&sh->failures, failures, __ATOMIC_SEQ_CST);
	printf("FAIL %s — ", what);
	va_start(ap, fixfmt);
	vprintf(fixfmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

static void skip(const char *what, const char *why)
{
	printf("skip %s — %s\n", what, why);
	fflush(stdout);
}

static void note(const char *fmt, ...) KW_PRINTF(1, 2);

static void note(const char *fmt, ...)
{
	va_list ap;

	printf("note: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

/*
 * The check about to run the module, for the line the waiting process
 * prints if it crashes or does not end; doing (a format, or NULL) says
 * what it was asking.
 */
static void begin(const char *what, const char *doing, ...) KW_PRINTF(2, 3);

static void begin(const char *what, const char *doing, ...)
{
	va_list ap;

	snprintf(sh->check, sizeof(sh->check), "%s", what);
	sh->doing[0] = '\0';
	if (doing != NULL) {
		va_start(ap, doing);
		vsnprintf(sh->doing, sizeof(sh->doing), doing, ap);
		va_end(ap);
	}
	__atomic_add_fetch(&sh->seq, 1, __ATOMIC_SEQ_CST);
}

/* A slot for a file the child makes; NULL when all are taken. */
static char *temp_slot(void)
{
	for (size_t i = 0; i < MAX_TEMPS; i++)
		if (sh->temps[i][0] == '\0')
			return sh->temps[i];
	return NULL;
}

/* Remove a file made in a temp_slot() and free the slot. */
static void temp_drop(char *path)
{
	if (path == NULL || path[0] == '\0')
		return;
	unlink(path);
	path[0] = '\0';
}

/* Keep a message to check for secrets and for being one line. */
static void keep(const char *what, const char *text)
{
	struct msg *m;

	if (text == NULL || *text == '\0')
		return;
	m = realloc(msgs, (nmsgs + 1) * sizeof(*m));
	if (m == NULL)
		return;
	msgs = m;
	msgs[nmsgs].text = strdup(text);
	msgs[nmsgs].what = strdup(what);
	if (msgs[nmsgs].text != NULL && msgs[nmsgs].what != NULL)
		nmsgs++;
}

static void keep_secret(const char *value)
{
	for (size_t i = 0; i < nsecrets; i++)
		if (strcmp(secrets[i], value) == 0)
			return;
	if (nsecrets < MAX_SECRETS && (secrets[nsecrets] = strdup(value)))
		nsecrets++;
}

static const char *status_word(kw_status st)
{
	switch (st) {
	case KW_OK:
		return "found";
	case KW_ERR_NOTFOUND:
		return "notfound";
	case KW_ERR_DENIED:
		return "denied";
	case KW_ERR_UNAVAIL:
		return "unavail";
	default:
		return "error";
	}
}

static bool is_error(kw_status st)
{
	return st != KW_OK && st != KW_ERR_NOTFOUND && st != KW_ERR_DENIED &&
	       st != KW_ERR_UNAVAIL;
}

/* ---- the descriptor ---- */

#define DESC_HAS(d, field) \
	((d)->size >= offsetof(struct kw_module, field) + sizeof((d)->field))
#define OP(d, field) (DESC_HAS(d, field) ? (d)->field : NULL)

static bool one_line(const char *s)
{
	if (s == NULL || *s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

/* A capability and the operations that go with it, both ways. */
static void check_cap(const struct kw_module *d, unsigned cap,
		      const char *capname, bool has_ops, bool any_op,
		      const char *ops)
{
	char what[160];
	bool claims = (d->caps & cap) != 0;

	snprintf(what, sizeof(what), "capability %s matches its operations",
		 capname);
	if (claims && !has_ops)
		out(false, what,
		    "the descriptor claims %s but does not set %s: set them, "
		    "or drop %s from .caps",
		    capname, ops, capname);
	else if (!claims && any_op)
		out(false, what,
		    "the descriptor sets %s but does not claim %s: add %s to "
		    ".caps, or drop the operations (the host never calls "
		    "them)",
		    ops, capname, capname);
	else
		out(true, what, " ");
}

/*
 * The libraries the module brought in stay loaded (a library such as
 * libsqlite3 may keep some memory for as long as it is loaded, by design),
 * so that the open and close cycles measure the module alone.
 */
#define MAX_OBJECTS 256
static char *objects[MAX_OBJECTS];
static size_t nobjects;

static int object_seen(struct dl_phdr_info *info, size_t size, void *arg)
{
	bool pin = *(bool *)arg;
	size_t i;

	(void)size;
	if (info->dlpi_name == NULL || info->dlpi_name[0] != '/')
		return 0;
	for (i = 0; i < nobjects; i++)
		if (strcmp(objects[i], info->dlpi_name) == 0)
			return 0;
	if (nobjects == MAX_OBJECTS)
		return 0;
	objects[nobjects] = strdup(info->dlpi_name);
	if (objects[nobjects] == NULL)
		return 0;
	/* A dependency of the module, not the module itself. */
	if (pin && strcmp(objects[nobjects], opt.module) != 0)
		/* The handle is never closed: that is the pin. */
		/* cppcheck-suppress leakReturnValNotUsed */
		(void)dlopen(objects[nobjects], RTLD_NOW | RTLD_LOCAL);
	nobjects++;
	return 0;
}

static void note_objects(bool pin)
{
	dl_iterate_phdr(object_seen, &pin);
}

/*
 * Keep what the checks need of the descriptor (its operations only as set
 * or not).  The module itself stays loaded, held by this program's handle:
 * kw_close() does not unload it, so that valgrind and LeakSanitizer, which
 * report leaks at exit, can still name its frames.
 */
static bool copy_descriptor(const struct kw_module *d)
{
	static struct kw_module copy;
	kw_setting_spec *settings;
	size_t n = 0, len = d->size < sizeof(copy) ? d->size : sizeof(copy);

	memcpy(&copy, d, len);
	copy.size = (uint32_t)len;
	copy.name = strdup(d->name != NULL ? d->name : "");
	for (const kw_setting_spec *s = d->settings; s && s->name; s++)
		n++;
	settings = calloc(n + 1, sizeof(*settings));
	if (copy.name == NULL || settings == NULL)
		goto nomem;
	for (size_t i = 0; i < n; i++) {
		settings[i] = d->settings[i];
		settings[i].name = strdup(d->settings[i].name);
		if (settings[i].name == NULL)
			goto nomem;
	}
	copy.settings = settings;
	copy.description = NULL;
	opt.desc = &copy;
	note_objects(true);
	/* opt.handle is never closed: that is what keeps the module. */
	resident = true;
	return true;
nomem:
	for (size_t i = 0; settings != NULL && i < n; i++)
		free((char *)settings[i].name);
	free(settings);
	free((char *)copy.name);
	copy.name = NULL;
	return false;
}

static bool check_descriptor(void)
{
	const char *base = strrchr(opt.module, '/');
	kw_module_entry_fn *entry;
	const struct kw_module *d;
	char want[256];

	base = base != NULL ? base + 1 : opt.module;
	note_objects(false);
	begin("the module loads", NULL);
	opt.handle = dlopen(opt.module, RTLD_NOW | RTLD_LOCAL);
	if (opt.handle == NULL) {
		out(false, "the module loads",
		    "dlopen says: %s; link every library it needs and leave "
		    "no symbol undefined (-Wl,-z,defs)",
		    dlerror());
		return false;
	}
	out(true, "the module loads", " ");
	begin("entry point " KW_MODULE_ENTRY_SYMBOL, NULL);
	*(void **)&entry = dlsym(opt.handle, KW_MODULE_ENTRY_SYMBOL);
	if (entry == NULL) {
		out(false, "entry point " KW_MODULE_ENTRY_SYMBOL,
		    "%s exports no %s: end the module with "
		    "KW_MODULE_EXPORT(descriptor)",
		    base, KW_MODULE_ENTRY_SYMBOL);
		return false;
	}
	d = entry();
	if (d == NULL) {
		out(false, "entry point " KW_MODULE_ENTRY_SYMBOL,
		    "it returns NULL: return the module's descriptor");
		return false;
	}
	out(true, "entry point " KW_MODULE_ENTRY_SYMBOL, " ");
	if (d->abi != KW_MODULE_ABI) {
		out(false, "ABI handshake",
		    "the descriptor says ABI %u, this keyway serves ABI %u: "
		    "start the descriptor with KW_MODULE_HEADER and rebuild "
		    "against this keyway's module.h",
		    (unsigned)d->abi, (unsigned)KW_MODULE_ABI);
		return false;
	}
	if (!DESC_HAS(d, settings)) {
		out(false, "ABI handshake",
		    "the descriptor's size is %u bytes, too short to hold its "
		    "settings: start it with KW_MODULE_HEADER",
		    (unsigned)d->size);
		return false;
	}
	out(true, "ABI handshake", " ");

	/*
	 * What keyway itself refuses fails; what it accepts is noted: it
	 * loads module = "NAME" from kw_NAME.so whatever the descriptor's
	 * name, and never shows the description.
	 */
	snprintf(want, sizeof(want), "kw_%s.so", d->name ? d->name : "");
	if (d->name == NULL)
		out(false, "the descriptor has a name",
		    "set .name to NAME, for a file named kw_NAME.so");
	else if (strcmp(base, want) != 0)
		note("the descriptor's name is \"%s\" but the file is %s: "
		     "keyway loads it, but names it \"%s\" in its messages; "
		     "name the file %s or set .name to match it",
		     d->name, base, d->name, want);
	else
		out(true, "the name matches the file", " ");
	if (!one_line(d->description))
		note("the description is not one line of printable text: "
		     "keyway does not show it, but write one line for the "
		     "tools that will");
	else
		out(true, "the description is one line", " ");

	check_cap(d, KW_CAP_LOOKUP, "KW_CAP_LOOKUP", OP(d, lookup) != NULL,
		  OP(d, lookup) != NULL || OP(d, walk_end) != NULL,
		  "lookup");
	check_cap(d, KW_CAP_STORE, "KW_CAP_STORE",
		  OP(d, put) && OP(d, set_active) && OP(d, remove),
		  OP(d, put) || OP(d, set_active) || OP(d, remove) ||
			  OP(d, rekey) || OP(d, used) || OP(d, used_batch),
		  "put, set_active and remove");
	check_cap(d, KW_CAP_LIST, "KW_CAP_LIST", OP(d, list) != NULL,
		  OP(d, list) != NULL, "list");
	check_cap(d, KW_CAP_LEDGER, "KW_CAP_LEDGER",
		  OP(d, charge) && OP(d, refund),
		  OP(d, charge) || OP(d, refund) || OP(d, usage),
		  "charge and refund");
	if (OP(d, open) == NULL && OP(d, close) != NULL)
		out(false, "open and close pair up",
		    "close is set without open: the host calls close only "
		    "after a successful open");
	else
		out(true, "open and close pair up", " ");

	for (const kw_setting_spec *s = d->settings; s && s->name; s++) {
		if (strcmp(s->name, "module") == 0 ||
		    strcmp(s->name, "scope") == 0 ||
		    strcmp(s->name, "quota") == 0) {
			out(false, "the settings table",
			    "it lists \"%s\", which the host handles: remove "
			    "it from the table",
			    s->name);
			return copy_descriptor(d);
		}
		if (s->type < KW_SETTING_STRING ||
		    s->type > KW_SETTING_INT_OR_STRING) {
			out(false, "the settings table",
			    "setting \"%s\" has type %d, which is no "
			    "KW_SETTING_*",
			    s->name, (int)s->type);
			return copy_descriptor(d);
		}
	}
	out(true, "the settings table", " ");
	return copy_descriptor(d);
}

/* ---- the configuration, derived ---- */

/* How a derived configuration changes the backend's settings. */
enum mutation { M_NONE, M_UNKNOWN, M_DROP, M_WRONGTYPE };

static config_setting_t *instance_group(config_t *cfg)
{
	if (opt.ledger)
		return config_lookup(cfg, "keyway.ledger");
	config_setting_t *b = config_lookup(cfg, "backends");

	return b != NULL ? config_setting_get_member(b, opt.backend) : NULL;
}

static bool read_config(config_t *cfg, char *why, size_t whylen)
{
	char dir[PATH_MAX];
	char *slash;

	snprintf(dir, sizeof(dir), "%s", opt.config);
	slash = strrchr(dir, '/');
	if (slash != NULL) {
		*slash = '\0';
		config_set_include_dir(cfg, dir);
	}
	if (config_read_file(cfg, opt.config) == CONFIG_TRUE)
		return true;
	snprintf(why, whylen, "%s:%d: %s", opt.config,
		 config_error_line(cfg), config_error_text(cfg));
	return false;
}

/* Add member `name` to group g, a string or an integer. */
static void add_string(config_setting_t *g, const char *name, const char *v)
{
	config_setting_t *s = config_setting_add(g, name, CONFIG_TYPE_STRING);

	if (s != NULL)
		config_setting_set_string(s, v);
}

static void add_int(config_setting_t *g, const char *name, int v)
{
	config_setting_t *s = config_setting_add(g, name, CONFIG_TYPE_INT);

	if (s != NULL)
		config_setting_set_int(s, v);
}

/*
 * Write a copy of the configuration next to it, with the chain CHAIN of the
 * backend alone, the module's log lines on stderr, and `m` applied to
 * setting `name`.  Returns the copy's name, a temp_slot() the caller frees
 * with temp_drop(), or NULL.
 */
static char *derive(enum mutation m, const char *name, kw_setting_type type)
{
	char *path = temp_slot();
	config_t cfg;
	config_setting_t *root, *kw, *s, *g;
	const char *slash = strrchr(opt.config, '/');
	char why[512];
	bool ok = false;
	int fd;

	config_init(&cfg);
	if (path == NULL || !read_config(&cfg, why, sizeof(why)))
		goto out;
	root = config_root_setting(&cfg);
	kw = config_setting_get_member(root, "keyway");
	if (kw == NULL)
		kw = config_setting_add(root, "keyway", CONFIG_TYPE_GROUP);
	if (config_setting_get_member(kw, "log") != NULL)
		config_setting_remove(kw, "log");
	g = config_setting_add(kw, "log", CONFIG_TYPE_GROUP);
	s = config_setting_add(g, "stderr", CONFIG_TYPE_BOOL);
	if (s != NULL)
		config_setting_set_bool(s, 1);
	add_string(g, "level", "debug");
	/* The backend under test alone, in a chain of its own; a ledger
	 * with the backends and chains it counts for. */
	s = opt.ledger ? NULL : config_setting_get_member(root, "backends");
	for (int i = s != NULL ? config_setting_length(s) - 1 : -1; i >= 0;
	     i--)
		if (strcmp(config_setting_name(config_setting_get_elem(
				   s, (unsigned)i)),
			   opt.backend) != 0)
			config_setting_remove_elem(s, (unsigned)i);
	if (!opt.ledger) {
		if (config_setting_get_member(root, "chains") != NULL)
			config_setting_remove(root, "chains");
		s = config_setting_add(root, "chains", CONFIG_TYPE_GROUP);
		s = config_setting_add(s, CHAIN, CONFIG_TYPE_LIST);
		g = config_setting_add(s, NULL, CONFIG_TYPE_GROUP);
		add_string(g, "backend", opt.backend);
		add_string(g, "control", "requisite");
	}
	if (opt.ledger && qbackend[0] != '\0') {
		config_setting_t *b = config_setting_get_member(root,
								"backends");
		config_setting_t *q, *v;

		if (b == NULL)
			b = config_setting_add(root, "backends",
					       CONFIG_TYPE_GROUP);
		g = config_setting_add(b, qbackend, CONFIG_TYPE_GROUP);
		add_string(g, "module", "env");
		v = config_setting_add(g, "vars", CONFIG_TYPE_GROUP);
		add_string(v, "anthropic", LEDGER_VAR);
		q = config_setting_add(g, "quota", CONFIG_TYPE_LIST);
		q = config_setting_add(q, NULL, CONFIG_TYPE_GROUP);
		add_int(q, "limit", LEDGER_LIMIT);
		add_string(q, "period", "day");
		s = config_setting_get_member(root, "chains");
		if (s == NULL)
			s = config_setting_add(root, "chains",
					       CONFIG_TYPE_GROUP);
		if (config_setting_get_member(s, CHAIN) != NULL)
			config_setting_remove(s, CHAIN);
		s = config_setting_add(s, CHAIN, CONFIG_TYPE_LIST);
		g = config_setting_add(s, NULL, CONFIG_TYPE_GROUP);
		add_string(g, "backend", qbackend);
		add_string(g, "control", "requisite");
	}
	g = instance_group(&cfg);
	if (g == NULL)
		goto out;
	switch (m) {
	case M_NONE:
		break;
	case M_UNKNOWN:
		add_string(g, name, "x");
		break;
	case M_DROP:
		config_setting_remove(g, name);
		break;
	case M_WRONGTYPE:
		if (config_setting_get_member(g, name) != NULL)
			config_setting_remove(g, name);
		if (type == KW_SETTING_INT_OR_STRING) {
			s = config_setting_add(g, name, CONFIG_TYPE_BOOL);
			if (s != NULL)
				config_setting_set_bool(s, 1);
		} else if (type == KW_SETTING_INT || type == KW_SETTING_BOOL ||
			   type == KW_SETTING_STRMAP) {
			add_string(g, name, "x");
		} else {
			add_int(g, name, 7);
		}
		break;
	}
	/* Written in the slot itself: the waiting process removes what it
	 * names if this one dies before it does. */
	snprintf(path, PATH_MAX, "%.*s%sconformance-XXXXXX.conf",
		 slash != NULL ? (int)(slash - opt.config + 1) : 0,
		 opt.config, "");
	fd = mkstemps(path, 5);
	if (fd < 0) {
		path[0] = '\0';
		goto out;
	}
	close(fd);
	if (config_write_file(&cfg, path) != CONFIG_TRUE) {
		temp_drop(path);
		goto out;
	}
	ok = true;
out:
	config_destroy(&cfg);
	return ok ? path : NULL;
}

/*
 * The setting of copy c written at line `line`, found by its path in the
 * original o: its line there, and its file (NULL: the main one).  0 when
 * the program added it.
 */
static int match_line(const config_setting_t *c, const config_setting_t *o,
		      int line, const char **file)
{
	if (o == NULL)
		return 0;
	if (config_setting_parent(c) != NULL &&
	    (int)config_setting_source_line(c) == line) {
		*file = config_setting_source_file(o);
		return (int)config_setting_source_line(o);
	}
	if (!config_setting_is_aggregate(c))
		return 0;
	for (int i = 0; i < config_setting_length(c); i++) {
		const config_setting_t *ce =
			config_setting_get_elem(c, (unsigned)i);
		const config_setting_t *oe =
			config_setting_is_group(c)
				? config_setting_get_member(
					  o, config_setting_name(ce))
				: config_setting_get_elem(o, (unsigned)i);
		int n = match_line(ce, oe, line, file);

		if (n != 0)
			return n;
	}
	return 0;
}

/*
 * msg with COPY:LINE, where COPY is a copy this program wrote, put back
 * as FILE:LINE of the user's file (the copy is gone when it is read), or
 * said to be in the copy for a setting the program added.  A static
 * buffer: the checks run on one thread.
 */
static const char *in_file(const char *msg)
{
	static char buf[2048];
	size_t used = 0;

	buf[0] = '\0';
	while (*msg != '\0' && used + 1 < sizeof(buf)) {
		const char *at = NULL, *copy = NULL;
		size_t n = 0;
		char *end;
		long line;

		for (size_t i = 0; i < MAX_TEMPS; i++) {
			const char *t = sh->temps[i], *hit;

			if (t[0] == '\0' || t == sh->log ||
			    (hit = strstr(msg, t)) == NULL)
				continue;
			if (at == NULL || hit < at) {
				at = hit;
				copy = t;
				n = strlen(t);
			}
		}
		if (at == NULL || at[n] != ':' ||
		    (line = strtol(at + n + 1, &end, 10)) <= 0 || *end != ':') {
			snprintf(buf + used, sizeof(buf) - used, "%s", msg);
			break;
		}
		{
			config_t c, o;
			const char *file = NULL;
			char why[512];
			int orig = 0;

			config_init(&c);
			config_init(&o);
			if (config_read_file(&c, copy) == CONFIG_TRUE &&
			    read_config(&o, why, sizeof(why)))
				orig = match_line(config_root_setting(&c),
						  config_root_setting(&o),
						  (int)line, &file);
			/* An @include is named as written: relative to
			 * FILE's directory. */
			if (orig != 0 && file != NULL && file[0] != '/')
				snprintf(buf + used, sizeof(buf) - used,
					 "%.*s%.*s%s:%d", (int)(at - msg), msg,
					 (int)(strrchr(opt.config, '/') -
					       opt.config + 1),
					 opt.config, file, orig);
			else if (orig != 0)
				snprintf(buf + used, sizeof(buf) - used,
					 "%.*s%s:%d", (int)(at - msg), msg,
					 file != NULL ? file : opt.config,
					 orig);
			else
				snprintf(buf + used, sizeof(buf) - used,
					 "%.*s%s (as keyway-conformance "
					 "changed it)",
					 (int)(at - msg), msg, opt.config);
			config_destroy(&c);
			config_destroy(&o);
		}
		used = strlen(buf);
		msg = end;
	}
	return buf;
}

/* Does `module = "mod"` name the module: the NAME of its file kw_NAME.so,
 * or its file's path? */
static bool names_module(const char *mod)
{
	const char *base = strrchr(opt.module, '/') + 1;
	size_t n = strlen(mod);
	char real[PATH_MAX];

	if (mod[0] == '/')
		return realpath(mod, real) != NULL &&
		       strcmp(real, opt.module) == 0;
	/* As the loader finds it: kw_NAME.so, whatever .name says. */
	return strncmp(base, "kw_", 3) == 0 && strncmp(base + 3, mod, n) == 0 &&
	       strcmp(base + 3 + n, ".so") == 0;
}

/* The backend the module serves: --backend, or the one the config names
 * with this module (keyway.ledger when none does). */
static bool find_instance(void)
{
	config_t cfg;
	config_setting_t *b, *l;
	const char *mod, *base;
	char why[512];
	bool ok = false;

	config_init(&cfg);
	if (!read_config(&cfg, why, sizeof(why))) {
		out(false, "the configuration reads", "%s", why);
		goto out;
	}
	b = config_lookup(&cfg, "backends");
	if (opt.backend != NULL) {
		if (b == NULL || config_setting_get_member(b, opt.backend) ==
					 NULL) {
			l = config_lookup(&cfg, "keyway.ledger");
			if (strcmp(opt.backend, "keyway.ledger") == 0 &&
			    l != NULL) {
				opt.ledger = true;
				ok = true;
				goto out;
			}
			out(false, "the backend is in the configuration",
			    "%s has no backend \"%s\": declare it in "
			    "backends, or name one with --backend",
			    opt.config, opt.backend);
			goto out;
		}
		ok = true;
		goto out;
	}
	for (int i = 0; b != NULL && i < config_setting_length(b); i++) {
		config_setting_t *g = config_setting_get_elem(b, (unsigned)i);

		if (config_setting_lookup_string(g, "module", &mod) &&
		    names_module(mod)) {
			opt.backend = strdup(config_setting_name(g));
			ok = true;
			goto out;
		}
	}
	l = config_lookup(&cfg, "keyway.ledger");
	if (l != NULL && config_setting_lookup_string(l, "module", &mod) &&
	    names_module(mod)) {
		opt.ledger = true;
		opt.backend = "keyway.ledger";
		ok = true;
		goto out;
	}
	base = strrchr(opt.module, '/') + 1;
	if (strncmp(base, "kw_", 3) == 0 && strlen(base) > 6 &&
	    strcmp(base + strlen(base) - 3, ".so") == 0)
		out(false, "the backend is in the configuration",
		    "%s has no backend with module = \"%.*s\": declare one, "
		    "or name it with --backend",
		    opt.config, (int)(strlen(base) - 6), base + 3);
	else
		out(false, "the backend is in the configuration",
		    "%s has no backend with module = \"%s\": declare one, "
		    "or name it with --backend",
		    opt.config, opt.module);
out:
	config_destroy(&cfg);
	return ok;
}

/* ---- settings ---- */

static void expect_refusal(const char *what, const char *path,
			   const char *name, const char *fix)
{
	kw_ctx *ctx = NULL;
	kw_status rc;
	const char *e;

	begin(what, NULL);
	rc = kw_open(&ctx, path);
	e = kw_last_error();

	if (rc == KW_OK) {
		kw_close(ctx);
		out(false, what, "%s", fix);
		return;
	}
	keep(what, e);
	if (strstr(e, name) == NULL)
		out(false, what,
		    "the message does not name \"%s\" (\"%s\"): name the "
		    "setting in host->error()",
		    name, in_file(e));
	else
		out(true, what, " ");
}

static void check_settings(void)
{
	char *path, what[256];
	const kw_setting_spec *s;

	if ((path = derive(M_UNKNOWN, "conformance_unknown", 0)) != NULL) {
		expect_refusal("an unknown setting is refused", path,
			       "conformance_unknown",
			       "kw_open() accepted a setting the module does "
			       "not declare");
		temp_drop(path);
	}
	for (s = opt.desc->settings; s != NULL && s->name != NULL; s++) {
		if (s->flags & KW_SETTING_REQUIRED) {
			snprintf(what, sizeof(what),
				 "a missing required setting \"%s\" is "
				 "refused",
				 s->name);
			if ((path = derive(M_DROP, s->name, s->type)) !=
			    NULL) {
				expect_refusal(what, path, s->name,
					       "kw_open() opened the backend "
					       "without it");
				temp_drop(path);
			}
		}
		snprintf(what, sizeof(what),
			 "setting \"%s\" of the wrong type is refused",
			 s->name);
		if ((path = derive(M_WRONGTYPE, s->name, s->type)) != NULL) {
			expect_refusal(what, path, s->name,
				       "kw_open() took it");
			temp_drop(path);
		}
	}
}

/* ---- lookups ---- */

struct answer {
	kw_status status;
	char *value; /* found: a copy, for comparing */
};

static kw_request request_as(const char *provider, const char *user,
			     const char *org)
{
	kw_request req = KW_REQUEST_INIT;

	req.chain = CHAIN;
	req.provider = provider;
	req.user = user;
	req.org = org;
	return req;
}

static kw_request request(const char *provider)
{
	return request_as(provider, opt.user, opt.org);
}

/* Wipe and free a copy of a value. */
static void drop(char *value)
{
	if (value == NULL)
		return;
	explicit_bzero(value, strlen(value));
	free(value);
}

static kw_status resolve_as(kw_ctx *ctx, const char *provider,
			    const char *user, const char *org, char **value)
{
	kw_request req = request_as(provider, user, org);
	kw_secret *s = NULL;
	kw_status rc = kw_resolve(ctx, &req, &s);

	*value = NULL;
	if (rc == KW_OK) {
		*value = strdup(kw_secret_value(s));
		kw_secret_free(s);
	}
	return rc;
}

static kw_status resolve(kw_ctx *ctx, const char *provider, char **value)
{
	return resolve_as(ctx, provider, opt.user, opt.org, value);
}

/* Explain provider; *detail gets the backend's detail (a copy). */
static kw_status explain(kw_ctx *ctx, const char *provider, char **detail)
{
	kw_request req = request(provider);
	kw_trace *t = NULL;
	kw_status rc = kw_explain(ctx, &req, &t), st = KW_ERR_INTERNAL;

	*detail = NULL;
	if (rc != KW_OK) {
		keep("kw_explain()", kw_last_error());
		return rc;
	}
	for (size_t i = 0; i < kw_trace_len(t); i++) {
		const kw_trace_step *step = kw_trace_get(t, i);

		keep("a trace's detail", step->detail);
		if (strcmp(step->backend, opt.backend) == 0) {
			/* The last step of the backend's, when the chain
			 * names it more than once. */
			st = step->status;
			free(*detail);
			*detail = strdup(step->detail);
		}
	}
	keep("a trace's summary", kw_trace_summary(t));
	kw_trace_free(t);
	return st;
}

/*
 * The longest run of a value handed out that text holds, when it is longer
 * than a mask shows: kw_mask() shows at most the first and last four
 * characters of a key, and at most a third of it.  0 when it holds none;
 * *of gets the value's length.
 */
static size_t secret_run(const char *msg, size_t *of)
{
	char *text = strdup(msg), *p;
	size_t best = 0;

	if (text == NULL)
		return 0;
	/* The names of this program's copies are not the module's:
	 * DIR/conformance-XXXXXX.conf, whatever a key has in common with
	 * them. */
	for (p = text; (p = strstr(p, "/conformance-")) != NULL; p++)
		if (strnlen(p, 24) == 24 &&
		    strncmp(p + 19, ".conf", 5) == 0)
			memset(p, ' ', 24);

	for (size_t k = 0; k < nsecrets; k++) {
		const char *v = secrets[k];
		size_t len = strlen(v), min = len / 3 + 1;

		if (min < 9)
			min = 9;
		for (size_t i = 0; i + min <= len; i++) {
			size_t n = min;
			const char *at = memmem(text, strlen(text), v + i, n);

			if (at == NULL)
				continue;
			while (i + n < len && at[n] == v[i + n])
				n++;
			if (n > best) {
				best = n;
				*of = len;
			}
		}
	}
	free(text);
	return best;
}

/* The statuses seen: found, notfound, denied, unavail, error. */
static bool seen[5];
/* The statuses a provider was given for, and the ones that failed. */
static bool given[5], missed[5];

static int status_index(kw_status st)
{
	return st == KW_OK		? 0
	       : st == KW_ERR_NOTFOUND ? 1
	       : st == KW_ERR_DENIED   ? 2
	       : st == KW_ERR_UNAVAIL  ? 3
				       : 4;
}

/*
 * Where the host says it found the module's answer broken (check_answer()
 * in lib/chain.c: found without a key, an empty one, an unknown status),
 * in a detail or an error; NULL when it does not.
 */
static const char *host_refused(const char *detail)
{
	char prefix[160];

	snprintf(prefix, sizeof(prefix), "module \"%s\" answered ",
		 opt.desc->name);
	return detail != NULL ? strstr(detail, prefix) : NULL;
}

/* The providers whose line of check_statuses() failed. */
static bool failed[MAX_PROVIDERS];

static bool add_expect(const char *provider, kw_status st);

static void check_statuses(kw_ctx *ctx, struct answer *ref)
{
	char what[256];

	for (size_t i = 0; i < opt.nexpect; i++)
		given[status_index(opt.expect[i].status)] = true;
	for (size_t i = 0; i < opt.nexpect; i++) {
		const struct expect *x = &opt.expect[i];
		char *value = NULL, *detail = NULL, *said = NULL;
		kw_status rc, ex;
		size_t of = 0;

		snprintf(what, sizeof(what), "%s answers %s", x->provider,
			 status_word(x->status));
		begin(what, "looking up %s", x->provider);
		rc = resolve(ctx, x->provider, &value);
		if (rc != KW_OK) {
			keep("kw_resolve()", kw_last_error());
			said = strdup(kw_last_error());
		}
		ref[i].status = rc;
		ref[i].value = value;
		if (value != NULL)
			keep_secret(value);
		if ((x->status == KW_OK) != (rc == KW_OK) ||
		    (x->status != KW_OK && !is_error(x->status) &&
		     x->status != rc) ||
		    (is_error(x->status) && !is_error(rc))) {
			/* The host's own words for the answer: the trace's
			 * detail, else the error. */
			missed[status_index(x->status)] = true;
			failed[i] = true;
			if (rc != KW_OK)
				(void)explain(ctx, x->provider, &detail);
			if (detail == NULL || *detail == '\0') {
				free(detail);
				detail = said;
				said = NULL;
			}
			if (detail != NULL && *detail != '\0' &&
			    secret_run(detail, &of) == 0)
				out(false, what,
				    "it answered %s (%s: %s): return %s for "
				    "this configuration",
				    status_word(rc), kw_status_str(rc), detail,
				    status_word(x->status));
			else
				out(false, what,
				    "it answered %s (%s): return %s for this "
				    "configuration",
				    status_word(rc), kw_status_str(rc),
				    status_word(x->status));
			free(detail);
			free(said);
			continue;
		}
		free(said);
		ex = explain(ctx, x->provider, &detail);
		if (ex != rc && !(is_error(ex) && is_error(rc))) {
			out(false, what,
			    "kw_explain() saw %s where kw_resolve() saw %s: "
			    "answer the same whether or not KW_QUERY_EXPLAIN "
			    "is set",
			    kw_status_str(ex), kw_status_str(rc));
		} else if (rc != KW_OK && (detail == NULL || *detail == '\0')) {
			out(false, what,
			    "it gave no detail: say why with "
			    "host->reply_detail()");
		} else if (is_error(rc) && host_refused(detail)) {
			/* --error asks for the module's own error, not one
			 * the host made of a broken answer. */
			out(false, what, "%s: answer an error status with "
					 "reply_detail() saying why",
			    detail);
		} else {
			out(true, what, " ");
			seen[status_index(rc)] = true;
		}
		free(detail);
	}
}

/*
 * kw_query's user and org may be NULL (a request that names neither, a
 * backend used by a service): the lookups again without them must not
 * crash, and must answer as the host can take it.
 */
static void check_nulls(kw_ctx *ctx)
{
	static const struct {
		const char *what;
		bool user, org;
	} ways[] = {
		{ "lookups with no user", false, true },
		{ "lookups with no org", true, false },
		{ "lookups with neither user nor org", false, false },
	};

	for (size_t w = 0; w < sizeof(ways) / sizeof(ways[0]); w++) {
		char *bad = NULL;
		const char *badp = NULL;

		for (size_t i = 0; i < opt.nexpect && bad == NULL; i++) {
			const char *p = opt.expect[i].provider;
			char *value = NULL;
			kw_status rc;

			/* Its failure was told once already. */
			if (failed[i])
				continue;
			begin(ways[w].what, "looking up %s", p);
			rc = resolve_as(ctx, p, ways[w].user ? opt.user : NULL,
					ways[w].org ? opt.org : NULL, &value);
			if (value != NULL)
				keep_secret(value);
			drop(value);
			if (rc != KW_OK) {
				keep("kw_resolve()", kw_last_error());
				if (host_refused(kw_last_error())) {
					bad = strdup(host_refused(
						kw_last_error()));
					badp = p;
				}
			}
		}
		if (bad != NULL)
			out(false, ways[w].what,
			    "asked for %s, %s: kw_query's user and org may "
			    "be NULL; answer every request",
			    badp, bad);
		else
			out(true, ways[w].what, " ");
		free(bad);
	}
}

static void check_seen(void)
{
	char what[64], why[160];

	for (int k = 0; k < 5; k++) {
		static const char *const words[] = { "found", "notfound",
						     "denied", "unavail",
						     "error" };
		if (seen[k])
			continue;
		snprintf(what, sizeof(what), "status %s", words[k]);
		if (given[k] && missed[k]) {
			/* Its own line failed above: say no more. */
			snprintf(why, sizeof(why),
				 "the provider given with --%s did not answer "
				 "%s (above)",
				 words[k], words[k]);
			skip(what, why);
		} else if (k < 2 && (opt.desc->caps & KW_CAP_STORE))
			out(false, what,
			    "a key it stored did not resolve, or a removed "
			    "one did not answer notfound (see above)");
		else if (k < 2 && !given[k])
			out(false, what,
			    "no lookup answered %s: give a provider that does "
			    "with --%s PROVIDER (a configuration that "
			    "produces it)",
			    words[k], words[k]);
		else if (given[k])
			skip(what, "its lookup failed another check (above)");
		else {
			snprintf(why, sizeof(why), "no --%s given", words[k]);
			skip(what, why);
		}
	}
}

struct worker {
	pthread_t tid;
	kw_ctx *ctx;
	const struct answer *ref;
	int index;
	int bad;
	char first[256];
};

static void *hammer(void *arg)
{
	struct worker *w = arg;

	for (int i = 0; i < opt.lookups; i++) {
		size_t k = (size_t)(i + w->index) % opt.nexpect;
		char *value = NULL;
		kw_status rc = resolve(w->ctx, opt.expect[k].provider, &value);
		bool same = rc == w->ref[k].status &&
			    (rc != KW_OK ||
			     strcmp(value, w->ref[k].value) == 0);

		if (!same && w->bad++ == 0)
			snprintf(w->first, sizeof(w->first),
				 "%s answered %s%s where one thread got %s",
				 opt.expect[k].provider, kw_status_str(rc),
				 rc == KW_OK ? " with another value" : "",
				 kw_status_str(w->ref[k].status));
		drop(value);
	}
	return NULL;
}

static void check_threads(kw_ctx *ctx, const struct answer *ref)
{
	struct worker *w = calloc((size_t)opt.threads, sizeof(*w));
	char what[128];
	int bad = 0, started = 0;
	const char *first = NULL;

	snprintf(what, sizeof(what), "%d threads × %d lookups agree",
		 opt.threads, opt.lookups);
	if (w == NULL || opt.nexpect == 0) {
		skip(what, "no lookups to make");
		free(w);
		return;
	}
	begin(what, NULL);
	for (int i = 0; i < opt.threads; i++) {
		w[i].ctx = ctx;
		w[i].ref = ref;
		w[i].index = i;
		if (pthread_create(&w[i].tid, NULL, hammer, &w[i]) != 0)
			break;
		started++;
	}
	for (int i = 0; i < started; i++) {
		pthread_join(w[i].tid, NULL);
		bad += w[i].bad;
		if (w[i].bad && first == NULL)
			first = w[i].first;
	}
	if (bad != 0)
		out(false, what,
		    "%d of %d answers differed (%s): lookup() runs on many "
		    "threads at once on one state; keep per-lookup data on "
		    "the stack or guard shared state with a lock",
		    bad, started * opt.lookups, first);
	else
		out(true, what, " ");
	free(w);
	/* Two values are what tells a buffer shared between lookups. */
	for (size_t i = 0; i < opt.nexpect; i++)
		for (size_t k = i + 1; k < opt.nexpect; k++)
			if (ref[i].value != NULL && ref[k].value != NULL &&
			    strcmp(ref[i].value, ref[k].value) != 0)
				return;
	note("fewer than two providers answered found with different values: "
	     "the thread check cannot see lookups that share a buffer; give "
	     "two with --found");
}

/* ---- storing ---- */

struct listing {
	const char *provider;
	const char *owner;
	char masked[KW_MASK_SIZE];
	bool seen;
};

static kw_status list_one(void *arg, const kw_key_info *info)
{
	struct listing *l = arg;

	keep("a listed key's name", info->name);
	if (strcmp(info->provider, l->provider) == 0 &&
	    ((info->owner == NULL && l->owner == NULL) ||
	     (info->owner && l->owner && strcmp(info->owner, l->owner) == 0))) {
		l->seen = true;
		snprintf(l->masked, sizeof(l->masked), "%s", info->masked);
	}
	return KW_OK;
}

static kw_actor st_actor = KW_ACTOR_INIT;
static kw_key_ref st_ref = KW_KEY_REF_INIT;
static char v1[64], v2[64];

#define STEP(what, cond, ...)                                  \
	do {                                                   \
		if (!(cond)) {                                 \
			keep(what, kw_last_error());           \
			out(false, what, __VA_ARGS__);         \
			goto done;                             \
		}                                              \
		out(true, what, " ");                          \
	} while (0)

/* Store a key of the tool's own, resolved as a found key from then on. */
static bool store_plant(kw_ctx *ctx)
{
	unsigned char rnd[12];
	char *value = NULL;
	kw_status rc;
	bool ok = false;
	int fd;

	begin("store round trips", NULL);
	if (!(opt.desc->caps & KW_CAP_STORE) || opt.ledger) {
		skip("store round trips",
		     opt.ledger ? "checked on a backend of the module, not on "
				  "keyway.ledger"
				: "the module does not store keys");
		return false;
	}
	memset(rnd, 0x5a, sizeof(rnd));
	fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		(void)!read(fd, rnd, sizeof(rnd));
		close(fd);
	}
	snprintf(v1, sizeof(v1), "sk-ant-kwconf-");
	snprintf(v2, sizeof(v2), "sk-ant-kwconf-");
	for (size_t i = 0; i < sizeof(rnd); i++) {
		snprintf(v1 + strlen(v1), 3, "%02x", rnd[i]);
		snprintf(v2 + strlen(v2), 3, "%02x", rnd[i] ^ 0xff);
	}
	keep_secret(v1);
	keep_secret(v2);
	st_actor.user = "kwconf-admin";
	st_actor.role = KW_ROLE_SYSADMIN;
	st_ref.backend = opt.backend;
	st_ref.provider = "anthropic";
	st_ref.owner = opt.scope == KW_SCOPE_USER  ? opt.user
		    : opt.scope == KW_SCOPE_ORG ? opt.org
						: NULL;

	/* What a run stopped halfway left. */
	(void)!kw_key_delete(ctx, &st_actor, &st_ref);
	rc = kw_key_put(ctx, &st_actor, &st_ref, v1, strlen(v1), "conformance",
			KW_PUT_CREATE);
	STEP("store: put creates a key", rc == KW_OK,
	     "kw_key_put() failed: %s: %s", kw_status_str(rc),
	     kw_last_error());
	rc = kw_key_put(ctx, &st_actor, &st_ref, v1, strlen(v1), NULL,
			KW_PUT_CREATE);
	keep("put of an existing key", kw_last_error());
	STEP("store: creating it again is KW_ERR_EXISTS", rc == KW_ERR_EXISTS,
	     "it answered %s: put() with KW_PUT_CREATE of an existing key "
	     "returns KW_ERR_EXISTS",
	     kw_status_str(rc));
	rc = resolve(ctx, "anthropic", &value);
	STEP("store: the stored value resolves", rc == KW_OK && value &&
						  strcmp(value, v1) == 0,
	     "kw_resolve() answered %s%s: lookup() must hand back exactly "
	     "what put() stored",
	     kw_status_str(rc), rc == KW_OK ? " with another value" : "");
	seen[0] = true;
	ok = add_expect("anthropic", KW_OK);
done:
	drop(value);
	return ok;
}

/* List, rotate, disable, rekey and remove the key store_plant() made. */
static void store_rest(kw_ctx *ctx)
{
	char mask[KW_MASK_SIZE], *value = NULL;
	struct listing l = { 0 };
	uint64_t count = 0;
	kw_status rc;

	begin("store round trips", NULL);
	if (opt.desc->caps & KW_CAP_LIST) {
		l.provider = "anthropic";
		l.owner = st_ref.owner;
		rc = kw_key_list(ctx, &st_actor, opt.backend, NULL, list_one,
				 &l);
		kw_mask(v1, strlen(v1), mask, sizeof(mask));
		STEP("list: the key is listed, masked",
		     rc == KW_OK && l.seen && strcmp(l.masked, mask) == 0,
		     "kw_key_list() %s: list() reports every record, with "
		     "host->mask() of its value",
		     rc != KW_OK ? kw_status_str(rc)
		     : !l.seen   ? "did not show it"
				 : "showed another mask");
	}
	rc = kw_key_put(ctx, &st_actor, &st_ref, v2, strlen(v2), NULL,
			KW_PUT_ROTATE);
	STEP("store: rotate replaces the value", rc == KW_OK,
	     "kw_key_put(KW_PUT_ROTATE) failed: %s", kw_status_str(rc));
	rc = resolve(ctx, "anthropic", &value);
	STEP("store: the rotated value resolves", rc == KW_OK && value &&
						   strcmp(value, v2) == 0,
	     "kw_resolve() answered %s%s after a rotation",
	     kw_status_str(rc), rc == KW_OK ? " with the old value" : "");
	drop(value);
	value = NULL;
	rc = kw_key_set_active(ctx, &st_actor, &st_ref, 0);
	STEP("store: disable", rc == KW_OK, "set_active() failed: %s",
	     kw_status_str(rc));
	rc = resolve(ctx, "anthropic", &value);
	keep("a disabled key", kw_last_error());
	STEP("store: a disabled key is not handed out", rc != KW_OK,
	     "kw_resolve() handed it out: lookup() must not answer a "
	     "disabled key");
	rc = kw_key_set_active(ctx, &st_actor, &st_ref, 1);
	STEP("store: enable", rc == KW_OK, "set_active() failed: %s",
	     kw_status_str(rc));
	if (OP(opt.desc, rekey) != NULL) {
		rc = kw_rekey(ctx, &st_actor, opt.backend, &count);
		STEP("store: rekey", rc == KW_OK,
		     "kw_rekey() answered %s (%llu keys): rekey() re-seals "
		     "every record",
		     kw_status_str(rc), (unsigned long long)count);
		rc = resolve(ctx, "anthropic", &value);
		STEP("store: the key resolves after rekey",
		     rc == KW_OK && value && strcmp(value, v2) == 0,
		     "kw_resolve() answered %s", kw_status_str(rc));
		drop(value);
		value = NULL;
	}
	rc = kw_key_delete(ctx, &st_actor, &st_ref);
	STEP("store: remove", rc == KW_OK, "kw_key_delete() failed: %s",
	     kw_status_str(rc));
	rc = resolve(ctx, "anthropic", &value);
	keep("a removed key", kw_last_error());
	STEP("store: a removed key is notfound", rc == KW_ERR_NOTFOUND,
	     "kw_resolve() answered %s", kw_status_str(rc));
	seen[1] = true;
	rc = kw_key_delete(ctx, &st_actor, &st_ref);
	keep("remove of a missing key", kw_last_error());
	STEP("store: removing it again is KW_ERR_NOTFOUND",
	     rc == KW_ERR_NOTFOUND,
	     "kw_key_delete() answered %s: remove() of a missing key returns "
	     "KW_ERR_NOTFOUND",
	     kw_status_str(rc));
done:
	drop(value);
	explicit_bzero(v1, sizeof(v1));
	explicit_bzero(v2, sizeof(v2));
}
#undef STEP

/* ---- ledgers ---- */

struct charger {
	pthread_t tid;
	kw_ctx *ctx;
	int n;
	int admitted, denied, other;
};

static void *charge_many(void *arg)
{
	struct charger *c = arg;

	for (int i = 0; i < c->n; i++) {
		char *value = NULL;
		kw_status rc = resolve(c->ctx, "anthropic", &value);

		if (rc == KW_OK)
			c->admitted++;
		else if (rc == KW_ERR_DENIED)
			c->denied++;
		else
			c->other++;
		drop(value);
	}
	return NULL;
}

/*
 * A backend with a quota of LEDGER_LIMIT a day, counted by the ledger under
 * test, asked twice as many times from many threads: exactly the limit is
 * admitted, and a refund gives one back.
 */
static void check_ledger(kw_ctx *ctx)
{
	struct charger *c = calloc((size_t)opt.threads, sizeof(*c));
	int admitted = 1, denied = 0, other = 0, started = 0;
	int total = 2 * LEDGER_LIMIT;
	char what[160], *value = NULL;
	kw_request req = request("anthropic");
	kw_secret *held = NULL;
	kw_status rc;

	snprintf(what, sizeof(what),
		 "ledger: %d threads admit exactly %d of %d requests",
		 opt.threads, LEDGER_LIMIT, total + 1);
	begin(what, NULL);
	rc = kw_resolve(ctx, &req, &held);
	if (rc != KW_OK || c == NULL) {
		keep("a charge", kw_last_error());
		out(false, what, "the first request was not admitted: %s",
		    kw_last_error());
		free(c);
		return;
	}
	for (int i = 0; i < opt.threads; i++) {
		c[i].ctx = ctx;
		c[i].n = total / opt.threads + (i < total % opt.threads);
		if (pthread_create(&c[i].tid, NULL, charge_many, &c[i]) != 0)
			break;
		started++;
	}
	for (int i = 0; i < started; i++) {
		pthread_join(c[i].tid, NULL);
		admitted += c[i].admitted;
		denied += c[i].denied;
		other += c[i].other;
	}
	free(c);
	if (admitted != LEDGER_LIMIT || other != 0)
		out(false, what,
		    "%d were admitted, %d denied, %d failed otherwise: "
		    "charge() must check and count every slot in one atomic "
		    "step, and deny with KW_ERR_DENIED when a slot is full",
		    admitted, denied, other);
	else
		out(true, what, " ");
	rc = kw_secret_report(held, KW_UNUSED);
	kw_secret_free(held);
	rc = rc == KW_OK ? resolve(ctx, "anthropic", &value) : rc;
	drop(value);
	value = NULL;
	out(rc == KW_OK, "ledger: a refund gives the request back",
	    "after kw_secret_report(KW_UNUSED) the next request answered "
	    "%s: refund() counts every slot down",
	    kw_status_str(rc));
	rc = resolve(ctx, "anthropic", &value);
	drop(value);
	keep("a denial", kw_last_error());
	out(rc == KW_ERR_DENIED, "ledger: a full quota denies",
	    "the request past the limit answered %s: charge() returns "
	    "KW_ERR_DENIED when a slot is full",
	    kw_status_str(rc));
}

/* ---- open, check and close ---- */

static void report_line(void *arg, const char *line)
{
	(void)arg;
	keep("kw_check()", line);
	printf("# %s\n", in_file(line));
}

/* Bytes in use on the heap, or 0 when unknown (a sanitizer's heap). */
static size_t heap_used(void)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
	return mallinfo2().uordblks;
#else
	return 0;
#endif
}

/*
 * How many times the log says, from offset `from` on, that close() left
 * guarded memory (lib/host.c), and how many bytes the first time.
 */
static int guarded_left(off_t from, long long *bytes)
{
	FILE *f = fopen(logpath, "r");
	char *line = NULL, *at;
	size_t cap = 0;
	int n = 0;

	*bytes = 0;
	if (f == NULL)
		return 0;
	if (fseeko(f, from, SEEK_SET) == 0)
		while (getline(&line, &cap, f) > 0)
			if ((at = strstr(line, "\" left ")) != NULL &&
			    strstr(at, " bytes of guarded memory ") != NULL &&
			    n++ == 0)
				*bytes = strtoll(at + 7, NULL, 10);
	free(line);
	fclose(f);
	return n;
}

static off_t log_size(void)
{
	struct stat st;

	return stat(logpath, &st) == 0 ? st.st_size : 0;
}

static void check_cycles(const char *path)
{
	size_t before = 0, after = 0;
	char what[128], gwhat[128];
	off_t from = log_size();
	long long bytes;
	int left;
	kw_ctx *ctx;

	snprintf(what, sizeof(what), "%d opens and closes leave no memory",
		 opt.cycles);
	snprintf(gwhat, sizeof(gwhat),
		 "%d opens and closes leave no guarded memory", opt.cycles);
	begin(what, NULL);
	/* The first cycles fill caches (the loader's among them). */
	for (int i = 0; i < 2 * opt.cycles; i++) {
		if (i == opt.cycles)
			before = heap_used();
		if (kw_open(&ctx, path) != KW_OK) {
			out(false, what, "kw_open() failed on cycle %d: %s",
			    i + 1, in_file(kw_last_error()));
			return;
		}
		kw_close(ctx);
	}
	after = heap_used();
	/* Slabs are mapped, not on the heap: the host counts what the
	 * module takes with secure_alloc() in open() and gives back. */
	left = guarded_left(from, &bytes);
	if (left != 0)
		out(false, gwhat,
		    "%d of %d closes left guarded memory (%lld bytes the "
		    "first time): close() must secure_free() everything "
		    "open() took with secure_alloc()",
		    left, 2 * opt.cycles, bytes);
	else
		out(true, gwhat, " ");
	if (before == 0) {
		skip(what, "the heap cannot be measured here (a sanitizer's "
			   "heap reports leaks itself at exit)");
		return;
	}
	/*
	 * The dynamic loader keeps a few bytes of each load; of a module that
	 * stays loaded (as this program keeps it), also each name keyway
	 * loaded it by (a path under /proc/self/fd, new at every kw_open()).
	 */
	if (after > before + (resident ? 128 : 32) * (size_t)opt.cycles)
		out(false, what,
		    "the heap grew by %zu bytes a cycle: close() must free "
		    "everything open() made (run under valgrind or ASan to "
		    "see where it was allocated)",
		    (after - before) / (size_t)opt.cycles);
	else
		out(true, what, " ");
}

/* ---- messages ---- */

static void read_log(void)
{
	FILE *f = fopen(logpath, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	if (f == NULL)
		return;
	while ((n = getline(&line, &cap, f)) > 0) {
		if (line[n - 1] == '\n')
			line[--n] = '\0';
		keep("a log line", line);
	}
	free(line);
	fclose(f);
}

static void check_messages(void)
{
	size_t leaks = 0, split = 0, late = 0, parts = 0, run = 0, of = 0;
	const char *leak_in = NULL, *split_in = NULL, *part_in = NULL;

	read_log();
	for (size_t i = 0; i < nmsgs; i++) {
		if (strstr(msgs[i].text, "called host->error() outside "
					 "open()") != NULL)
			late++;
		size_t k, n, len = 0;

		for (k = 0; k < nsecrets; k++)
			if (strstr(msgs[i].text, secrets[k]) != NULL) {
				if (leaks++ == 0)
					leak_in = msgs[i].what;
				break;
			}
		/* Part of a value, more than a mask would show. */
		if (k == nsecrets && (n = secret_run(msgs[i].text, &len)) &&
		    parts++ == 0) {
			part_in = msgs[i].what;
			run = n;
			of = len;
		}
		if (!one_line(msgs[i].text) && split++ == 0)
			split_in = msgs[i].what;
	}
	if (nsecrets == 0)
		skip("no secret in any message", "no key was handed out");
	else if (leaks != 0)
		out(false, "no secret in any message",
		    "%zu of %zu messages hold a value the module handed out "
		    "(first in %s): never pass a secret to reply_detail(), "
		    "error() or log()",
		    leaks, nmsgs, leak_in);
	else if (parts != 0)
		out(false, "no secret in any message",
		    "%zu of %zu messages hold part of a value the module "
		    "handed out (first in %s: %zu of its %zu characters): "
		    "never pass a secret, or more of it than host->mask() "
		    "shows, to reply_detail(), error() or log()",
		    parts, nmsgs, part_in, run, of);
	else
		out(true, "no secret in any message", " ");
	if (late != 0)
		out(false, "host services are called in their window",
		    "host->error() was called %zu times after open() "
		    "returned, where it does nothing: explain a lookup's "
		    "answer with reply_detail(), report later trouble with "
		    "log()",
		    late);
	else
		out(true, "host services are called in their window", " ");
	if (split != 0)
		out(false, "every message is one line",
		    "%zu messages hold a control character (first in %s): "
		    "write one line, no newline or tab",
		    split, split_in);
	else
		out(true, "every message is one line", " ");
}

/* ---- the command line ---- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: keyway-conformance MODULE.so --config FILE "
		"[--backend NAME]\n"
		"         [--found PROVIDER] [--notfound PROVIDER] "
		"[--denied PROVIDER]\n"
		"         [--unavail PROVIDER] [--error PROVIDER] [--user "
		"USER] [--org ORG]\n"
		"         [--threads N] [--lookups N] [--cycles N] "
		"[--timeout SECONDS]\n");
}

static bool add_expect(const char *provider, kw_status st)
{
	if (opt.nexpect >= MAX_PROVIDERS)
		return false;
	opt.expect[opt.nexpect].provider = provider;
	opt.expect[opt.nexpect++].status = st;
	return true;
}

static bool number(const char *s, int *n)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < 1 || v > 100000)
		return false;
	*n = (int)v;
	return true;
}

/* ---- the process that waits ---- */

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

static void catch_signals(void)
{
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigaction(sigs[i], &sa, NULL);
	/* Output read by a program that stopped reading ends the child,
	 * not this one, which still has files to remove. */
	signal(SIGPIPE, SIG_IGN);
}

static double seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Remove what the child made and did not remove. */
static void remove_temps(void)
{
	for (size_t i = 0; i < MAX_TEMPS; i++)
		if (sh->temps[i][0] != '\0')
			unlink(sh->temps[i]);
}

/*
 * A sanitizer that ended the child reported why on its stderr, which went
 * to the log: show that report (only: the rest is the module's lines).
 */
static void show_report(void)
{
	FILE *f = sh->log != NULL && sh->log[0] != '\0' ? fopen(sh->log, "r")
							: NULL;
	char *line = NULL;
	size_t cap = 0;
	bool on = false;

	if (f == NULL)
		return;
	while (getline(&line, &cap, f) > 0) {
		on = on || strstr(line, "Sanitizer") != NULL;
		if (on)
			fputs(line, stderr);
	}
	free(line);
	fclose(f);
}

/*
 * Wait for the child, at most --timeout seconds for each check; a crash
 * or a check that does not end is a FAIL line naming it.  Returns the
 * exit status.
 */
static int supervise(pid_t pid)
{
	unsigned long seq = __atomic_load_n(&sh->seq, __ATOMIC_SEQ_CST);
	double since = seconds();
	const struct timespec tick = { 0, 20 * 1000 * 1000 };
	bool hung = false;
	int status = 0, n;

	for (;;) {
		pid_t w = waitpid(pid, &status, WNOHANG);
		unsigned long now;

		if (w == pid || (w < 0 && errno != EINTR))
			break;
		if (stop_signal != 0) {
			kill(pid, SIGKILL);
			(void)waitpid(pid, &status, 0);
			break;
		}
		now = __atomic_load_n(&sh->seq, __ATOMIC_SEQ_CST);
		if (now != seq) {
			seq = now;
			since = seconds();
		} else if (seconds() - since > opt.timeout) {
			hung = true;
			kill(pid, SIGKILL);
			(void)waitpid(pid, &status, 0);
			break;
		}
		nanosleep(&tick, NULL);
	}
	/* Interrupted (the child may have had the signal too): gone, and
	 * its files with it. */
	if (stop_signal != 0) {
		remove_temps();
		signal(stop_signal, SIG_DFL);
		raise(stop_signal);
		return 128 + stop_signal;
	}
	/* An exit() of the module's, or a sanitizer's report of a crash,
	 * ends the process too. */
	if (!hung && WIFEXITED(status) &&
	    __atomic_load_n(&sh->done, __ATOMIC_SEQ_CST)) {
		remove_temps();
		return WEXITSTATUS(status);
	}
	if (!hung && WIFEXITED(status))
		show_report();
	remove_temps();
	n = __atomic_load_n(&sh->failures, __ATOMIC_SEQ_CST) + 1;
	if (hung)
		printf("FAIL %s — it did not end in %d seconds%s%s: the module "
		       "hangs (make every wait it does end, with a timeout), "
		       "or give it longer with --timeout; the checks after "
		       "it did not run\n",
		       sh->check, opt.timeout, sh->doing[0] ? ", " : "",
		       sh->doing);
	else if (WIFSIGNALED(status))
		printf("FAIL %s — the module crashed the process (%s)%s%s: "
		       "run keyway-conformance under valgrind or gdb to see "
		       "where; the checks after it did not run\n",
		       sh->check, strsignal(WTERMSIG(status)),
		       sh->doing[0] ? ", " : "", sh->doing);
	else
		printf("FAIL %s — the module ended the process (exit status "
		       "%d)%s%s: a module never exits (a sanitizer that ended "
		       "it said why on stderr); the checks after it did not "
		       "run\n",
		       sh->check, WEXITSTATUS(status),
		       sh->doing[0] ? ", " : "", sh->doing);
	printf("FAIL: %d check%s failed\n", n, n == 1 ? "" : "s");
	fflush(stdout);
	return 3;
}

/*
 * Every check, in the child: the module's code runs here only.  Returns
 * the exit status.
 */
static int run(char *modpath)
{
	struct answer ref[MAX_PROVIDERS] = { 0 };
	char dirs[2 * PATH_MAX], *path;
	const char *env;
	kw_ctx *ctx = NULL;
	kw_status rc;
	bool planted;
	int fd;

	if (!check_descriptor() || !find_instance())
		goto end;

	/* The real loader finds kw_NAME.so in the module's directory first. */
	env = getenv("KEYWAY_MODULE_DIR");
	*strrchr(modpath, '/') = '\0';
	snprintf(dirs, sizeof(dirs), "%s%s%s", modpath, env ? ":" : "",
		 env ? env : "");
	modpath[strlen(modpath)] = '/';
	setenv("KEYWAY_MODULE_DIR", dirs, 1);

	/* What keyway and the module write to stderr, for the last checks. */
	logpath = temp_slot();
	sh->log = logpath;
	snprintf(logpath, PATH_MAX, "%s/keyway-conformance-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	fd = mkstemp(logpath);
	if (fd < 0) {
		fprintf(stderr, "keyway-conformance: %s: %s\n", logpath,
			strerror(errno));
		logpath[0] = '\0';
		return 2;
	}
	real_stderr = dup(STDERR_FILENO);
	dup2(fd, STDERR_FILENO);
	close(fd);

	if (opt.ledger) {
		unsigned char rnd[6];
		char key[64];
		int r = open("/dev/urandom", O_RDONLY | O_CLOEXEC);

		memset(rnd, 0x3c, sizeof(rnd));
		if (r >= 0) {
			(void)!read(r, rnd, sizeof(rnd));
			close(r);
		}
		/* A counter no earlier run has used. */
		snprintf(qbackend, sizeof(qbackend),
			 "conformance_%02x%02x%02x%02x%02x%02x", rnd[0],
			 rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
		snprintf(key, sizeof(key),
			 "sk-ant-kwconf-ledger-%02x%02x%02x%02x%02x%02x-key",
			 rnd[5], rnd[4], rnd[3], rnd[2], rnd[1], rnd[0]);
		setenv(LEDGER_VAR, key, 1);
		keep_secret(key);
	}
	if ((path = derive(M_NONE, NULL, 0)) == NULL) {
		out(false, "the configuration reads",
		    "cannot read %s or write a copy beside it", opt.config);
		goto end;
	}
	begin("kw_check() passes", NULL);
	rc = kw_check(path, report_line, NULL);
	out(rc == KW_OK, "kw_check() passes",
	    "kw_check() answered %s (the lines above): fix what it reports",
	    kw_status_str(rc));
	begin("kw_open() opens the backend", NULL);
	rc = kw_open(&ctx, path);
	if (rc != KW_OK) {
		keep("kw_open()", kw_last_error());
		out(false, "kw_open() opens the backend", "%s",
		    in_file(kw_last_error()));
		temp_drop(path);
		goto end;
	}
	out(true, "kw_open() opens the backend", " ");
	if (!opt.ledger &&
	    kw_backend_scope(ctx, opt.backend, &opt.scope) != KW_OK)
		opt.scope = KW_SCOPE_NONE;

	planted = store_plant(ctx);
	if (!opt.ledger && (opt.desc->caps & KW_CAP_LOOKUP)) {
		check_statuses(ctx, ref);
		check_nulls(ctx);
		check_threads(ctx, ref);
	} else {
		skip("lookups", opt.ledger ? "checked on a backend of the "
					     "module, not on keyway.ledger"
					   : "the module does not answer "
					     "lookups");
	}
	if (planted)
		store_rest(ctx);
	if (!opt.ledger && (opt.desc->caps & KW_CAP_LOOKUP))
		check_seen();
	if (opt.ledger)
		check_ledger(ctx);
	else if (opt.desc->caps & KW_CAP_LEDGER)
		skip("ledger exactness", "the backend is not keyway.ledger: "
					 "check the module again with "
					 "--backend keyway.ledger");
	begin("kw_close() returns", NULL);
	kw_close(ctx);
	out(true, "kw_close() returns", " ");
	check_cycles(path);
	temp_drop(path);
	check_settings();
	check_messages();
end:
	if (real_stderr >= 0) {
		dup2(real_stderr, STDERR_FILENO);
		close(real_stderr);
		temp_drop(logpath);
	}
	for (size_t i = 0; i < opt.nexpect; i++) {
		if (ref[i].value != NULL)
			explicit_bzero(ref[i].value, strlen(ref[i].value));
		free(ref[i].value);
	}
	for (size_t i = 0; i < nsecrets; i++) {
		explicit_bzero(secrets[i], strlen(secrets[i]));
		free(secrets[i]);
	}
	for (size_t i = 0; i < nmsgs; i++) {
		free(msgs[i].text);
		free(msgs[i].what);
	}
	free(msgs);
	printf("%s: %d check%s failed\n", failures ? "FAIL" : "PASS",
	       failures, failures == 1 ? "" : "s");
	return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
	static const struct option longs[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "backend", required_argument, NULL, 'b' },
		{ "found", required_argument, NULL, 'F' },
		{ "notfound", required_argument, NULL, 'N' },
		{ "denied", required_argument, NULL, 'D' },
		{ "unavail", required_argument, NULL, 'U' },
		{ "error", required_argument, NULL, 'E' },
		{ "user", required_argument, NULL, 'u' },
		{ "org", required_argument, NULL, 'o' },
		{ "threads", required_argument, NULL, 't' },
		{ "lookups", required_argument, NULL, 'l' },
		{ "cycles", required_argument, NULL, 'y' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	/* Static: opt, a global, points at them. */
	static char cfgpath[PATH_MAX], modpath[PATH_MAX];
	const char *preload = getenv("LD_PRELOAD");
	bool ok = true;
	pid_t pid;
	int c;

	/*
	 * Without glibc's per-thread caches, whose chunks count as used, the
	 * heap's size after a close is exact enough to see a leak.
	 */
	/* Not under valgrind, which would not follow the exec. */
	if (getenv("KEYWAY_CONFORMANCE_CHILD") == NULL &&
	    (preload == NULL || strstr(preload, "vgpreload") == NULL)) {
		const char *t = getenv("GLIBC_TUNABLES");
		char tun[1024];

		snprintf(tun, sizeof(tun), "%s%sglibc.malloc.tcache_count=0",
			 t ? t : "", t ? ":" : "");
		setenv("GLIBC_TUNABLES", tun, 1);
		setenv("KEYWAY_CONFORMANCE_CHILD", "1", 1);
		execv("/proc/self/exe", argv);
	}
	unsetenv("KEYWAY_CONFORMANCE_CHILD");

	while ((c = getopt_long(argc, argv, "c:b:h", longs, NULL)) != -1) {
		switch (c) {
		case 'c':
			opt.config = optarg;
			break;
		case 'b':
			opt.backend = optarg;
			break;
		case 'F':
			ok = add_expect(optarg, KW_OK) && ok;
			break;
		case 'N':
			ok = add_expect(optarg, KW_ERR_NOTFOUND) && ok;
			break;
		case 'D':
			ok = add_expect(optarg, KW_ERR_DENIED) && ok;
			break;
		case 'U':
			ok = add_expect(optarg, KW_ERR_UNAVAIL) && ok;
			break;
		case 'E':
			ok = add_expect(optarg, KW_ERR_BACKEND) && ok;
			break;
		case 'u':
			opt.user = optarg;
			break;
		case 'o':
			opt.org = optarg;
			break;
		case 't':
			ok = number(optarg, &opt.threads) && ok;
			break;
		case 'l':
			ok = number(optarg, &opt.lookups) && ok;
			break;
		case 'y':
			ok = number(optarg, &opt.cycles) && ok;
			break;
		case 'T':
			ok = number(optarg, &opt.timeout) && ok;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!ok || optind + 1 != argc || opt.config == NULL) {
		if (ok)
			fprintf(stderr, "keyway-conformance: %s\n",
				optind + 1 != argc ? "name one module file"
						   : "--config is required");
		else
			fprintf(stderr, "keyway-conformance: a count is not "
					"a number from 1 to 100000, or more "
					"than 16 providers\n");
		usage(stderr);
		return 2;
	}
	if (realpath(opt.config, cfgpath) == NULL) {
		fprintf(stderr, "keyway-conformance: %s: %s\n", opt.config,
			strerror(errno));
		return 2;
	}
	opt.config = cfgpath;
	if (realpath(argv[optind], modpath) == NULL) {
		fprintf(stderr, "keyway-conformance: %s: %s\n", argv[optind],
			strerror(errno));
		return 2;
	}
	opt.module = modpath;

	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
		  MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED) {
		fprintf(stderr, "keyway-conformance: mmap: %s\n",
			strerror(errno));
		return 2;
	}
	catch_signals();
	fflush(stdout);
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "keyway-conformance: fork: %s\n",
			strerror(errno));
		return 2;
	}
	if (pid == 0) {
		struct rlimit none = { 0, 0 };

		/* A crash leaves no core file: it would hold the keys. */
		(void)setrlimit(RLIMIT_CORE, &none);
		(void)prctl(PR_SET_DUMPABLE, 0);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGHUP, SIG_DFL);
		signal(SIGQUIT, SIG_DFL);
		signal(SIGPIPE, SIG_DFL);
		c = run(modpath);
		__atomic_store_n(&sh->done, 1, __ATOMIC_SEQ_CST);
		exit(c);
	}
	return supervise(pid);
}

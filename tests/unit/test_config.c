/*
 * test_config.c - keyway.conf: every broken configuration is refused with
 * the exact "file:line: what is wrong" and nothing half-loaded, and what
 * loads, works.
 *
 * Each row of bad_configs[] runs as its own test: the text is written as
 * keyway.conf in a fresh directory, kw_open() must refuse it with the
 * row's status and message, and kw_check() must report the same line
 * first.  Configurations hold one setting per line, so that the line a
 * message names can be read off the text; the comments count them.
 *
 * Long on purpose: one program with one fixture, whose tests share their
 * setup and helpers; split, each part would repeat them.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <keyway/keyway.h>

#include "testutil.h"

/* ---- building blocks ---- */

/* Lines 1-6: backend "a", a fake that finds every key. */
#define BACKEND_A                                                       \
	"backends: {\n"                 /* 1 */                         \
	"  a: {\n"                      /* 2 */                         \
	"    module = \"fake\";\n"      /* 3 */                         \
	"    answer = \"found\";\n"     /* 4 */                         \
	"  };\n"                        /* 5 */                         \
	"};\n"                          /* 6 */

/* Eight lines: chain "default" asks backend "a". */
#define CHAIN_A                                                         \
	"chains: {\n"                   /* +1 */                        \
	"  default = (\n"               /* +2 */                        \
	"    {\n"                       /* +3 */                        \
	"      backend = \"a\";\n"      /* +4 */                        \
	"      control = \"required\";\n" /* +5 */                      \
	"    }\n"                       /* +6 */                        \
	"  );\n"                        /* +7 */                        \
	"};\n"                          /* +8 */

/* Backend "a" with `body` from line 3 on, then CHAIN_A. */
#define BACKEND(body)                                                   \
	"backends: {\n"                 /* 1 */                         \
	"  a: {\n"                      /* 2 */                         \
	body                            /* 3, 4, ... */                 \
	"  };\n"                                                        \
	"};\n" CHAIN_A

/* BACKEND_A, then chain "default" with one entry (line 9) whose settings
 * are `body`, from line 10 on. */
#define ENTRY(body)                                                     \
	BACKEND_A                                                       \
	"chains: {\n"                   /* 7 */                         \
	"  default = (\n"               /* 8 */                         \
	"    {\n"                       /* 9 */                         \
	body                            /* 10, 11, ... */               \
	"    }\n"                                                       \
	"  );\n"                                                        \
	"};\n"

/* One entry asking "a" with control `text` on line 11. */
#define CONTROL(text)                                                   \
	ENTRY("      backend = \"a\";\n"                /* 10 */        \
	      "      control = \"" text "\";\n")        /* 11 */

/* Two entries asking "a": controls on lines 11 and 15. */
#define TWO(first, second)                                              \
	BACKEND_A                                                       \
	"chains: {\n"                   /* 7 */                         \
	"  default = (\n"               /* 8 */                         \
	"    {\n"                       /* 9 */                         \
	"      backend = \"a\";\n"      /* 10 */                        \
	"      control = \"" first "\";\n" /* 11 */                     \
	"    },\n"                      /* 12 */                        \
	"    {\n"                       /* 13 */                        \
	"      backend = \"a\";\n"      /* 14 */                        \
	"      control = \"" second "\";\n" /* 15 */                    \
	"    }\n"                                                       \
	"  );\n"                                                        \
	"};\n"

/* The message every control row shares, up to the control's own text. */
#define AT_CONTROL "%s/keyway.conf:11: chain \"default\": entry 1: "

/*
 * A configuration kw_open() must refuse.  In `expect`, %s stands for the
 * directory holding keyway.conf, %M for $KEYWAY_MODULE_DIR, %D for the
 * built-in module directory and %V for the library's version.
 */
struct bad_config {
	const char *name;
	const char *text;
	const char *expect;
	kw_status status;
	unsigned more;         /* problems kw_check() reports after it */
	const char *aux_name;  /* a file written next to keyway.conf */
	mode_t aux_mode;
	const char *aux_text;
};

static struct bad_config bad_configs[] = {
	/* ---- what libconfig itself refuses ---- */
	{
		.name = "syntax_error",
		.text = BACKEND("    module = \"fake\";\n"      /* 3 */
				"    answer = found;\n"),       /* 4 */
		.expect = "%s/keyway.conf:4: syntax error at a value after "
			  "'=' (a string value must be in double quotes)",
		.status = KW_ERR_CONFIG,
	},
	{
		/* The string is where it stopped, and is not shown: it may
		 * be a key. */
		.name = "syntax_error_at_string",
		.text = BACKEND("    module = \"fake\";\n"      /* 3 */
				"    answer = \"found\";\n"     /* 4 */
				"    value \"sk-ant-pasted-secret\";\n"), /* 5 */
		.expect = "%s/keyway.conf:5: syntax error at a string (a "
			  "missing '=' before it?)",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "syntax_error_missing_comma",
		.text = BACKEND_A
			"chains: {\n"                           /* 7 */
			"  default = (\n"                       /* 8 */
			"    { backend = \"a\"; control = \"sufficient\"; }\n"
			"    { backend = \"a\"; control = \"required\"; }\n"
			"  );\n"                                /* 11 */
			"};\n",
		.expect = "%s/keyway.conf:10: syntax error at '{' (a missing "
			  "',' or ';' before it?)",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "syntax_error_garbage",
		.text = BACKEND("    module = \"fake\";\n"      /* 3 */
				"    answer = $found;\n"),        /* 4 */
		.expect = "%s/keyway.conf:4: syntax error at '$'",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "syntax_error_at_end",
		.text = BACKEND_A
			"chains: {\n"                           /* 7 */
			"  default = ( { backend = \"a\"; "
			"control = \"required\"; } );\n",       /* 8 */
		.expect = "%s/keyway.conf:9: syntax error at the end of the "
			  "file (a missing } or )?)",
		.status = KW_ERR_CONFIG,
	},
	{
		/* A string left open takes in the lines after it: where it
		 * starts is what to fix. */
		.name = "syntax_error_unterminated_string",
		.text = BACKEND("    module = \"fake\";\n"      /* 3 */
				"    answer = \"found;\n"      /* 4 */
				"    value = \"sk-ant-x\";\n"), /* 5 */
		.expect = "%s/keyway.conf:4: unterminated string starting at "
			  "line 4 (a missing '\"' at its end?)",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "syntax_error_byte_order_mark",
		.text = "\xef\xbb\xbf" BACKEND_A,
		.expect = "%s/keyway.conf:1: syntax error at a UTF-8 "
			  "byte-order mark: save the file without it",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "duplicate_setting",
		.text = BACKEND("    module = \"fake\";\n"      /* 3 */
				"    answer = \"found\";\n"     /* 4 */
				"    answer = \"notfound\";\n"), /* 5 */
		.expect = "%s/keyway.conf:5: duplicate setting \"answer\": it "
			  "is already set in this group",
		.status = KW_ERR_CONFIG,
	},
	{
		/* The one that is set twice, not the one before it. */
		.name = "duplicate_setting_same_line",
		.text = BACKEND("    module = \"fake\";\n"      /* 3 */
				"    value = \"x\";\n"          /* 4 */
				"    answer = \"found\"; value = \"y\";\n"),
		.expect = "%s/keyway.conf:5: duplicate setting \"value\": it "
			  "is already set in this group",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "include_missing",
		.text = BACKEND_A
			"@include \"nosuch.conf\"\n",           /* 7 */
		.expect = "%s/keyway.conf:7: cannot include "
			  "%s/nosuch.conf: No such file or directory",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "include_itself",
		.text = BACKEND_A
			"@include \"keyway.conf\"\n",           /* 7 */
		.expect = "%s/keyway.conf:7: cannot include "
			  "%s/keyway.conf: it is already being read (an "
			  "@include loop)",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "include_loop",
		.text = BACKEND_A
			"@include \"chains.conf\"\n",           /* 7 */
		.expect = "%s/chains.conf:2: cannot include "
			  "%s/keyway.conf: it is already being read (an "
			  "@include loop)",
		.status = KW_ERR_CONFIG,
		.aux_name = "chains.conf",
		.aux_mode = 0644,
		.aux_text = "# the other way round\n"              /* 1 */
			    "@include \"keyway.conf\"\n",       /* 2 */
	},
	{
		.name = "include_bad_name",
		.text = BACKEND_A
			"  @include \"chains\\.conf\"\n",       /* 7 */
		.expect = "%s/keyway.conf:7: @include: the file name must be "
			  "one line, in double quotes, with only \\\" and "
			  "\\\\ escaped",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "include_ends_in_comment",
		.text = BACKEND_A
			"@include \"chains.conf\"\n"            /* 7 */
			CHAIN_A,
		.expect = "%s/chains.conf: the file ends inside a "
			  "/* comment */",
		.status = KW_ERR_CONFIG,
		.aux_name = "chains.conf",
		.aux_mode = 0644,
		.aux_text = "/* the rest of keyway.conf would be lost\n",
	},

	/* ---- the top level ---- */
	{
		.name = "unknown_top_level",
		.text = BACKEND_A CHAIN_A
			"chain: {\n"                            /* 15 */
			"};\n",
		.expect = "%s/keyway.conf:15: unknown setting \"chain\" "
			  "(expected keyway, backends, chains or daemon)",
		.status = KW_ERR_CONFIG,
	},
	{
		/* The chain's backend is unknown too: a second problem. */
		.name = "no_backends_section",
		.text = CHAIN_A,
		.expect = "%s/keyway.conf: no backends section",
		.status = KW_ERR_CONFIG,
		.more = 1,
	},
	{
		.name = "no_chains_section",
		.text = BACKEND_A,
		.expect = "%s/keyway.conf: no chains section",
		.status = KW_ERR_CONFIG,
	},

	/* ---- backends ---- */
	{
		.name = "backends_not_group",
		.text = "backends = \"a\";\n"                   /* 1 */
			CHAIN_A,
		.expect = "%s/keyway.conf:1: backends must be a group "
			  "{ name: { ... }; ... }",
		.status = KW_ERR_CONFIG,
		.more = 1,
	},
	{
		.name = "backends_empty",
		.text = "backends: {\n"                         /* 1 */
			"};\n"                                  /* 2 */
			CHAIN_A,
		.expect = "%s/keyway.conf:1: backends: no backend declared",
		.status = KW_ERR_CONFIG,
		.more = 1,
	},
	{
		.name = "backend_not_group",
		.text = "backends: {\n"                         /* 1 */
			"  a = \"fake\";\n"                     /* 2 */
			"};\n"
			CHAIN_A,
		.expect = "%s/keyway.conf:2: backend \"a\" must be a group "
			  "{ module = ...; }",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "backend_missing_module",
		.text = BACKEND("    answer = \"found\";\n"),   /* 3 */
		.expect = "%s/keyway.conf:2: backend \"a\": missing module",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "module_not_string",
		.text = BACKEND("    module = 1;\n"),           /* 3 */
		.expect = "%s/keyway.conf:3: backend \"a\": module must be a "
			  "string, not an integer",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "module_name_dotdot",
		.text = BACKEND("    module = \"../x\";\n"),    /* 3 */
		.expect = "%s/keyway.conf:3: backend \"a\": invalid module "
			  "name \"../x\" (a name like \"sqlite\" or an "
			  "absolute path)",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "module_name_upper_case",
		.text = BACKEND("    module = \"Foo\";\n"),     /* 3 */
		.expect = "%s/keyway.conf:3: backend \"a\": invalid module "
			  "name \"Foo\" (a name like \"sqlite\" or an "
			  "absolute path)",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "module_not_found",
		.text = BACKEND("    module = \"nosuch\";\n"),  /* 3 */
		.expect = "%s/keyway.conf:3: backend \"a\": cannot load "
			  "module \"nosuch\": no kw_nosuch.so in %M or %D",
		.status = KW_ERR_MODULE,
	},
	{
		.name = "unknown_backend_setting",
		.text = BACKEND("    module = \"fake\";\n"      /* 3 */
				"    answer = \"found\";\n"     /* 4 */
				"    vaule = \"sk-x\";\n"),     /* 5 */
		.expect = "%s/keyway.conf:5: backend \"a\": unknown setting "
			  "\"vaule\" (module \"fake\" takes answer, value, "
			  "open_error, check_answer, providers, nul_at, "
			  "status, log, usage_threads)",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "unknown_setting_scoped_module",
		.text = BACKEND("    module = \"fakestore\";\n" /* 3 */
				"    scope = \"user\";\n"       /* 4 */
				"    path = \"keys.db\";\n"),   /* 5 */
		.expect = "%s/keyway.conf:5: backend \"a\": unknown setting "
			  "\"path\" (module \"fakestore\" takes scope)",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "unknown_setting_env",
		.text = BACKEND("    module = \"env\";\n"       /* 3 */
				"    dot_env = \"server.env\";\n"), /* 4 */
		.expect = "%s/keyway.conf:4: backend \"a\": unknown setting "
			  "\"dot_env\" (module \"env\" takes vars, dotenv, environment)",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "string_expected",
		.text = BACKEND("    module = \"fake\";\n"      /* 3 */
				"    answer = 1;\n"),           /* 4 */
		.expect = "%s/keyway.conf:4: backend \"a\": answer must be a "
			  "string, not an integer",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "bool_expected",
		.text = BACKEND("    module = \"fake\";\n"      /* 3 */
				"    answer = \"found\";\n"     /* 4 */
				"    open_error = \"yes\";\n"), /* 5 */
		.expect = "%s/keyway.conf:5: backend \"a\": open_error must "
			  "be true or false, not a string",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "group_expected",
		.text = BACKEND("    module = \"env\";\n"       /* 3 */
				"    vars = \"ANTHROPIC_API_KEY\";\n"), /* 4 */
		.expect = "%s/keyway.conf:4: backend \"a\": vars must be a "
			  "group { name = \"value\"; ... }, not a string",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "map_member_not_string",
		.text = BACKEND("    module = \"env\";\n"       /* 3 */
				"    vars: {\n"                 /* 4 */
				"      anthropic = \"ANTHROPIC_API_KEY\";\n"
				"      openai = 7;\n"           /* 6 */
				"    };\n"),                    /* 7 */
		.expect = "%s/keyway.conf:6: backend \"a\": vars.openai must "
			  "be a string, not an integer",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "path_not_string",
		.text = BACKEND("    module = \"env\";\n"       /* 3 */
				"    dotenv = true;\n"),        /* 4 */
		.expect = "%s/keyway.conf:4: backend \"a\": dotenv must be a "
			  "string, not a boolean",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "path_empty",
		.text = BACKEND("    module = \"env\";\n"       /* 3 */
				"    dotenv = \"\";\n"),        /* 4 */
		.expect = "%s/keyway.conf:4: backend \"a\": dotenv is empty",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "required_setting_missing",
		.text = BACKEND("    module = \"fake\";\n"),    /* 3 */
		.expect = "%s/keyway.conf:2: backend \"a\": missing answer "
			  "(module \"fake\" needs it)",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "scope_on_unscoped_module",
		.text = BACKEND("    module = \"fake\";\n"      /* 3 */
				"    answer = \"found\";\n"     /* 4 */
				"    scope = \"user\";\n"),     /* 5 */
		.expect = "%s/keyway.conf:5: backend \"a\": module \"fake\" "
			  "takes no scope",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "scope_invalid",
		.text = BACKEND("    module = \"fakestore\";\n" /* 3 */
				"    scope = \"team\";\n"),     /* 4 */
		.expect = "%s/keyway.conf:4: backend \"a\": scope must be "
			  "\"user\", \"org\" or \"system\"",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "scope_not_string",
		.text = BACKEND("    module = \"fakestore\";\n" /* 3 */
				"    scope = 1;\n"),            /* 4 */
		.expect = "%s/keyway.conf:4: backend \"a\": scope must be a "
			  "string, not an integer",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "scope_missing",
		.text = BACKEND("    module = \"fakestore\";\n"), /* 3 */
		.expect = "%s/keyway.conf:2: backend \"a\": missing scope "
			  "(\"user\", \"org\" or \"system\")",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "quota_without_ledger",
		.text = BACKEND("    module = \"fake\";\n"      /* 3 */
				"    answer = \"found\";\n"     /* 4 */
				"    quota = (\n"               /* 5 */
				"      {\n"
				"        limit = 10;\n"
				"        period = \"day\";\n"
				"        per = \"user\";\n"
				"      }\n"
				"    );\n"),
		.expect = "%s/keyway.conf:5: backend \"a\": quotas count in "
			  "a ledger: set keyway.ledger = { module = \"sqlite\"; "
			  "path = \"...\"; }",
		.status = KW_ERR_CONFIG,
	},

	/* ---- keyway: { } ---- */
	{
		.name = "master_key_var_unset",
		.text = "keyway: {\n"                           /* 1 */
			"  master_key: {\n"                     /* 2 */
			"    source = \"env\";\n"               /* 3 */
			"    var = \"KEYWAY_MASTER_KEY\";\n"    /* 4 */
			"  };\n"                                /* 5 */
			"};\n"                                  /* 6 */
			BACKEND_A CHAIN_A,
		.expect = "%s/keyway.conf:2: keyway.master_key: "
			  "$KEYWAY_MASTER_KEY is not set",
		.status = KW_ERR_CONFIG,
	},
	{
		/* The master key's own error, and not a second one from the
		 * audit trail that needs it: it is set, if wrongly. */
		.name = "master_key_fails_with_audit",
		.text = "keyway: {\n"                           /* 1 */
			"  master_key: {\n"                     /* 2 */
			"    source = \"env\";\n"               /* 3 */
			"    var = \"KEYWAY_MASTER_KEY\";\n"    /* 4 */
			"  };\n"                                /* 5 */
			"  audit: {\n"                          /* 6 */
			"    sink = \"syslog\";\n"              /* 7 */
			"  };\n"                                /* 8 */
			"};\n"                                  /* 9 */
			BACKEND_A CHAIN_A,
		.expect = "%s/keyway.conf:2: keyway.master_key: "
			  "$KEYWAY_MASTER_KEY is not set",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "ledger_cannot_count",
		.text = "keyway: {\n"                           /* 1 */
			"  ledger: {\n"                         /* 2 */
			"    module = \"env\";\n"               /* 3 */
			"    dotenv = \"/nonexistent.env\";\n"
			"  };\n"                                /* 5 */
			"};\n"                                  /* 6 */
			BACKEND_A CHAIN_A,
		.expect = "%s/keyway.conf:3: keyway.ledger: module \"env\" "
			  "does not count quotas",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "audit_without_master_key",
		.text = "keyway: {\n"                           /* 1 */
			"  audit: {\n"                          /* 2 */
			"    sink = \"syslog\";\n"              /* 3 */
			"  };\n"                                /* 4 */
			"};\n"                                  /* 5 */
			BACKEND_A CHAIN_A,
		.expect = "%s/keyway.conf:2: keyway.audit: key fingerprints "
			  "are keyed with the master key: set keyway.master_key",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "keyway_unknown_setting",
		.text = "keyway: {\n"                           /* 1 */
			"  mster_key = \"x\";\n"                /* 2 */
			"};\n"                                  /* 3 */
			BACKEND_A CHAIN_A,
		.expect = "%s/keyway.conf:2: keyway: unknown setting "
			  "\"mster_key\" (expected master_key, "
			  "old_master_keys, providers, ledger, audit, log or "
			  "daemon)",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "keyway_not_group",
		.text = "keyway = true;\n"                      /* 1 */
			BACKEND_A CHAIN_A,
		.expect = "%s/keyway.conf:1: keyway must be a group { ... }",
		.status = KW_ERR_CONFIG,
	},

	/* ---- chains ---- */
	{
		.name = "chains_not_group",
		.text = BACKEND_A
			"chains = \"default\";\n",              /* 7 */
		.expect = "%s/keyway.conf:7: chains must be a group "
			  "{ name = ( ... ); ... }",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "chains_empty",
		.text = BACKEND_A
			"chains: {\n"                           /* 7 */
			"};\n",                                 /* 8 */
		.expect = "%s/keyway.conf:7: chains: no chain declared",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "chain_not_list",
		.text = BACKEND_A
			"chains: {\n"                           /* 7 */
			"  default: {\n"                        /* 8 */
			"    backend = \"a\";\n"                /* 9 */
			"    control = \"required\";\n"         /* 10 */
			"  };\n"
			"};\n",
		.expect = "%s/keyway.conf:8: chain \"default\" must be a list "
			  "( { backend = ...; control = ...; }, ... )",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "chain_empty",
		.text = BACKEND_A
			"chains: {\n"                           /* 7 */
			"  default = (\n"                       /* 8 */
			"  );\n"                                /* 9 */
			"};\n",
		.expect = "%s/keyway.conf:8: chain \"default\" is empty",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "entry_not_group",
		.text = BACKEND_A
			"chains: {\n"                           /* 7 */
			"  default = (\n"                       /* 8 */
			"    1\n"                               /* 9 */
			"  );\n"                                /* 10 */
			"};\n",
		.expect = "%s/keyway.conf:9: chain \"default\": entry 1 must "
			  "be a group { backend = ...; control = ...; }",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "entry_missing_backend",
		.text = ENTRY("      control = \"required\";\n"), /* 10 */
		.expect = "%s/keyway.conf:9: chain \"default\": entry 1: "
			  "missing backend",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "entry_unknown_setting",
		.text = ENTRY("      backend = \"a\";\n"        /* 10 */
			      "      control = \"required\";\n" /* 11 */
			      "      comment = \"org first\";\n"), /* 12 */
		.expect = "%s/keyway.conf:12: chain \"default\": entry 1: "
			  "unknown setting \"comment\" (expected backend and "
			  "control)",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "entry_backend_not_string",
		.text = ENTRY("      backend = 1;\n"            /* 10 */
			      "      control = \"required\";\n"), /* 11 */
		.expect = "%s/keyway.conf:10: chain \"default\": entry 1: "
			  "backend must be a string",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "unknown_backend_in_chain",
		.text = "backends: {\n"                         /* 1 */
			"  org_keys: {\n"                       /* 2 */
			"    module = \"fakestore\";\n"         /* 3 */
			"    scope = \"org\";\n"                /* 4 */
			"  };\n"                                /* 5 */
			"};\n"                                  /* 6 */
			"chains: {\n"                           /* 7 */
			"  default = (\n"                       /* 8 */
			"    {\n"                               /* 9 */
			"      backend = \"org_kyes\";\n"       /* 10 */
			"      control = \"sufficient\";\n"     /* 11 */
			"    }\n"
			"  );\n"
			"};\n",
		.expect = "%s/keyway.conf:10: chain \"default\": unknown "
			  "backend \"org_kyes\"",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "missing_control",
		.text = ENTRY("      backend = \"a\";\n"),      /* 10 */
		.expect = "%s/keyway.conf:9: chain \"default\": entry 1: "
			  "missing control (required, requisite, sufficient or "
			  "optional)",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "control_not_string",
		.text = ENTRY("      backend = \"a\";\n"        /* 10 */
			      "      control = true;\n"),       /* 11 */
		.expect = AT_CONTROL "control must be a string",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "control_unknown_keyword",
		.text = CONTROL("sufficent"),
		.expect = AT_CONTROL "unknown control \"sufficent\" (expected "
			  "required, requisite, sufficient, optional or "
			  "[status=action ...])",
		.status = KW_ERR_CONFIG,
	},
	{
		/* What may be a key pasted there is not repeated. */
		.name = "control_unknown_not_a_word",
		.text = CONTROL("sk-ant-api03-SECRET0123456789"),
		.expect = AT_CONTROL "unknown control (a string of 29 "
			  "characters, not shown; expected required, "
			  "requisite, sufficient, optional or "
			  "[status=action ...])",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "control_unknown_in_entry_2",
		.text = TWO("sufficient", "sufficent"),
		.expect = "%s/keyway.conf:15: chain \"default\": entry 2: "
			  "unknown control \"sufficent\" (expected required, "
			  "requisite, sufficient, optional or "
			  "[status=action ...])",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "bracket_unknown_status",
		.text = CONTROL("[found=done notfond=continue default=die]"),
		.expect = AT_CONTROL "control \"[found=done notfond=continue "
			  "default=die]\": unknown status \"notfond\" "
			  "(expected found, notfound, denied, unavail, error "
			  "or default)",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "bracket_unknown_action",
		.text = CONTROL("[found=done default=contnue]"),
		.expect = AT_CONTROL "control \"[found=done "
			  "default=contnue]\": unknown action \"contnue\" (expected done, "
			  "continue, die or a number)",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "bracket_not_status_action",
		.text = CONTROL("[found=done die]"),
		.expect = AT_CONTROL "control \"[found=done die]\": expected "
			  "STATUS=ACTION, got \"die\"",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "bracket_duplicate_status",
		.text = CONTROL("[found=done notfound=die notfound=continue "
				"default=die]"),
		.expect = AT_CONTROL "control \"[found=done notfound=die "
			  "notfound=continue default=die]\": notfound is "
			  "given twice",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "bracket_missing_action",
		.text = CONTROL("[found=done notfound=continue]"),
		.expect = AT_CONTROL "control \"[found=done "
			  "notfound=continue]\": no action for denied (add "
			  "denied=... or default=...)",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "bracket_found_die",
		.text = CONTROL("[found=die default=continue]"),
		.expect = AT_CONTROL "control \"[found=die "
			  "default=continue]\": found=die: a found key cannot die (use done, continue or a number)",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "bracket_notfound_done",
		.text = CONTROL("[found=done notfound=done default=die]"),
		.expect = AT_CONTROL "control \"[found=done notfound=done "
			  "default=die]\": notfound=done: only a found key can "
			  "be done (use die)",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "bracket_default_done",
		.text = CONTROL("[found=done default=done]"),
		.expect = AT_CONTROL "control \"[found=done default=done]\": "
			  "default=done: only a found key can be done (use "
			  "die)",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "bracket_skip_zero",
		.text = TWO("[found=done notfound=0 default=die]", "required"),
		.expect = AT_CONTROL "control \"[found=done notfound=0 "
			  "default=die]\": notfound=0: skip at least 1 entry "
			  "(use continue to go on to the next)",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "bracket_skip_past_end",
		.text = TWO("[found=done notfound=2 default=continue]",
			    "required"),
		.expect = AT_CONTROL "control \"[found=done notfound=2 "
			  "default=continue]\": notfound=2 skips past the end "
			  "of the chain (1 entry follows this one)",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "bracket_skip_from_last_entry",
		.text = CONTROL("[found=done default=1]"),
		.expect = AT_CONTROL "control \"[found=done default=1]\": "
			  "default=1 skips past the end of the chain (0 "
			  "entries follow this one)",
		.status = KW_ERR_CONFIG,
	},
	{
		/* 300 is not too small: it goes past the end. */
		.name = "bracket_skip_far_past_end",
		.text = TWO("[found=done notfound=300 default=continue]",
			    "required"),
		.expect = AT_CONTROL "control \"[found=done notfound=300 "
			  "default=continue]\": notfound=300 skips past the "
			  "end of the chain (1 entry follows this one)",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "bracket_missing_close",
		.text = CONTROL("[found=done default=die"),
		.expect = AT_CONTROL "control \"[found=done default=die\": "
			  "missing ]",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "bracket_text_after_close",
		.text = CONTROL("[found=done default=die] required"),
		.expect = AT_CONTROL "control \"[found=done default=die] "
			  "required\": text after ]",
		.status = KW_ERR_CONFIG,
	},

	/* ---- what the modules say when they open ---- */
	{
		/* The module's own status, not a guess of the host's. */
		.name = "module_open_fails",
		.text = BACKEND("    module = \"fake\";\n"      /* 3 */
				"    answer = \"found\";\n"     /* 4 */
				"    open_error = true;\n"),    /* 5 */
		.expect = "%s/keyway.conf:5: backend \"a\": refusing to open "
			  "as asked",
		.status = KW_ERR_MODULE,
	},
	{
		.name = "module_refuses_answer",
		.text = BACKEND("    module = \"fake\";\n"      /* 3 */
				"    answer = \"maybe\";\n"),   /* 4 */
		.expect = "%s/keyway.conf:4: backend \"a\": unknown answer "
			  "\"maybe\"",
		.status = KW_ERR_CONFIG,
	},
	{
		/* A module can point at its own settings only: the line is
		 * that of vars, and the message names the provider. */
		.name = "env_invalid_variable_name",
		.text = BACKEND("    module = \"env\";\n"       /* 3 */
				"    vars: {\n"                 /* 4 */
				"      anthropic = \"1ANTHROPIC\";\n" /* 5 */
				"    };\n"),
		.expect = "%s/keyway.conf:4: backend \"a\": variable name for "
			  "provider \"anthropic\" is not a valid environment "
			  "variable name (use letters, digits and '_', not "
			  "starting with a digit)",
		.status = KW_ERR_CONFIG,
	},
	{
		.name = "env_dotenv_readable_by_group",
		.text = BACKEND("    module = \"env\";\n"       /* 3 */
				"    dotenv = \"server.env\";\n"), /* 4 */
		.expect = "%s/keyway.conf:4: backend \"a\": %s/server.env is "
			  "accessible by group or others (mode 0644); it holds "
			  "secrets: chmod 600 it",
		.status = KW_ERR_PERM,
		.aux_name = "server.env",
		.aux_mode = 0644,
		.aux_text = "ANTHROPIC_API_KEY=sk-ant-test-0123456789\n",
	},
	{
		/* The file is the only source: it must be there. */
		.name = "env_dotenv_missing_required",
		.text = BACKEND("    module = \"env\";\n"       /* 3 */
				"    dotenv = \"server.env\";\n"  /* 4 */
				"    environment = false;\n"),    /* 5 */
		.expect = "%s/keyway.conf:4: backend \"a\": dotenv file "
			  "%s/server.env does not exist; with environment = "
			  "false it is the only source",
		.status = KW_ERR_CONFIG,
	},
};

#define NBAD (sizeof(bad_configs) / sizeof(bad_configs[0]))

/* ---- fixture: a fresh directory per test ---- */

struct fixture {
	const struct bad_config *row; /* for the table's tests */
	char *dir;
	char *conf;                   /* dir/keyway.conf */
	char **lines;                 /* what kw_check() reported */
	size_t nlines;
	char *oldcwd;                 /* set by move_elsewhere() */
	char *elsewhere;
};

static int fx_setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	if (fx == NULL)
		return -1;
	fx->row = *state;
	fx->dir = tu_tmpdir();
	if (asprintf(&fx->conf, "%s/keyway.conf", fx->dir) < 0)
		return -1;
	*state = fx;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fixture *fx = *state;
	int rc = 0;

	if (fx->oldcwd != NULL && chdir(fx->oldcwd) != 0)
		rc = -1;
	free(fx->oldcwd);
	tu_rmrf(fx->elsewhere);
	for (size_t i = 0; i < fx->nlines; i++)
		free(fx->lines[i]);
	free(fx->lines);
	free(fx->conf);
	tu_rmrf(fx->dir);
	free(fx);
	return rc;
}

/*
 * Work from another, empty directory, so that a relative name that is
 * wrongly read against the working directory finds nothing there (or only
 * what the test put there); the teardown goes back.
 */
static void move_elsewhere(struct fixture *fx)
{
	fx->oldcwd = getcwd(NULL, 0);
	assert_non_null(fx->oldcwd);
	fx->elsewhere = tu_tmpdir();
	assert_int_equal(chdir(fx->elsewhere), 0);
}

static void collect(void *arg, const char *line)
{
	struct fixture *fx = arg;
	char **grown = realloc(fx->lines, (fx->nlines + 1) * sizeof(*grown));

	assert_non_null(grown);
	fx->lines = grown;
	fx->lines[fx->nlines] = strdup(line);
	assert_non_null(fx->lines[fx->nlines]);
	fx->nlines++;
}

/* Write keyway.conf (mode 0644) into the fixture's directory. */
static void write_conf(struct fixture *fx, const char *text)
{
	free(tu_write(fx->dir, "keyway.conf", 0644, "%s", text));
}

/* The expectation with %s, %M and %V filled in; the caller frees it. */
static char *expand(const char *fmt, const char *dir)
{
	const char *moddir = getenv("KEYWAY_MODULE_DIR");
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);

	assert_non_null(out);
	for (const char *p = fmt; *p != '\0'; p++) {
		if (p[0] == '%' && p[1] == 's') {
			fputs(dir, out);
			p++;
		} else if (p[0] == '%' && p[1] == 'M') {
			assert_non_null(moddir);
			fputs(moddir, out);
			p++;
		} else if (p[0] == '%' && p[1] == 'D') {
			fputs(KW_MODULEDIR, out);
			p++;
		} else if (p[0] == '%' && p[1] == 'V') {
			fputs(kw_version(), out);
			p++;
		} else {
			fputc(*p, out);
		}
	}
	assert_int_equal(fclose(out), 0);
	return buf;
}

/* Statuses compared by name first, so that a failure reads well. */
#define assert_status(got, want)                                        \
	do {                                                            \
		kw_status got_ = (got), want_ = (want);                 \
		assert_string_equal(kw_status_str(got_),                \
				    kw_status_str(want_));              \
		assert_int_equal(got_, want_);                          \
	} while (0)

/* kw_open() must fail with st and exactly `expect`, leaving *ctx NULL. */
static void assert_open_fails(const char *path, kw_status st,
			      const char *expect)
{
	kw_ctx *ctx = (kw_ctx *)&ctx; /* anything but NULL */
	kw_status got = kw_open(&ctx, path);

	if (got == KW_OK) {
		kw_close(ctx);
		fail_msg("kw_open() accepted %s; expected: %s", path, expect);
	}
	assert_string_equal(kw_last_error(), expect);
	assert_status(got, st);
	assert_null(ctx);
}

/* ---- the table ---- */

static void test_bad_config(void **state)
{
	struct fixture *fx = *state;
	const struct bad_config *bc = fx->row;
	char *expect = expand(bc->expect, fx->dir);
	kw_status st;

	write_conf(fx, bc->text);
	if (bc->aux_name != NULL)
		free(tu_write(fx->dir, bc->aux_name, bc->aux_mode, "%s",
			      bc->aux_text));

	assert_open_fails(fx->conf, bc->status, expect);

	/* keyway check sees the same problem first, and no more than the
	 * row says follow from it. */
	st = kw_check(fx->conf, collect, fx);
	assert_true(fx->nlines >= 1);
	assert_string_equal(fx->lines[0], expect);
	assert_int_equal(fx->nlines, 1 + bc->more);
	assert_status(st, bc->status);
	free(expect);
}

/* ---- loading what is right, refusing the whole of what is not ---- */

static void test_good_config_resolves(void **state)
{
	struct fixture *fx = *state;
	char value[128], backend[64];
	kw_ctx *ctx = NULL;

	write_conf(fx, BACKEND_A CHAIN_A);
	assert_status(kw_open(&ctx, fx->conf), KW_OK);
	assert_non_null(ctx);
	assert_status(tu_resolve(ctx, NULL, "anthropic", "alice", "acme",
				 value, sizeof(value), backend,
				 sizeof(backend)),
		      KW_OK);
	assert_string_equal(value, "sk-fake-a-0123456789abcdef");
	assert_string_equal(backend, "a");
	kw_close(ctx);

	assert_status(kw_check(fx->conf, collect, fx), KW_OK);
	assert_int_equal(fx->nlines, 0);
}

/* Two good backends and one bad one: nothing is loaded. */
static void test_fail_closed_bad_setting(void **state)
{
	struct fixture *fx = *state;
	char *expect;

	write_conf(fx, "backends: {\n"                  /* 1 */
		       "  first: {\n"                   /* 2 */
		       "    module = \"fake\";\n"       /* 3 */
		       "    answer = \"found\";\n"      /* 4 */
		       "  };\n"                         /* 5 */
		       "  broken: {\n"                  /* 6 */
		       "    module = \"fake\";\n"       /* 7 */
		       "    answer = \"found\";\n"      /* 8 */
		       "    retries = 3;\n"             /* 9 */
		       "  };\n"                         /* 10 */
		       "  last: {\n"                    /* 11 */
		       "    module = \"env\";\n"        /* 12 */
		       "  };\n"                         /* 13 */
		       "};\n"                           /* 14 */
		       "chains: {\n"                    /* 15 */
		       "  default = (\n"                /* 16 */
		       "    {\n"                        /* 17 */
		       "      backend = \"first\";\n"   /* 18 */
		       "      control = \"sufficient\";\n"
		       "    },\n"
		       "    {\n"
		       "      backend = \"last\";\n"
		       "      control = \"required\";\n"
		       "    }\n"
		       "  );\n"
		       "};\n");
	expect = expand("%s/keyway.conf:9: backend \"broken\": unknown "
			"setting \"retries\" (module \"fake\" takes answer, "
			"value, open_error, check_answer, providers, nul_at, "
			"status, log, usage_threads)",
			fx->dir);
	assert_open_fails(fx->conf, KW_ERR_CONFIG, expect);
	free(expect);
}

/* A backend that fails to open after two that opened: those are closed
 * again and nothing is handed out. */
static void test_fail_closed_open_error(void **state)
{
	struct fixture *fx = *state;
	char *expect;

	write_conf(fx, "backends: {\n"                  /* 1 */
		       "  first: {\n"                   /* 2 */
		       "    module = \"fake\";\n"       /* 3 */
		       "    answer = \"found\";\n"      /* 4 */
		       "  };\n"                         /* 5 */
		       "  second: {\n"                  /* 6 */
		       "    module = \"env\";\n"        /* 7 */
		       "  };\n"                         /* 8 */
		       "  third: {\n"                   /* 9 */
		       "    module = \"fake\";\n"       /* 10 */
		       "    answer = \"found\";\n"      /* 11 */
		       "    open_error = true;\n"       /* 12 */
		       "  };\n"
		       "};\n"
		       "chains: {\n"
		       "  default = (\n"
		       "    {\n"
		       "      backend = \"first\";\n"
		       "      control = \"sufficient\";\n"
		       "    }\n"
		       "  );\n"
		       "};\n");
	expect = expand("%s/keyway.conf:12: backend \"third\": refusing to "
			"open as asked",
			fx->dir);
	assert_open_fails(fx->conf, KW_ERR_MODULE, expect);
	free(expect);
}

static void test_missing_file(void **state)
{
	struct fixture *fx = *state;
	char *expect = expand("%s/keyway.conf: cannot open configuration: "
			      "No such file or directory",
			      fx->dir);

	assert_open_fails(fx->conf, KW_ERR_CONFIG, expect);
	free(expect);
}

static void test_directory(void **state)
{
	struct fixture *fx = *state;
	char *expect = expand("%s: configuration is not a regular file",
			      fx->dir);

	assert_open_fails(fx->dir, KW_ERR_CONFIG, expect);
	free(expect);
}

/* ---- kw_check() reports every problem ---- */

static void test_check_reports_all(void **state)
{
	struct fixture *fx = *state;
	char *want[3];
	kw_status st;

	write_conf(fx, "backends: {\n"                  /* 1 */
		       "  org_keys: {\n"                /* 2 */
		       "    module = \"sqlte\";\n"      /* 3 */
		       "  };\n"                         /* 4 */
		       "  user_keys: {\n"               /* 5 */
		       "    module = \"vualt\";\n"      /* 6 */
		       "  };\n"                         /* 7 */
		       "  server: {\n"                  /* 8 */
		       "    module = \"fake\";\n"       /* 9 */
		       "    answer = \"found\";\n"      /* 10 */
		       "  };\n"                         /* 11 */
		       "};\n"                           /* 12 */
		       "chains: {\n"                    /* 13 */
		       "  default = (\n"                /* 14 */
		       "    {\n"                        /* 15 */
		       "      backend = \"org_keys\";\n" /* 16 */
		       "      control = \"sufficient\";\n" /* 17 */
		       "    },\n"                       /* 18 */
		       "    {\n"                        /* 19 */
		       "      backend = \"user_keys\";\n" /* 20 */
		       "      control = \"sufficient\";\n" /* 21 */
		       "    },\n"                       /* 22 */
		       "    {\n"                        /* 23 */
		       "      backend = \"sever\";\n"   /* 24 */
		       "      control = \"required\";\n" /* 25 */
		       "    }\n"
		       "  );\n"
		       "};\n");
	want[0] = expand("%s/keyway.conf:3: backend \"org_keys\": cannot "
			 "load module \"sqlte\": no kw_sqlte.so in %M or %D",
			 fx->dir);
	want[1] = expand("%s/keyway.conf:6: backend \"user_keys\": cannot "
			 "load module \"vualt\": no kw_vualt.so in %M or %D",
			 fx->dir);
	want[2] = expand("%s/keyway.conf:24: chain \"default\": unknown "
			 "backend \"sever\"",
			 fx->dir);

	st = kw_check(fx->conf, collect, fx);
	assert_int_equal(fx->nlines, 3);
	for (size_t i = 0; i < 3; i++) {
		assert_string_equal(fx->lines[i], want[i]);
		free(want[i]);
	}
	assert_int_not_equal(st, KW_OK);
	assert_status(st, KW_ERR_MODULE);
}

/* check runs every backend's health check, which kw_open() does not. */
static void test_check_health(void **state)
{
	struct fixture *fx = *state;
	kw_ctx *ctx = NULL;
	char *expect;

	write_conf(fx, BACKEND("    module = \"fake\";\n"      /* 3 */
			       "    answer = \"found\";\n"     /* 4 */
			       "    check_answer = \"unavail\";\n")); /* 5 */
	assert_status(kw_open(&ctx, fx->conf), KW_OK);
	kw_close(ctx);

	expect = expand("%s/keyway.conf:2: backend \"a\": health check: "
			"unavail: fake check: unavail",
			fx->dir);
	assert_status(kw_check(fx->conf, collect, fx), KW_ERR_UNAVAIL);
	assert_int_equal(fx->nlines, 1);
	assert_string_equal(fx->lines[0], expect);
	free(expect);
}

/* ---- permissions of the configuration ---- */

static void check_mode_refused(struct fixture *fx, mode_t mode,
			       const char *who)
{
	char *fmt, *expect;

	free(tu_write(fx->dir, "keyway.conf", mode, "%s", BACKEND_A CHAIN_A));
	assert_true(asprintf(&fmt, "%%s/keyway.conf: refusing to read the "
			     "configuration: it is writable by %s (chmod "
			     "go-w %%s/keyway.conf)",
			     who) > 0);
	expect = expand(fmt, fx->dir);
	assert_open_fails(fx->conf, KW_ERR_PERM, expect);
	free(expect);
	free(fmt);
}

static void test_perm_group_writable(void **state)
{
	check_mode_refused(*state, 0664, "group");
}

static void test_perm_world_writable(void **state)
{
	check_mode_refused(*state, 0646, "others");
}

static void test_perm_0644_accepted(void **state)
{
	struct fixture *fx = *state;
	kw_ctx *ctx = NULL;
	struct stat st;

	free(tu_write(fx->dir, "keyway.conf", 0644, "%s", BACKEND_A CHAIN_A));
	assert_int_equal(stat(fx->conf, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	assert_status(kw_open(&ctx, fx->conf), KW_OK);
	assert_non_null(ctx);
	kw_close(ctx);
}

/* Owned by somebody else: chmod cannot fix that, so the message must not
 * suggest it. */
static void test_perm_other_owner(void **state)
{
	struct fixture *fx = *state;
	char *expect;

	if (geteuid() != 0)
		skip();
	write_conf(fx, BACKEND_A CHAIN_A);
	assert_int_equal(chown(fx->conf, 65534, 65534), 0);
	expect = expand("%s/keyway.conf: refusing to read the configuration: "
			"it is owned by uid 65534, not by root (chown "
			"0 %s/keyway.conf)",
			fx->dir);
	assert_open_fails(fx->conf, KW_ERR_PERM, expect);
	free(expect);
}

/* Main file with one backend and an @include of chains.conf (line 7). */
#define MAIN_WITH_INCLUDE BACKEND_A "@include \"chains.conf\"\n"

static void test_perm_include_group_writable(void **state)
{
	struct fixture *fx = *state;
	char *expect;

	write_conf(fx, MAIN_WITH_INCLUDE);
	free(tu_write(fx->dir, "chains.conf", 0664, "%s", CHAIN_A));
	/* A safe file of the same name in the working directory must not
	 * stand in for the one that is read. */
	move_elsewhere(fx);
	free(tu_write(fx->elsewhere, "chains.conf", 0644, "%s", CHAIN_A));
	expect = expand("%s/chains.conf: refusing to read the included "
			"configuration: it is writable by group (chmod go-w "
			"%s/chains.conf)",
			fx->dir);
	assert_open_fails(fx->conf, KW_ERR_PERM, expect);
	free(expect);
}

/* ---- @include ---- */

static void test_include_loads(void **state)
{
	struct fixture *fx = *state;
	char value[128], backend[64];
	kw_ctx *ctx = NULL;

	write_conf(fx, MAIN_WITH_INCLUDE);
	free(tu_write(fx->dir, "chains.conf", 0644, "%s", CHAIN_A));
	move_elsewhere(fx);
	assert_status(kw_open(&ctx, fx->conf), KW_OK);
	assert_non_null(ctx);
	assert_status(tu_resolve(ctx, NULL, "openai", NULL, NULL, value,
				 sizeof(value), backend, sizeof(backend)),
		      KW_OK);
	assert_string_equal(value, "sk-fake-a-0123456789abcdef");
	assert_string_equal(backend, "a");
	kw_close(ctx);
}

static void test_include_error_names_included_file(void **state)
{
	struct fixture *fx = *state;
	char *expect;

	write_conf(fx, MAIN_WITH_INCLUDE);
	move_elsewhere(fx);
	free(tu_write(fx->dir, "chains.conf", 0644,
		      "chains: {\n"                     /* 1 */
		      "  default = (\n"                 /* 2 */
		      "    {\n"                         /* 3 */
		      "      backend = \"a\";\n"        /* 4 */
		      "      control = \"sufficent\";\n" /* 5 */
		      "    }\n"
		      "  );\n"
		      "};\n"));
	expect = expand("%s/chains.conf:5: chain \"default\": entry 1: "
			"unknown control \"sufficent\" (expected required, "
			"requisite, sufficient, optional or [status=action "
			"...])",
			fx->dir);
	assert_open_fails(fx->conf, KW_ERR_CONFIG, expect);
	free(expect);
}

static void test_include_syntax_error(void **state)
{
	struct fixture *fx = *state;
	char *expect;

	write_conf(fx, MAIN_WITH_INCLUDE);
	move_elsewhere(fx);
	free(tu_write(fx->dir, "chains.conf", 0644,
		      "chains: {\n"                     /* 1 */
		      "  default = (\n"                 /* 2 */
		      "    {\n"                         /* 3 */
		      "      backend = a;\n"            /* 4 */
		      "    }\n"
		      "  );\n"
		      "};\n"));
	expect = expand("%s/chains.conf:4: syntax error at a value after "
			"'=' (a string value must be in double quotes)",
			fx->dir);
	assert_open_fails(fx->conf, KW_ERR_CONFIG, expect);
	free(expect);
}

/* A value where a syntax error stops may be a key pasted in the wrong
 * place: whatever its shape, it is named by its kind, never shown. */
static void test_syntax_error_hides_values(void **state)
{
	static const struct {
		const char *line;   /* line 4 of the backend */
		const char *secret; /* what must not be shown */
		const char *expect;
	} rows[] = {
		{ "    answer = sk-ant-api03-SECRETSECRETSECRETSECRET;\n",
		  "sk-ant-api03",
		  "%s/keyway.conf:4: syntax error at a value after '=' (a "
		  "string value must be in double quotes)" },
		{ "    answer = deadbeefcafe0123456789abcdef01234567;\n",
		  "deadbeefcafe",
		  "%s/keyway.conf:4: syntax error at a value after '=' (a "
		  "string value must be in double quotes)" },
		{ "    answer : averylongpastedwordthatisnotaname;\n",
		  "averylongpast",
		  "%s/keyway.conf:4: syntax error at a value after ':' (a "
		  "string value must be in double quotes)" },
		{ "    answer sk-ant-api03-SECRETSECRETSECRETSECRET;\n",
		  "sk-ant-api03",
		  "%s/keyway.conf:4: syntax error at an unquoted word (a "
		  "missing '=' before it?)" },
		{ "    answer = [ sk-ant-api03-SECRETSECRETSECRETSECRET ];\n",
		  "sk-ant-api03",
		  "%s/keyway.conf:4: syntax error at an unquoted word" },
		{ "    answer = \"x\" 4f2a9c0d1e8b7a6f5e4d3c2b1a0f9e8d;\n",
		  "4f2a9c0d1e8b",
		  "%s/keyway.conf:4: syntax error at a number (a missing ',' "
		  "or ';' before it?)" },
	};
	struct fixture *fx = *state;

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		char *text = NULL, *expect = expand(rows[i].expect, fx->dir);

		assert_true(asprintf(&text, "backends: {\n  a: {\n"
				     "    module = \"fake\";\n%s  };\n};\n",
				     rows[i].line) > 0);
		write_conf(fx, text);
		assert_open_fails(fx->conf, KW_ERR_CONFIG, expect);
		assert_null(strstr(kw_last_error(), rows[i].secret));
		free(expect);
		free(text);
	}
}

/* A name in a setting name's place is shown; a long one is not. */
static void test_syntax_error_names(void **state)
{
	struct fixture *fx = *state;
	char *expect;

	write_conf(fx, BACKEND("    module = \"fake\";\n"      /* 3 */
			       "    answer = \"found\";\n"     /* 4 */
			       "    = 1; $x = 2;\n"));         /* 5 */
	expect = expand("%s/keyway.conf:5: syntax error at '='", fx->dir);
	assert_open_fails(fx->conf, KW_ERR_CONFIG, expect);
	free(expect);
}

/* Finding where a syntax error is costs a parse per token tried: a long
 * line is cheap all the same, with the bare message when finding it would
 * cost too much.  The alarm ends the test if it is not cheap. */
static void test_syntax_error_long_line(void **state)
{
	struct fixture *fx = *state;
#ifdef __SANITIZE_ADDRESS__
	/* libconfig grows an array a little at a time, which the
	 * sanitizer's realloc() makes slow on its own. */
	size_t n = 100 * 1000, len;
	const char *at_end = " at ';'"; /* within the budget: found */
#else
	size_t n = 1000 * 1000, len;
	const char *at_end = "";        /* past it: the bare message */
#endif
	char *text, *expect;

	/* valgrind's realloc() is slow as the sanitizer's is. */
	if (getenv("KEYWAY_VALGRIND") != NULL) {
		n = 100 * 1000;
		at_end = " at ';'";
	}
	text = malloc(n + 64);

	assert_non_null(text);
	/* x = [1,N,...,N ; -- the error is at the end of the line. */
	len = (size_t)sprintf(text, "x = [1");
	while (len < n)
		len += (size_t)sprintf(text + len, ",1234567890123");
	sprintf(text + len, " ;\n");
	write_conf(fx, text);
	expect = expand("%s/keyway.conf:1: syntax error", fx->dir);
	{
		char *found = NULL;

		assert_true(asprintf(&found, "%s%s", expect, at_end) > 0);
		alarm(30);
		assert_open_fails(fx->conf, KW_ERR_CONFIG, found);
		free(found);
	}

	/* Near the start: the tokens tried are all after it. */
	memcpy(text, "x = ] [", 7);
	write_conf(fx, text);
	assert_open_fails(fx->conf, KW_ERR_CONFIG, expect);
	alarm(0);
	free(expect);
	free(text);
}

/* At most 256 files are included in all, however shallow. */
static void test_include_count(void **state)
{
	struct fixture *fx = *state;
	char *text = NULL, *expect;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	kw_ctx *ctx = NULL;

	assert_non_null(out);
	fputs(BACKEND_A CHAIN_A, out); /* 14 lines */
	for (int i = 0; i < 256; i++)
		fputs("@include \"empty.conf\"\n", out);
	assert_int_equal(fclose(out), 0);
	free(tu_write(fx->dir, "empty.conf", 0644, "%s", ""));
	write_conf(fx, text);
	assert_status(kw_open(&ctx, fx->conf), KW_OK);
	kw_close(ctx);

	free(tu_write(fx->dir, "keyway.conf", 0644,
		      "%s@include \"empty.conf\"\n", text));
	expect = expand("%s/keyway.conf:271: cannot include %s/empty.conf: "
			"more than 256 files are included in all",
			fx->dir);
	assert_open_fails(fx->conf, KW_ERR_CONFIG, expect);
	free(expect);
	free(text);
}

/* Only a comment may follow an @include's file name on its line. */
static void test_include_trailing_text(void **state)
{
	struct fixture *fx = *state;
	kw_ctx *ctx = NULL;
	char *expect;

	free(tu_write(fx->dir, "chains.conf", 0644, "%s", CHAIN_A));
	write_conf(fx, BACKEND_A "@include \"chains.conf\" \t# chains\n");
	assert_status(kw_open(&ctx, fx->conf), KW_OK);
	kw_close(ctx);
	write_conf(fx, BACKEND_A "@include \"chains.conf\" /* c */ // c\n");
	assert_status(kw_open(&ctx, fx->conf), KW_OK);
	kw_close(ctx);

	write_conf(fx, BACKEND_A "@include \"chains.conf\" x = 1;\n");
	expect = expand("%s/keyway.conf:7: @include: only a comment may "
			"follow the file name on its line",
			fx->dir);
	assert_open_fails(fx->conf, KW_ERR_CONFIG, expect);
	write_conf(fx, BACKEND_A "@include \"chains.conf\" /* c */ x = 1;\n");
	assert_open_fails(fx->conf, KW_ERR_CONFIG, expect);
	free(expect);
}

/* kw_backend_scope() checks a name before it echoes it. */
static void test_backend_scope_name(void **state)
{
	struct fixture *fx = *state;
	kw_scope scope = KW_SCOPE_USER;
	kw_ctx *ctx = NULL;
	char *expect;

	write_conf(fx, BACKEND_A CHAIN_A);
	assert_status(kw_open(&ctx, fx->conf), KW_OK);
	assert_status(kw_backend_scope(ctx, "a", &scope), KW_OK);
	assert_int_equal(scope, KW_SCOPE_NONE);
	assert_status(kw_backend_scope(ctx, "b", &scope), KW_ERR_INVAL);
	expect = expand("%s/keyway.conf: no backend \"b\"", fx->dir);
	assert_string_equal(kw_last_error(), expect);
	free(expect);
	assert_status(kw_backend_scope(ctx, "b\033]0;x\a", &scope),
		      KW_ERR_INVAL);
	assert_string_equal(kw_last_error(), "invalid backend name: it holds "
					     "a control character (at byte 2)");
	assert_int_equal(scope, KW_SCOPE_NONE);
	kw_close(ctx);
}

/* libconfig's scanner exit()s on an @include of a directory: it is
 * refused before libconfig sees it, and the program goes on. */
static void test_include_directory(void **state)
{
	struct fixture *fx = *state;
	char *sub, *expect;

	write_conf(fx, BACKEND_A "@include \"chains.d\"\n" CHAIN_A);
	assert_true(asprintf(&sub, "%s/chains.d", fx->dir) > 0);
	assert_int_equal(mkdir(sub, 0755), 0);
	free(sub);
	expect = expand("%s/keyway.conf:7: cannot include %s/chains.d: it is a "
			"directory, not a regular file",
			fx->dir);
	assert_open_fails(fx->conf, KW_ERR_CONFIG, expect);
	assert_status(kw_check(fx->conf, collect, fx), KW_ERR_CONFIG);
	assert_int_equal(fx->nlines, 1);
	assert_string_equal(fx->lines[0], expect);
	free(expect);
}

/* What is checked is what is read: a FIFO would hand over whatever its
 * writer chooses, and a link can be pointed elsewhere after a check by
 * name. */
static void test_include_not_a_file(void **state)
{
	struct fixture *fx = *state;
	char *path, *expect;

	write_conf(fx, MAIN_WITH_INCLUDE);
	assert_true(asprintf(&path, "%s/chains.conf", fx->dir) > 0);
	assert_int_equal(mkfifo(path, 0644), 0);
	expect = expand("%s/keyway.conf:7: cannot include %s/chains.conf: it "
			"is a FIFO, not a regular file",
			fx->dir);
	assert_open_fails(fx->conf, KW_ERR_CONFIG, expect);
	free(expect);

	assert_int_equal(unlink(path), 0);
	free(tu_write(fx->dir, "real.conf", 0644, "%s", CHAIN_A));
	assert_int_equal(symlink("real.conf", path), 0);
	expect = expand("%s/keyway.conf:7: cannot include %s/chains.conf: it "
			"is a symbolic link; include the file itself",
			fx->dir);
	assert_open_fails(fx->conf, KW_ERR_CONFIG, expect);
	free(expect);
	free(path);
}

/* Lines are counted in each file, before, inside and after the included
 * text, through two levels; an @include in a comment or a string is
 * text, not an include. */
static void test_include_lines(void **state)
{
	struct fixture *fx = *state;
	kw_ctx *ctx = NULL;
	char *want[3];

	write_conf(fx, "/* @include \"nosuch.conf\"\n"    /* 1 */
		       "@include \"nosuch.conf\" */\n"     /* 2 */
		       "backends: {\n"                      /* 3 */
		       "  @include \"a.conf\"\n"            /* 4 */
		       "  b: {\n"                           /* 5 */
		       "    module = \"fake\";\n"           /* 6 */
		       "    answer = \"found\";\n"          /* 7 */
		       "    extra = \"\n"                   /* 8 */
		       "@include \\\"nosuch.conf\\\"\";\n" /* 9 */
		       "  };\n"                             /* 10 */
		       "};\n"                               /* 11 */
		       CHAIN_A);                           /* 12-19 */
	free(tu_write(fx->dir, "a.conf", 0644,
		      "a: {\n"                             /* 1 */
		      "  module = \"fake\";\n"             /* 2 */
		      "  @include \"b.conf\"\n"            /* 3 */
		      "  typo = 1;\n"                       /* 4 */
		      "};\n"));                            /* 5 */
	free(tu_write(fx->dir, "b.conf", 0644,
		      "# answers\n"                        /* 1 */
		      "answer = \"found\";\n"              /* 2 */
		      "retries = 3;"));                    /* 3, no newline */
	want[0] = expand("%s/b.conf:3: backend \"a\": unknown setting "
			 "\"retries\" (module \"fake\" takes answer, value, "
			 "open_error, check_answer, providers, nul_at, status, "
			 "log, usage_threads)",
			 fx->dir);
	want[1] = expand("%s/a.conf:4: backend \"a\": unknown setting "
			 "\"typo\" (module \"fake\" takes answer, value, "
			 "open_error, check_answer, providers, nul_at, status, "
			 "log, usage_threads)",
			 fx->dir);
	want[2] = expand("%s/keyway.conf:8: backend \"b\": unknown setting "
			 "\"extra\" (module \"fake\" takes answer, value, "
			 "open_error, check_answer, providers, nul_at, status, "
			 "log, usage_threads)",
			 fx->dir);
	assert_status(kw_check(fx->conf, collect, fx), KW_ERR_CONFIG);
	assert_int_equal(fx->nlines, 3);
	for (size_t i = 0; i < 3; i++)
		assert_string_equal(fx->lines[i], want[i]);
	for (size_t i = 0; i < 3; i++)
		free(want[i]);
	assert_status(kw_open(&ctx, fx->conf), KW_ERR_CONFIG);
}

/* ---- KW_SETTING_PATH: relative to the configuration's directory ---- */

static void test_relative_path_setting(void **state)
{
	struct fixture *fx = *state;
	kw_request req = KW_REQUEST_INIT;
	const kw_trace_step *step;
	char value[128], backend[64];
	kw_ctx *ctx = NULL;
	kw_trace *t = NULL;
	char *detail;

	/* The key must come from the file, not from the test's own
	 * environment. */
	assert_int_equal(unsetenv("ANTHROPIC_API_KEY"), 0);
	free(tu_write(fx->dir, "server.env", 0600,
		      "ANTHROPIC_API_KEY=sk-ant-test-0123456789abcdef\n"));
	write_conf(fx, "backends: {\n"
		       "  server_env: {\n"
		       "    module = \"env\";\n"
		       "    dotenv = \"server.env\";\n"
		       "  };\n"
		       "};\n"
		       "chains: {\n"
		       "  default = (\n"
		       "    {\n"
		       "      backend = \"server_env\";\n"
		       "      control = \"required\";\n"
		       "    }\n"
		       "  );\n"
		       "};\n");
	move_elsewhere(fx);
	assert_status(kw_open(&ctx, fx->conf), KW_OK);
	assert_non_null(ctx);
	assert_status(tu_resolve(ctx, NULL, "anthropic", NULL, NULL, value,
				 sizeof(value), backend, sizeof(backend)),
		      KW_OK);
	assert_string_equal(value, "sk-ant-test-0123456789abcdef");
	assert_string_equal(backend, "server_env");

	/* The module was handed the absolute path, not "server.env" read
	 * against whatever the working directory happens to be. */
	req.provider = "anthropic";
	assert_status(kw_explain(ctx, &req, &t), KW_OK);
	assert_int_equal(kw_trace_len(t), 1);
	step = kw_trace_get(t, 0);
	assert_non_null(step);
	detail = expand("$ANTHROPIC_API_KEY from %s/server.env", fx->dir);
	assert_string_equal(step->detail, detail);
	free(detail);
	kw_trace_free(t);
	kw_close(ctx);
}

/* A dotenv file that is not there, beside the environment: the backend
 * serves the environment, and a miss says where the file was looked
 * for. */
static void test_env_dotenv_missing_optional(void **state)
{
	struct fixture *fx = *state;
	kw_request req = KW_REQUEST_INIT;
	const kw_trace_step *step;
	char value[128], backend[64];
	kw_ctx *ctx = NULL;
	kw_trace *t = NULL;
	char *detail;

	assert_int_equal(setenv("ANTHROPIC_API_KEY",
				"sk-ant-env-0123456789abcdef", 1),
			 0);
	write_conf(fx, BACKEND("    module = \"env\";\n"
			       "    dotenv = \"server.env\";\n"));
	assert_status(kw_open(&ctx, fx->conf), KW_OK);
	assert_non_null(ctx);
	assert_status(tu_resolve(ctx, NULL, "anthropic", NULL, NULL, value,
				 sizeof(value), backend, sizeof(backend)),
		      KW_OK);
	assert_string_equal(value, "sk-ant-env-0123456789abcdef");
	assert_int_equal(unsetenv("ANTHROPIC_API_KEY"), 0);
	req.provider = "anthropic";
	assert_status(kw_explain(ctx, &req, &t), KW_OK);
	step = kw_trace_get(t, 0);
	assert_non_null(step);
	detail = expand("$ANTHROPIC_API_KEY is not set (dotenv "
			"%s/server.env does not exist)",
			fx->dir);
	assert_string_equal(step->detail, detail);
	free(detail);
	kw_trace_free(t);
	kw_close(ctx);
	assert_status(kw_check(fx->conf, collect, fx), KW_OK);
	assert_int_equal(fx->nlines, 0);
}

/* ---- the program ---- */

#define FX_TEST(f) cmocka_unit_test_setup_teardown(f, fx_setup, fx_teardown)

static const struct CMUnitTest other_tests[] = {
	FX_TEST(test_good_config_resolves),
	FX_TEST(test_fail_closed_bad_setting),
	FX_TEST(test_fail_closed_open_error),
	FX_TEST(test_missing_file),
	FX_TEST(test_directory),
	FX_TEST(test_check_reports_all),
	FX_TEST(test_check_health),
	FX_TEST(test_perm_group_writable),
	FX_TEST(test_perm_world_writable),
	FX_TEST(test_perm_0644_accepted),
	FX_TEST(test_perm_other_owner),
	FX_TEST(test_perm_include_group_writable),
	FX_TEST(test_include_loads),
	FX_TEST(test_include_error_names_included_file),
	FX_TEST(test_include_syntax_error),
	FX_TEST(test_backend_scope_name),
	FX_TEST(test_include_count),
	FX_TEST(test_include_trailing_text),
	FX_TEST(test_syntax_error_hides_values),
	FX_TEST(test_syntax_error_names),
	FX_TEST(test_syntax_error_long_line),
	FX_TEST(test_include_directory),
	FX_TEST(test_include_not_a_file),
	FX_TEST(test_include_lines),
	FX_TEST(test_relative_path_setting),
	FX_TEST(test_env_dotenv_missing_optional),
};

#define NOTHER (sizeof(other_tests) / sizeof(other_tests[0]))

static struct CMUnitTest tests[NBAD + NOTHER];

static int group_setup(void **state)
{
	(void)state;
	/* The expectations name modules by where the loader finds them. */
	if (getenv("KEYWAY_MODULE_DIR") == NULL) {
		fprintf(stderr, "KEYWAY_MODULE_DIR must name the built "
				"modules\n");
		return -1;
	}
	return 0;
}

int main(void)
{
	/* Master keys come from the environment: start without any. */
	unsetenv("KEYWAY_MASTER_KEY");
	unsetenv("API_KEY_ENCRYPTION_KEY");
	for (size_t i = 0; i < NBAD; i++) {
		tests[i].name = bad_configs[i].name;
		tests[i].test_func = test_bad_config;
		tests[i].setup_func = fx_setup;
		tests[i].teardown_func = fx_teardown;
		tests[i].initial_state = &bad_configs[i];
	}
	memcpy(tests + NBAD, other_tests, sizeof(other_tests));
	return cmocka_run_group_tests(tests, group_setup, NULL);
}

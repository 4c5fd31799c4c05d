/*
 * config.h - declarative settings read from the environment.
 *
 * A service describes its settings as a table of struct cm_config_item
 * (env name, type, default, bounds, secret flag, help) terminated by
 * CM_CONFIG_END. cm_config_load() reads every entry, validates all of them
 * and, on any problem, returns CM_EINVAL with one message listing every
 * problem, one per line:
 *   invalid configuration:
 *     POSTGRES_PORT: must be an integer between 1 and 65535 (got "abc")
 *     JWT_SECRET_KEY: required but not set
 *     SERVICE_SECRET: must be at least 32 bytes long (value hidden)
 * A secret's value is never echoed ("(value hidden)"), nor is a URL that
 * carries user info. An empty variable counts as unset. Values are then
 * read by name with the typed getters. cm_config_help() prints the table
 * with defaults (secrets shown as "(secret)").
 *
 * Composite settings: when DATABASE_URL is in the table and set
 * (postgres:// or postgresql://user:password@host:port/dbname, parts
 * percent-decoded, no query string), each part it has wins over
 * POSTGRES_HOST/PORT/DB/USER/PASSWORD; when REDIS_URL
 * (redis://[default][:password@]host[:port][/db]) is set, each part it has
 * wins over REDIS_HOST/PORT/PASSWORD/DB. Callers read one set of names;
 * the overridden values are validated by their own items and count as
 * set. A malformed URL is one more listed problem (its value hidden).
 * Declare DATABASE_URL and REDIS_URL as CM_CFG_STRING items, CM_CFG_SECRET.
 *
 * Getters take a name that must be in the table and of a matching type;
 * anything else is a programming error and aborts with a message.
 *
 * Lifetime: a struct cm_config is loaded once at start-up and read-only
 * afterwards, so it may be read from any thread. Strings it returns live as
 * long as the config (until the next load or free). Secret values are
 * zeroed when freed.
 */
#ifndef COMMON_CONFIG_H
#define COMMON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum cm_config_type {
	CM_CFG_STRING = 0,
	CM_CFG_INT, /* int64 in [min, max]; min == max == 0: any int64 */
	CM_CFG_BOOL,
	CM_CFG_PORT,  /* int in [min, max]: max 0 means 65535; min 0
			 allows port 0 (a free port), so say 1 */
	CM_CFG_URL,   /* http:// or https:// URL with a non-empty host */
	CM_CFG_LEVEL, /* log level name; cm_config_int gives the level */
};

#define CM_CFG_REQUIRED (1u << 0) /* must be set (no default) */
#define CM_CFG_SECRET (1u << 1)	  /* never printed, logged or echoed */

struct cm_config_item {
	const char *name; /* environment variable */
	enum cm_config_type type;
	const char *def;  /* default as text; NULL: unset */
	int64_t min, max; /* bounds for INT/PORT; for STRING/URL a
			     minimum length when min > 0 and a
			     maximum length when max > 0 (bytes) */
	unsigned flags;
	const char *help;
};

/* clang-format off */
#define CM_CONFIG_END { NULL, 0, NULL, 0, 0, 0, NULL }
/* clang-format on */

struct cm_config;

/* cm_config_new - empty config for the given table (not copied: static);
   aborts if a name appears twice. */
struct cm_config *cm_config_new(const struct cm_config_item *items);
/* cm_config_free - free; accepts NULL. */
void cm_config_free(struct cm_config *cfg);
/* cm_config_load - read env via getenv; 0 (and *problems = NULL), or
   CM_EINVAL and *problems set to a malloc'd multi-line report listing every
   problem (caller frees). problems may be NULL. Loading again starts over. */
int cm_config_load(struct cm_config *cfg, char **problems);
/* cm_config_load_from - as load, but values come from lookup(name, ctx). */
int cm_config_load_from(struct cm_config *cfg,
			const char *(*lookup)(const char *name, void *ctx),
			void *ctx, char **problems);
/* cm_config_str - the value's text (env, URL part or default; any type) or
   NULL if unset with no default. */
const char *cm_config_str(const struct cm_config *cfg, const char *name);
/* cm_config_int - INT, PORT or LEVEL value (0 if unset). */
int64_t cm_config_int(const struct cm_config *cfg, const char *name);
/* cm_config_bool - BOOL value (false if unset). */
bool cm_config_bool(const struct cm_config *cfg, const char *name);
/* cm_config_is_set - whether the value came from the environment (directly
   or from DATABASE_URL/REDIS_URL), not from the default. */
bool cm_config_is_set(const struct cm_config *cfg, const char *name);
/* cm_config_help - print one "NAME  type  default  help" line per item to
   f; the default column says "(required)", "(secret)" or "(none)" instead
   where that applies, and never shows a secret's default. */
void cm_config_help(const struct cm_config_item *items, FILE *f);

#endif

/*
 * config.h - declarative settings read from the environment.
 *
 * A service describes its settings as a table of struct cm_config_item
 * (env name, type, default, bounds, secret flag, help) terminated by
 * CM_CONFIG_END. cm_config_load() reads every entry, validates all of them
 * and, on any problem, returns CM_EINVAL with one message listing every
 * problem (never a secret's value). Values are then read by name with the
 * typed getters. cm_config_help() prints the table with defaults (secrets
 * shown as "(secret)").
 *
 * Composite settings: when DATABASE_URL is set it wins over POSTGRES_*;
 * when REDIS_URL (redis://[:password@]host:port[/db]) is set it wins over
 * REDIS_*; cm_config_load() fills the POSTGRES_*/REDIS_* values from them so
 * callers read one set of names.
 *
 * Lifetime: a struct cm_config is loaded once at start-up and read-only
 * afterwards, so it may be read from any thread. Strings it returns live as
 * long as the config.
 */
#ifndef COMMON_CONFIG_H
#define COMMON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum cm_config_type {
	CM_CFG_STRING = 0,
	CM_CFG_INT,	/* int64 in [min, max] */
	CM_CFG_BOOL,
	CM_CFG_PORT,	/* int in [1, 65535] (0 allowed when min is 0) */
	CM_CFG_URL,	/* http:// or https:// URL */
	CM_CFG_LEVEL,	/* log level name */
};

#define CM_CFG_REQUIRED (1u << 0) /* must be set (no default) */
#define CM_CFG_SECRET (1u << 1)	  /* never printed, logged or echoed */

struct cm_config_item {
	const char *name;	/* environment variable */
	enum cm_config_type type;
	const char *def;	/* default as text; NULL: unset */
	int64_t min, max;	/* bounds for INT (and string length for
				   STRING/URL when max > 0) */
	unsigned flags;
	const char *help;
};

#define CM_CONFIG_END { NULL, 0, NULL, 0, 0, 0, NULL }

struct cm_config;

/* cm_config_new - empty config for the given table (not copied: static). */
struct cm_config *cm_config_new(const struct cm_config_item *items);
/* cm_config_free - free; accepts NULL. */
void cm_config_free(struct cm_config *cfg);
/* cm_config_load - read env via getenv; 0, or CM_EINVAL and *problems set to
   a malloc'd multi-line report listing every problem (caller frees). */
int cm_config_load(struct cm_config *cfg, char **problems);
/* cm_config_load_from - as load, but values come from lookup(name, ctx). */
int cm_config_load_from(struct cm_config *cfg,
			const char *(*lookup)(const char *name, void *ctx),
			void *ctx, char **problems);
/* cm_config_str - value or NULL if unset; name must be in the table. */
const char *cm_config_str(const struct cm_config *cfg, const char *name);
/* cm_config_int - integer/port value (0 if unset). */
int64_t cm_config_int(const struct cm_config *cfg, const char *name);
/* cm_config_bool - boolean value (false if unset). */
bool cm_config_bool(const struct cm_config *cfg, const char *name);
/* cm_config_is_set - whether the value came from the environment. */
bool cm_config_is_set(const struct cm_config *cfg, const char *name);
/* cm_config_help - print "NAME  type  default  help" lines to f. */
void cm_config_help(const struct cm_config_item *items, FILE *f);

#endif

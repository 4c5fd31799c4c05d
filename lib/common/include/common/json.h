/*
 * json.h - typed reads from cJSON trees with errors that name the field.
 *
 * Every getter takes a parent object and a field name and writes a message
 * such as "field 'email' must be a string" or "field 'limits.max_users'
 * must be an integer between 1 and 100000" into errbuf on failure (the
 * path prefix comes from the caller: pass "limits" as `path` for nested
 * objects, or NULL at the top level). Missing optional fields leave *out
 * untouched and return CM_ENOENT; missing required ones return CM_EINVAL.
 * cm_json_parse() parses a bounded buffer and, on malformed input, says
 * where ("invalid JSON at line 3, column 14").
 * Pure functions; thread-safe.
 */
#ifndef COMMON_JSON_H
#define COMMON_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "common/err.h"

/* cm_json_parse - parse len bytes (need not be NUL-terminated); NULL on
   error with the position in errbuf. Refuses nesting deeper than 64. */
cJSON *cm_json_parse(const char *data, size_t len, char errbuf[CM_ERRBUF_LEN]);
/* cm_json_get_str - string field; max_len 0 means no bound. */
int cm_json_get_str(const cJSON *obj, const char *path, const char *name,
		    bool required, size_t max_len, const char **out,
		    char errbuf[CM_ERRBUF_LEN]);
/* cm_json_get_i64 - integral number field in [min, max]. */
int cm_json_get_i64(const cJSON *obj, const char *path, const char *name,
		    bool required, int64_t min, int64_t max, int64_t *out,
		    char errbuf[CM_ERRBUF_LEN]);
/* cm_json_get_double - number field in [min, max]. */
int cm_json_get_double(const cJSON *obj, const char *path, const char *name,
		       bool required, double min, double max, double *out,
		       char errbuf[CM_ERRBUF_LEN]);
/* cm_json_get_bool - boolean field. */
int cm_json_get_bool(const cJSON *obj, const char *path, const char *name,
		     bool required, bool *out, char errbuf[CM_ERRBUF_LEN]);
/* cm_json_get_enum - string field that must be one of values (NULL-ended);
   *out is the index. */
int cm_json_get_enum(const cJSON *obj, const char *path, const char *name,
		     bool required, const char *const *values, int *out,
		     char errbuf[CM_ERRBUF_LEN]);
/* cm_json_get_uuid - string field in canonical uuid form. */
int cm_json_get_uuid(const cJSON *obj, const char *path, const char *name,
		     bool required, const char **out,
		     char errbuf[CM_ERRBUF_LEN]);
/* cm_json_get_object - object field (borrowed pointer). */
int cm_json_get_object(const cJSON *obj, const char *path, const char *name,
		       bool required, const cJSON **out,
		       char errbuf[CM_ERRBUF_LEN]);
/* cm_json_get_array - array field with at most max_items items (0: any). */
int cm_json_get_array(const cJSON *obj, const char *path, const char *name,
		      bool required, int max_items, const cJSON **out,
		      char errbuf[CM_ERRBUF_LEN]);
/* cm_json_print - compact text (malloc'd; abort on OOM). */
char *cm_json_print(const cJSON *json);

#endif

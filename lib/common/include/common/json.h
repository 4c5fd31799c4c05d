/*
 * json.h - typed reads from cJSON trees with errors that name the field.
 *
 * Every getter takes a parent object and a field name and writes a message
 * such as "field 'email' must be a string" or "field 'limits.max_users'
 * must be an integer between 1 and 100000" into errbuf on failure (the
 * path prefix comes from the caller: pass "limits" as `path` for nested
 * objects, or NULL at the top level). Missing optional fields leave *out
 * untouched and return CM_ENOENT; missing required ones return CM_EINVAL
 * ("field 'email' is required"). A JSON null counts as missing. A parent
 * that is not an object is CM_EINVAL even for optional fields. Any other
 * failure is CM_EINVAL with *out untouched. out may be NULL (check only);
 * strings and objects handed out are borrowed from the tree.
 * cm_json_parse() parses a bounded buffer and, on malformed input, says
 * where ("invalid JSON at line 3, column 14"; columns count bytes).
 * Pure functions; thread-safe (positions come from the parse-end pointer, never
 * from cJSON_GetErrorPtr()).
 */
#ifndef COMMON_JSON_H
#define COMMON_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "common/err.h"

#define CM_JSON_MAX_DEPTH 64 /* arrays/objects inside each other */
#define CM_JSON_MAX_INPUT ((size_t)16 << 20) /* bytes cm_json_parse takes */

/* cm_json_parse - parse len bytes (need not be NUL-terminated; data may be
   NULL when len is 0); NULL on error with the position in errbuf. Refuses
   nesting deeper than CM_JSON_MAX_DEPTH, NUL bytes, trailing garbage and
   input over CM_JSON_MAX_INPUT. The tree is the caller's (cJSON_Delete). */
cJSON *cm_json_parse(const char *data, size_t len, char errbuf[CM_ERRBUF_LEN]);
/* cm_json_get_str - string field; max_len 0 means no bound. */
int cm_json_get_str(const cJSON *obj, const char *path, const char *name,
		    bool required, size_t max_len, const char **out,
		    char errbuf[CM_ERRBUF_LEN]);
/* cm_json_get_i64 - integral number field in [min, max]; 1.5 and anything
   beyond +-(2^53 - 1), which a double cannot hold exactly, are refused. */
int cm_json_get_i64(const cJSON *obj, const char *path, const char *name,
		    bool required, int64_t min, int64_t max, int64_t *out,
		    char errbuf[CM_ERRBUF_LEN]);
/* cm_json_get_double - finite number field in [min, max]. */
int cm_json_get_double(const cJSON *obj, const char *path, const char *name,
		       bool required, double min, double max, double *out,
		       char errbuf[CM_ERRBUF_LEN]);
/* cm_json_get_bool - boolean field. */
int cm_json_get_bool(const cJSON *obj, const char *path, const char *name,
		     bool required, bool *out, char errbuf[CM_ERRBUF_LEN]);
/* cm_json_get_enum - string field that must be one of values (NULL-ended);
   the index of the match goes to *out. */
int cm_json_get_enum(const cJSON *obj, const char *path, const char *name,
		     bool required, const char *const *values, int *out,
		     char errbuf[CM_ERRBUF_LEN]);
/* cm_json_get_uuid - string field in canonical uuid form (cm_is_uuid). */
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
/* cm_json_list - a list page {"items": items, "next_cursor": cursor or
   null}; takes ownership of items (NULL: an empty array). */
cJSON *cm_json_list(cJSON *items, const char *next_cursor);
/* cm_json_add_next_cursor - add "next_cursor": cursor, or null when cursor
   is NULL or empty (the last page). */
void cm_json_add_next_cursor(cJSON *obj, const char *cursor);
/* cm_json_print - compact text, "null" for NULL (malloc'd, free() it;
   abort on OOM). */
char *cm_json_print(const cJSON *json);

#endif

/*
 * registry.c - the event type registry and its JSON Schema subset.
 *
 * Supported keywords: type (a name or an array of names: object, array,
 * string, integer, number, boolean, null), required, properties,
 * additionalProperties (false only), enum (strings and numbers), minLength,
 * maxLength, minimum, maximum, maxItems, items, format (uuid, date-time).
 * Unknown keywords are ignored, as JSON Schema does.
 */
#include "evbus.h"

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/json.h"
#include "common/mem.h"

#include "common/banned.h"

static bool
type_is(const char *name, const cJSON *v)
{
	if (strcmp(name, "object") == 0)
		return cJSON_IsObject(v);
	if (strcmp(name, "array") == 0)
		return cJSON_IsArray(v);
	if (strcmp(name, "string") == 0)
		return cJSON_IsString(v);
	if (strcmp(name, "boolean") == 0)
		return cJSON_IsBool(v);
	if (strcmp(name, "null") == 0)
		return cJSON_IsNull(v);
	if (strcmp(name, "number") == 0)
		return cJSON_IsNumber(v);
	if (strcmp(name, "integer") == 0)
		return cJSON_IsNumber(v) && isfinite(v->valuedouble) &&
		       floor(v->valuedouble) == v->valuedouble;
	return false;
}

static int
check_type(const cJSON *schema, const cJSON *v, const char *path,
	   char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(schema, "type");
	const cJSON *it;

	if (cJSON_IsString(t)) {
		if (type_is(t->valuestring, v))
			return 0;
		cm_errf(errbuf, "%s: must be of type %s", path, t->valuestring);
		return CM_EINVAL;
	}
	if (!cJSON_IsArray(t))
		return 0;
	cJSON_ArrayForEach(it, t)
	{
		if (cJSON_IsString(it) && type_is(it->valuestring, v))
			return 0;
	}
	cm_errf(errbuf, "%s: has the wrong type", path);
	return CM_EINVAL;
}

static int
check_enum(const cJSON *schema, const cJSON *v, const char *path,
	   char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(schema, "enum");
	const cJSON *it;

	if (!cJSON_IsArray(e))
		return 0;
	cJSON_ArrayForEach(it, e)
	{
		if (cJSON_Compare(it, v, true))
			return 0;
	}
	cm_errf(errbuf, "%s: is not one of the allowed values", path);
	return CM_EINVAL;
}

static double
num_kw(const cJSON *schema, const char *kw, double def)
{
	const cJSON *n = cJSON_GetObjectItemCaseSensitive(schema, kw);

	return cJSON_IsNumber(n) ? n->valuedouble : def;
}

static int
check_string(const cJSON *schema, const cJSON *v, const char *path,
	     char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *f = cJSON_GetObjectItemCaseSensitive(schema, "format");
	double len = (double)strlen(v->valuestring);

	if (len > num_kw(schema, "maxLength", INFINITY)) {
		cm_errf(errbuf, "%s: is longer than %.0f bytes", path,
			num_kw(schema, "maxLength", 0));
		return CM_EINVAL;
	}
	if (len < num_kw(schema, "minLength", 0)) {
		cm_errf(errbuf, "%s: is too short", path);
		return CM_EINVAL;
	}
	if (!cJSON_IsString(f))
		return 0;
	if (strcmp(f->valuestring, "uuid") == 0 &&
	    !cm_is_uuid(v->valuestring)) {
		cm_errf(errbuf, "%s: must be a uuid", path);
		return CM_EINVAL;
	}
	if (strcmp(f->valuestring, "date-time") == 0 &&
	    !cm_bus_is_rfc3339(v->valuestring)) {
		cm_errf(errbuf, "%s: must be an RFC 3339 time", path);
		return CM_EINVAL;
	}
	return 0;
}

static int
check_number(const cJSON *schema, const cJSON *v, const char *path,
	     char errbuf[CM_ERRBUF_LEN])
{
	if (v->valuedouble < num_kw(schema, "minimum", -INFINITY) ||
	    v->valuedouble > num_kw(schema, "maximum", INFINITY)) {
		cm_errf(errbuf, "%s: is out of range", path);
		return CM_EINVAL;
	}
	return 0;
}

static void
child_path(char out[256], const char *path, const char *name)
{
	snprintf(out, 256, "%s.%.64s", path, name);
}

static int
check_required(const cJSON *schema, const cJSON *v, const char *path,
	       char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *req = cJSON_GetObjectItemCaseSensitive(schema, "required");
	const cJSON *it, *got;
	char p[256];

	cJSON_ArrayForEach(it, req)
	{
		if (!cJSON_IsString(it))
			continue;
		got = cJSON_GetObjectItemCaseSensitive(v, it->valuestring);
		if (!got || cJSON_IsNull(got)) {
			child_path(p, path, it->valuestring);
			cm_errf(errbuf, "%s: is required", p);
			return CM_EINVAL;
		}
	}
	return 0;
}

static int
check_object(const cJSON *schema, const cJSON *v, const char *path,
	     char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *props =
		cJSON_GetObjectItemCaseSensitive(schema, "properties");
	const cJSON *add = cJSON_GetObjectItemCaseSensitive(
		schema, "additionalProperties");
	const cJSON *it, *sub;
	char p[256];
	int rc;

	if ((rc = check_required(schema, v, path, errbuf)) < 0)
		return rc;
	cJSON_ArrayForEach(it, v)
	{
		child_path(p, path, it->string);
		sub = cJSON_GetObjectItemCaseSensitive(props, it->string);
		if (!sub && cJSON_IsFalse(add)) {
			cm_errf(errbuf, "%s: is not an allowed field", p);
			return CM_EINVAL;
		}
		if (sub && (rc = bus_schema_check(sub, it, p, errbuf)) < 0)
			return rc;
	}
	return 0;
}

static int
check_array(const cJSON *schema, const cJSON *v, const char *path,
	    char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *items = cJSON_GetObjectItemCaseSensitive(schema, "items");
	const cJSON *it;
	char p[256];
	int i = 0, rc;

	if ((double)cJSON_GetArraySize(v) >
	    num_kw(schema, "maxItems", INFINITY)) {
		cm_errf(errbuf, "%s: has too many items", path);
		return CM_EINVAL;
	}
	if (!cJSON_IsObject(items))
		return 0;
	cJSON_ArrayForEach(it, v)
	{
		snprintf(p, sizeof(p), "%s[%d]", path, i++);
		if ((rc = bus_schema_check(items, it, p, errbuf)) < 0)
			return rc;
	}
	return 0;
}

int
bus_schema_check(const cJSON *schema, const cJSON *value, const char *path,
		 char errbuf[CM_ERRBUF_LEN])
{
	int rc;

	if (!cJSON_IsObject(schema))
		return 0;
	if ((rc = check_type(schema, value, path, errbuf)) < 0 ||
	    (rc = check_enum(schema, value, path, errbuf)) < 0)
		return rc;
	if (cJSON_IsString(value))
		return check_string(schema, value, path, errbuf);
	if (cJSON_IsNumber(value))
		return check_number(schema, value, path, errbuf);
	if (cJSON_IsObject(value))
		return check_object(schema, value, path, errbuf);
	if (cJSON_IsArray(value))
		return check_array(schema, value, path, errbuf);
	return 0;
}

/* Every entry: a valid type name with an object "data" schema. */
static int
check_entries(const cJSON *types, char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *it, *data;

	cJSON_ArrayForEach(it, types)
	{
		if (!cm_bus_valid_type(it->string)) {
			cm_errf(errbuf, "registry: bad event type '%.64s'",
				it->string);
			return CM_EINVAL;
		}
		data = cJSON_GetObjectItemCaseSensitive(it, "data");
		if (!cJSON_IsObject(data)) {
			cm_errf(errbuf, "registry: %.64s has no data schema",
				it->string);
			return CM_EINVAL;
		}
	}
	return 0;
}

static int
entry_cmp(const void *a, const void *b)
{
	return strcmp((*(const cJSON *const *)a)->string,
		      (*(const cJSON *const *)b)->string);
}

/* The entries by name, so a publish finds its type in log n compares
   instead of walking every registered type. */
static void
index_types(struct bus_registry *reg)
{
	const cJSON *it;
	size_t n = 0;

	cJSON_ArrayForEach(it, reg->types) n++;
	reg->sorted = cm_xcalloc(n, sizeof(*reg->sorted));
	n = 0;
	cJSON_ArrayForEach(it, reg->types) reg->sorted[n++] = it;
	qsort(reg->sorted, n, sizeof(*reg->sorted), entry_cmp);
	reg->ntypes = n;
}

static const cJSON *
find_type(const struct bus_registry *reg, const char *name)
{
	size_t lo = 0, hi = reg->ntypes, mid;
	int c;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		c = strcmp(name, reg->sorted[mid]->string);
		if (c == 0)
			return reg->sorted[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

int
bus_registry_parse(const char *text, size_t len, struct bus_registry *reg,
		   char errbuf[CM_ERRBUF_LEN])
{
	char msg[CM_ERRBUF_LEN] = "";
	cJSON *root = cm_json_parse(text, len, msg);
	const cJSON *types;
	int rc;

	reg->root = NULL;
	reg->types = NULL;
	reg->sorted = NULL;
	reg->ntypes = 0;
	if (!root) {
		cm_errf(errbuf, "registry: %s", msg);
		return CM_EINVAL;
	}
	types = cJSON_GetObjectItemCaseSensitive(root, "types");
	if (!cJSON_IsObject(types) || !types->child) {
		cm_errf(errbuf, "registry: no \"types\" object");
		cJSON_Delete(root);
		return CM_EINVAL;
	}
	if ((rc = check_entries(types, errbuf)) < 0) {
		cJSON_Delete(root);
		return rc;
	}
	reg->root = root;
	reg->types = types;
	index_types(reg);
	return 0;
}

int
bus_registry_load(const char *path, struct bus_registry *reg,
		  char errbuf[CM_ERRBUF_LEN])
{
	char *text = NULL;
	struct stat st;
	ssize_t n = 0;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		cm_errf(errbuf, "registry %s: cannot open", path);
		rc = CM_ENOENT;
		goto out;
	}
	if (st.st_size > BUS_REGISTRY_MAX_BYTES) {
		cm_errf(errbuf, "registry %s: over 1 MiB", path);
		rc = CM_E2BIG;
		goto out;
	}
	text = cm_xmalloc((size_t)st.st_size + 1);
	n = read(fd, text, (size_t)st.st_size);
	if (n != (ssize_t)st.st_size) {
		cm_errf(errbuf, "registry %s: short read", path);
		rc = CM_EIO;
		goto out;
	}
	rc = bus_registry_parse(text, (size_t)n, reg, errbuf);
out:
	if (fd >= 0)
		close(fd);
	free(text);
	return rc;
}

void
bus_registry_release(struct bus_registry *reg)
{
	cJSON_Delete(reg->root);
	free(reg->sorted);
	reg->root = NULL;
	reg->types = NULL;
	reg->sorted = NULL;
	reg->ntypes = 0;
}

int
bus_registry_check(const struct bus_registry *reg, const cJSON *env,
		   char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *type = cJSON_GetObjectItemCaseSensitive(env, "event_type");
	const cJSON *ver =
		cJSON_GetObjectItemCaseSensitive(env, "event_version");
	const cJSON *entry;

	if (!cJSON_IsString(type)) {
		cm_errf(errbuf, "field 'event_type' is required");
		return CM_EINVAL;
	}
	entry = find_type(reg, type->valuestring);
	if (!entry) {
		cm_errf(errbuf, "unknown event type '%.64s'",
			type->valuestring);
		return CM_ENOENT;
	}
	if (cJSON_IsNumber(ver) &&
	    ver->valuedouble > num_kw(entry, "version", 1)) {
		cm_errf(errbuf, "event_version %.0f of %.64s is not registered",
			ver->valuedouble, type->valuestring);
		return CM_EINVAL;
	}
	return bus_schema_check(cJSON_GetObjectItemCaseSensitive(entry, "data"),
				cJSON_GetObjectItemCaseSensitive(env, "data"),
				"data", errbuf);
}

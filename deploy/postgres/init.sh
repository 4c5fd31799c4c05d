#!/bin/sh
# init.sh - create the BizOSaaS-C roles, schemas and rights in a new cluster.
#
# Mounted at /docker-entrypoint-initdb.d/10-bizosaas.sh: the postgres image
# runs it once, as the postgres user, when the data volume is empty. It
# feeds each role's password (PG_PASSWORD_BZ_<SVC> from the environment) as
# a psql variable on stdin - never on a command line - followed by
# scripts/db-bootstrap.sql (mounted at /opt/bizosaas/db-bootstrap.sql), the
# same file `make run` applies: NOLOGIN group bz_services, one LOGIN role
# bz_<svc> per service (no superuser, no BYPASSRLS), one schema per service
# owned by its role, nothing granted to PUBLIC.
# To change a password later: ALTER ROLE ... PASSWORD by hand (this script
# does not run again on an existing volume).
set -eu

bootstrap=${BZ_BOOTSTRAP_SQL:-/opt/bizosaas/db-bootstrap.sql}
roles="brain cms crm image telegram temporal_worker vault_client agents
event_bus dashboard_server"

for r in $roles; do
	var=PG_PASSWORD_BZ_$(echo "$r" | tr '[:lower:]' '[:upper:]')
	eval "pw=\${$var:-}"
	if [ -z "$pw" ]; then
		echo "init.sh: $var is not set" >&2
		exit 1
	fi
	case $pw in
	*"'"* | *"\\"*)
		echo "init.sh: $var may not contain ' or \\" >&2
		exit 1
		;;
	esac
done

{
	for r in $roles; do
		var=PG_PASSWORD_BZ_$(echo "$r" | tr '[:lower:]' '[:upper:]')
		eval "pw=\${$var}"
		printf "\\\\set pw_bz_%s '%s'\n" "$r" "$pw"
	done
	cat "$bootstrap"
} | psql -X -q -v ON_ERROR_STOP=1 -U "${POSTGRES_USER:-postgres}" \
	-d postgres -f - >/dev/null
echo "init.sh: roles bz_<svc>, schemas and bz_services are in place"

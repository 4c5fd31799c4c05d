#!/bin/sh
# entrypoint.sh - initdb on an empty $PGDATA, run the init scripts once,
# then exec the server (the official image's behaviour, reduced).
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
	if [ -z "${POSTGRES_PASSWORD:-}" ]; then
		echo "entrypoint: POSTGRES_PASSWORD is required" >&2
		exit 1
	fi
	pwfile=$(mktemp)
	printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
	initdb -D "$PGDATA" -U postgres --pwfile="$pwfile" -E UTF8 \
		--no-locale --auth-local=trust --auth-host=scram-sha-256 \
		>/dev/null
	rm -f "$pwfile"
	{
		echo "listen_addresses = '*'"
		echo "unix_socket_directories = '/var/run/postgresql'"
		echo "password_encryption = scram-sha-256"
	} >>"$PGDATA/postgresql.conf"
	echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
	pg_ctl -D "$PGDATA" -w -o "-c listen_addresses=''" start >/dev/null
	if [ -n "${POSTGRES_DB:-}" ] && [ "$POSTGRES_DB" != postgres ]; then
		createdb -U postgres "$POSTGRES_DB"
	fi
	for f in /docker-entrypoint-initdb.d/*.sh; do
		[ -e "$f" ] || continue
		echo "entrypoint: running $f"
		sh "$f"
	done
	pg_ctl -D "$PGDATA" -w -m fast stop >/dev/null
fi
exec "$@"

# shellcheck shell=bash
# crm [--duration 10] [--connections 16] [--http-threads 8]
#     [--search-leads 100000] [--tcp-nodelay] [--leakproof]
#      create-lead (POST /api/crm/leads) and list-leads (GET, 20 per page)
#      over HTTP with wrk (CONNECTIONS; crm with HTTP_THREADS, which is
#      also its number of database connections), each beside pgbench
#      running the same SQL in the same transactions (same app.tenant_id,
#      as bz_crm, extended protocol, CONNECTIONS clients); rates and
#      ratios. Then search (GET /api/crm/search) latency over the tenant's
#      leads after SEARCH_LEADS more are inserted. Bars (issue 6): both
#      HTTP paths >= 0.6x pgbench; search p95 < 50 ms at 1,000,000 leads.
#      Both fixes these two options once tried are now on main
#      (libcommon sets TCP_NODELAY on accepted sockets; the database
#      bootstrap marks ts_match_vq LEAKPROOF): --tcp-nodelay (a preloaded
#      shim) and --leakproof change nothing any more and stay only for
#      comparing older builds.

# here, tmp, BUILD and SVC_PORT come from scripts/bench, which sources this.
# shellcheck disable=SC2154

# crm_token SECRET TENANT - an HS256 user token (owner of TENANT, 1 h).
crm_token() {
	local secret=$1 tenant=$2 now h p s
	now=$(date +%s)
	crm_b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
	h=$(printf '{"alg":"HS256","typ":"JWT"}' | crm_b64url)
	p=$(printf '{"sub":"bench-user","tenant_id":"%s","roles":["owner"],"iss":"bizosaas-brain","aud":"bizosaas","iat":%d,"exp":%d,"jti":"crm-bench-%d"}' \
		"$tenant" "$now" "$((now + 3600))" "$now" | crm_b64url)
	s=$(printf '%s.%s' "$h" "$p" |
		openssl dgst -sha256 -mac HMAC -macopt "key:$secret" -binary |
		crm_b64url)
	printf '%s.%s.%s\n' "$h" "$p" "$s"
}

# crm_wrk LUA URL CONNECTIONS SECONDS - "rps p99 errors".
crm_wrk() {
	wrk -t 2 -c "$3" -d "${4}s" --latency -s "$1" "$2" | awk '
		/^Requests\/sec:/ { rps = $2 }
		/^ +99%/ { p99 = $2 }
		/Non-2xx or 3xx responses:/ { err += $NF }
		/Socket errors:/ { gsub(/,/, ""); err += $4 + $6 + $8 + $10 }
		END { printf "%s %s %d\n", rps, p99, err }'
}

# crm_pgbench FILE CONNECTIONS SECONDS - transactions/s, as bz_crm.
crm_pgbench() {
	local log=$1.log
	if ! (
		eval "$("$here/stack" env --dir "$tmp" --service crm)"
		PGPASSWORD=$POSTGRES_PASSWORD pgbench -n -M extended \
			-h "$POSTGRES_HOST" -p "$POSTGRES_PORT" \
			-U "$POSTGRES_USER" -c "$2" -j 2 -T "$3" -f "$1" \
			"$POSTGRES_DB"
	) >"$log" 2>&1; then
		grep -m 3 -i "error" "$log" >&2 || tail -n 5 "$log" >&2
		bz_die "pgbench failed on $1"
	fi
	awk '/^tps = / { print $3 }' "$log"
}

# crm_nodelay_shim - build an LD_PRELOAD shim that sets TCP_NODELAY on
# every accepted socket (what libcommon's HTTP layer does not do yet).
crm_nodelay_shim() {
	cat >"$tmp/nodelay.c" <<'SHIM'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
int accept4(int s, struct sockaddr *a, socklen_t *l, int f)
{
	static int (*real)(int, struct sockaddr *, socklen_t *, int);
	int one = 1, fd;

	if (!real)
		real = dlsym(RTLD_NEXT, "accept4");
	fd = real(s, a, l, f);
	if (fd >= 0)
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}
SHIM
	cc -shared -fPIC -o "$tmp/nodelay.so" "$tmp/nodelay.c" -ldl ||
		bz_die "cannot build the TCP_NODELAY shim"
	printf '%s\n' "$tmp/nodelay.so"
}

crm_psql() {
	"$here/stack" psql --dir "$tmp" -- -qAt -v ON_ERROR_STOP=1 -c "$1"
}

# crm_sql_files TENANT COLUMNS - the create and list transactions crm runs
# (store.c, list.c), for pgbench.
crm_sql_files() {
	local t=$1 cols=$2 factors env_json
	factors='[{"factor": "company_size", "value": "small", "points": 20}, {"factor": "status", "value": "new", "points": 5}]'
	env_json='{"event_id":"00000000-0000-4000-8000-000000000000","event_type":"lead.created","event_version":1,"tenant_id":"'$t'","source_service":"crm","occurred_at":"2026-01-01T00:00:00.000000Z","correlation_id": null,"causation_id": null,"aggregate_type":"lead","aggregate_id":"bench","priority":"normal","data":{"lead_id":"bench","email":"bench@example.com","name":"Bench Lead","score":25},"metadata":{}}'
	# (": null", not ":null": pgbench would read a :variable)
	cat >"$tmp/create.sql" <<EOF
BEGIN;
SELECT set_config('app.tenant_id', '$t', true);
SELECT (SELECT CASE WHEN jsonb_typeof(limits->'max_leads') = 'number' THEN (limits->>'max_leads')::numeric::bigint END FROM brain.tenants WHERE id = '$t'), (SELECT rules::text FROM crm.scoring_rules), (SELECT json_agg(json_build_object('key', key, 'type', type, 'options', options, 'required', required))::text FROM crm.custom_field_defs WHERE entity = 'lead');
INSERT INTO crm.leads (tenant_id, created_by, name, email, company_size, score, score_factors, scored_at) VALUES (current_setting('app.tenant_id')::uuid, 'bench-user', 'Bench Lead', 'bench@example.com', 'small', '25', '$factors'::jsonb, '2026-01-01T00:00:00Z') RETURNING $cols;
INSERT INTO crm.outbox (tenant_id, event_id, event) VALUES ('$t', gen_random_uuid(), '$env_json');
COMMIT;
EOF
	cat >"$tmp/list.sql" <<EOF
BEGIN;
SELECT set_config('app.tenant_id', '$t', true);
SELECT $cols, (extract(epoch FROM created_at) * 1000000)::bigint AS _k FROM crm.leads WHERE deleted_at IS NULL ORDER BY created_at DESC, id DESC LIMIT 21::int;
COMMIT;
EOF
}

bench_crm() {
	local duration=10 conns=16 threads=8 search_leads=100000 n t secret
	local token base cols c_rps c_p99 c_err l_rps l_p99 l_err pc pl s_p99
	local s_rps s_err leads nodelay=0 leakproof=0 preload=''

	while (($# > 0)); do
		case $1 in
		--duration) duration=${2:?}; shift ;;
		--connections) conns=${2:?}; shift ;;
		--http-threads) threads=${2:?}; shift ;;
		--search-leads) search_leads=${2:?}; shift ;;
		--tcp-nodelay) nodelay=1 ;;
		--leakproof) leakproof=1 ;;
		*) usage ;;
		esac
		shift
	done
	for n in "$duration" "$conns" "$threads"; do
		[[ $n =~ ^[1-9][0-9]*$ ]] || bz_die "not a positive number: $n"
	done
	[[ $search_leads =~ ^[0-9]+$ ]] || bz_die "not a number: $search_leads"
	bz_check_binaries "$BUILD" brain crm
	ensure_bench_deps
	command -v pgbench >/dev/null 2>&1 || bz_die "pgbench is missing"
	stack_up
	svc_start brain
	svc_wait brain
	((nodelay)) && preload=$(crm_nodelay_shim)
	svc_start crm "HTTP_THREADS=$threads" CRM_RELAY_INTERVAL_MS=600000 \
		"LD_PRELOAD=$preload"
	svc_wait crm
	((leakproof)) && "$here/stack" psql --dir "$tmp" -- -qc \
		"ALTER FUNCTION pg_catalog.ts_match_vq(tsvector, tsquery) LEAKPROOF" \
		>/dev/null
	t=$(cat /proc/sys/kernel/random/uuid)
	crm_psql "INSERT INTO brain.tenants (id, slug, name, status,
		subscription_tier, limits) VALUES ('$t', 'crm-bench', 'Bench',
		'active', 'enterprise',
		'{\"api_requests_per_minute\": 1000000000}')" >/dev/null
	secret=$(
		# shellcheck source=/dev/null
		. "$tmp/secrets.env"
		printf '%s' "$JWT_SECRET_KEY"
	)
	token=$(crm_token "$secret" "$t")
	base="http://127.0.0.1:${SVC_PORT[crm]}"
	[[ $(curl -s -o /dev/null -w '%{http_code}' -X POST \
		-H "Authorization: Bearer $token" \
		-H 'Content-Type: application/json' \
		-d '{"name":"Bench Lead","email":"bench@example.com","company_size":"small"}' \
		"$base/api/crm/leads") == 201 ]] ||
		bz_die "crm does not create a lead with the bench token"
	# the SELECT list crm uses: the export's header, tags as JSON
	cols=$(curl -fsS -H "Authorization: Bearer $token" \
		"$base/api/crm/leads/export" | head -n 1 | tr -d '\r' |
		sed 's/,/, /g; s/\btags\b/to_jsonb(tags) AS tags/')
	crm_sql_files "$t" "$cols"
	cat >"$tmp/create.lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
wrk.body = '{"name":"Bench Lead","email":"bench@example.com","company_size":"small"}'
EOF
	printf 'wrk.headers["Authorization"] = "Bearer %s"\n' "$token" \
		>"$tmp/get.lua"

	bz_log "create-lead: wrk $conns connections ${duration}s, then pgbench"
	wrk -t 2 -c "$conns" -d 2s -s "$tmp/create.lua" \
		"$base/api/crm/leads" >/dev/null
	read -r c_rps c_p99 c_err < <(crm_wrk "$tmp/create.lua" \
		"$base/api/crm/leads" "$conns" "$duration")
	pc=$(crm_pgbench "$tmp/create.sql" "$conns" "$duration")
	# pgbench's outbox rows are filler (one fixed event id): crm runs with
	# a 10-minute relay interval, so only its own writes' kicks relay, and
	# the filler is dropped before any kick could publish it
	crm_psql "DELETE FROM crm.outbox WHERE published_at IS NULL AND
		event LIKE '%\"aggregate_id\":\"bench\"%'" >/dev/null
	# statistics, as a live table has them (autovacuum may not have run)
	crm_psql "ANALYZE crm.leads" >/dev/null
	leads=$(crm_psql "SELECT count(*) FROM crm.leads")
	bz_log "list-leads (20 per page) over $leads leads"
	read -r l_rps l_p99 l_err < <(crm_wrk "$tmp/get.lua" \
		"$base/api/crm/leads?limit=20" "$conns" "$duration")
	pl=$(crm_pgbench "$tmp/list.sql" "$conns" "$duration")

	if ((search_leads > 0)); then
		bz_log "inserting $search_leads more leads for search"
		crm_psql "INSERT INTO crm.leads (tenant_id, name, email, company,
			pain_points) SELECT '$t', 'Lead ' || g || ' ' ||
			md5(g::text), 'l' || g || '@bench.test', 'Company ' ||
			(g % 5000), 'needs ' || md5((g * 7)::text) FROM
			generate_series(1, $search_leads) g; ANALYZE crm.leads" \
			>/dev/null
		crm_psql "UPDATE crm.leads SET name = 'Zanzibar Traders' WHERE
			id IN (SELECT id FROM crm.leads WHERE tenant_id = '$t'
			LIMIT 50)" >/dev/null
		leads=$(crm_psql "SELECT count(*) FROM crm.leads")
		bz_log "search over $leads leads: wrk 4 connections ${duration}s"
		read -r s_rps s_p99 s_err < <(crm_wrk "$tmp/get.lua" \
			"$base/api/crm/search?q=zanzibar&limit=20" 4 "$duration")
	fi

	echo
	echo "crm HTTP_THREADS=$threads, $conns connections/clients;" \
		"tcp-nodelay shim: $nodelay, leakproof ts_match_vq: $leakproof"
	printf '%-30s %10s %10s %10s %8s %8s\n' path http/s p99 pgbench/s \
		ratio errors
	awk -v h="$c_rps" -v p="$pc" -v l="$c_p99" -v e="$c_err" 'BEGIN {
		printf "%-30s %10.0f %10s %10.0f %8.2f %8d   (bar 0.60)\n",
			"create-lead", h, l, p, (p > 0 ? h / p : 0), e }'
	awk -v h="$l_rps" -v p="$pl" -v l="$l_p99" -v e="$l_err" 'BEGIN {
		printf "%-30s %10.0f %10s %10.0f %8.2f %8d   (bar 0.60)\n",
			"list-leads (20/page)", h, l, p, (p > 0 ? h / p : 0), e }'
	if ((search_leads > 0)); then
		printf '%-30s %10s %10s   over %s leads, %s errors (bar p95 < 50ms at 1M)\n' \
			"search (4 connections)" "$s_rps" "$s_p99" "$leads" \
			"$s_err"
	fi
}

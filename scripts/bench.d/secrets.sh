# shellcheck shell=bash
# secrets [--duration 10] [--connections 64] [--threads 2]
#      tenant secret reads/s through the vault-client sidecar (local
#      backend, HTTP_THREADS=2): GET /v1/tenant/secrets/<name> as a service
#      (wrk with X-Service-Token and X-Tenant-ID), cached (VAULT_CACHE_TTL_MS
#      60000) then uncached (0); req/s, p99, and the audit rows written
#      against the reads served (every read is audited first). Target
#      (issue 5): cached >= 20,000 reads/s.

# here, tmp, BUILD, SVC_PID and SVC_PORT come from scripts/bench, which
# sources this.
# shellcheck disable=SC2154

# secrets_token SECRET - a service token from brain to vault-client (60 s,
# the longest libcommon accepts), HS256 as cm_service_token_mint makes it.
secrets_token() {
	local secret=$1 now h p s
	now=$(date +%s)
	b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
	h=$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)
	p=$(printf '{"iss":"brain","sub":"brain","aud":"vault-client","typ":"service","iat":%d,"exp":%d,"jti":"%s"}' \
		"$now" "$((now + 60))" "$(cat /proc/sys/kernel/random/uuid)" | b64url)
	s=$(printf '%s.%s' "$h" "$p" |
		openssl dgst -sha256 -mac HMAC -macopt "key:$secret" -binary | b64url)
	printf '%s.%s.%s\n' "$h" "$p" "$s"
}

# secrets_lua FILE TOKEN TENANT - the wrk script: the two headers.
secrets_lua() {
	cat >"$1" <<EOF
wrk.headers["X-Service-Token"] = "$2"
wrk.headers["X-Tenant-ID"] = "$3"
EOF
}

# secrets_psql SQL - one value, as the superuser.
secrets_psql() {
	"$here/stack" psql --dir "$tmp" -- -qAtc "$1"
}

# secrets_wrk LUA URL THREADS CONNECTIONS SECONDS - "rps p99 errors total".
secrets_wrk() {
	wrk -t "$3" -c "$4" -d "${5}s" --latency -s "$1" "$2" | awk '
		/^Requests\/sec:/ { rps = $2 }
		/^ +99%/ { p99 = $2 }
		/ requests in / { total = $1 }
		/Non-2xx or 3xx responses:/ { err += $NF }
		/Socket errors:/ { gsub(/,/, ""); err += $4 + $6 + $8 + $10 }
		END { printf "%s %s %d %d\n", rps, p99, err, total }'
}

# secrets_run TTL_MS - start vault-client with that cache TTL, write the
# secret, warm up, measure, stop it; sets secrets_result to
# "rps p99 errors total audited".
secrets_run() {
	local ttl=$1 port token lua url before after rps p99 err total
	svc_start vault-client HTTP_THREADS=2 "VAULT_CACHE_TTL_MS=$ttl"
	svc_wait vault-client
	port=${SVC_PORT[vault-client]}
	url="http://127.0.0.1:$port/v1/tenant/secrets/llm/bench"
	token=$(secrets_token "$service_secret")
	curl -sf -o /dev/null -X PUT -H "X-Service-Token: $token" \
		-H "X-Tenant-ID: $tenant" -H 'Content-Type: application/json' \
		-d '{"data":{"api_key":"bench-not-a-secret"}}' "$url" ||
		bz_die "could not write the bench secret"
	[[ $(curl -s -o /dev/null -w '%{http_code}' -H "X-Service-Token: $token" \
		-H "X-Tenant-ID: $tenant" "$url") == 200 ]] ||
		bz_die "the sidecar does not answer 200 with the bench token"
	lua=$tmp/secrets.lua
	secrets_lua "$lua" "$token" "$tenant"
	wrk -t "$threads" -c "$conns" -d 2s -s "$lua" "$url" >/dev/null
	# a fresh token: the measured run must end within its 60 s
	token=$(secrets_token "$service_secret")
	secrets_lua "$lua" "$token" "$tenant"
	before=$(secrets_psql "SELECT count(*) FROM vault_client.audit")
	read -r rps p99 err total < <(secrets_wrk "$lua" "$url" "$threads" \
		"$conns" "$duration")
	after=$(secrets_psql "SELECT count(*) FROM vault_client.audit")
	bz_stop_child "${SVC_PID[vault-client]}" 10
	unset "SVC_PID[vault-client]" "SVC_PORT[vault-client]"
	secrets_result="$rps $p99 $err $total $((after - before))"
}

bench_secrets() {
	local duration=10 conns=64 threads=2 n tenant service_secret
	local secrets_result=''
	local c_rps c_p99 c_err c_total c_aud u_rps u_p99 u_err u_total u_aud
	while (($# > 0)); do
		case $1 in
		--duration) duration=${2:?}; shift ;;
		--connections) conns=${2:?}; shift ;;
		--threads) threads=${2:?}; shift ;;
		*) usage ;;
		esac
		shift
	done
	for n in "$duration" "$conns" "$threads"; do
		[[ $n =~ ^[1-9][0-9]*$ ]] || bz_die "not a positive number: $n"
	done
	((duration <= 40)) || bz_die "at most 40 s: the service token lives 60 s"
	bz_check_binaries "$BUILD" brain vault-client
	ensure_bench_deps
	stack_up
	svc_start brain # its migrations create brain.tenants
	svc_wait brain
	tenant=$(cat /proc/sys/kernel/random/uuid)
	secrets_psql "INSERT INTO brain.tenants (id, slug, name, status) VALUES ('$tenant', 'bench', 'Bench', 'active')" >/dev/null
	service_secret=$(
		# shellcheck source=/dev/null
		. "$tmp/secrets.env"
		# shellcheck disable=SC2153 # set by secrets.env
		printf '%s' "$SERVICE_SECRET"
	)
	bz_log "GET /v1/tenant/secrets/llm/bench: ${duration}s, $threads threads, $conns connections"
	secrets_run 60000
	read -r c_rps c_p99 c_err c_total c_aud <<<"$secrets_result"
	secrets_run 0
	read -r u_rps u_p99 u_err u_total u_aud <<<"$secrets_result"
	[[ -n $c_rps && -n $u_rps ]] || bz_die "wrk failed"
	echo
	printf '%-10s %12s %10s %8s %12s %12s\n' reads req/s p99 errors \
		requests audit-rows
	printf '%-10s %12s %10s %8s %12s %12s\n' cached "$c_rps" "$c_p99" \
		"$c_err" "$c_total" "$c_aud"
	printf '%-10s %12s %10s %8s %12s %12s\n' uncached "$u_rps" "$u_p99" \
		"$u_err" "$u_total" "$u_aud"
	awk -v c="$c_rps" 'BEGIN { met = (c >= 20000) ? "met" : "NOT met"
		printf "cached target 20000/s: %s (%.2fx)\n", met, c / 20000 }'
}

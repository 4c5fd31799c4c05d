# shellcheck shell=bash
# shellcheck disable=SC2154 # tmp, here, extra_pids: scripts/bench
# gateway [--duration S] [--connections N] [--threads N] [--pace-ms MS]
#         [--rounds R]
#        GET /api/crm/ping through brain's gateway (HTTP_THREADS=2) to an
#        nginx upstream, beside nginx proxy_pass (2 workers, keep-alive)
#        to the same upstream, R rounds (default 3) of the two in turn;
#        each round's rates and ratio, the median ratio, and the p99 each
#        adds over the upstream alone; also brain's GET /whoami with the
#        same token (the sign-in and tenant checks alone, no upstream).
#        Then the same three
#        paced: each connection waits a random 0..2*MS ms (MS default 20)
#        after each answer, so about N*1000/MS requests/s, below
#        saturation and not in bursts: the p99 each adds when requests
#        do not queue behind a full CPU

# gw_nginx_start PORT UPSTREAM_PORT - one nginx: the upstream on
# UPSTREAM_PORT (a small JSON answer) and a proxy on PORT.
gw_nginx_start() {
	local port=$1 up=$2 d=$tmp/nginx-gw user=''
	mkdir -p "$d"
	bz_is_root && user='user root;'
	cat >"$d/nginx.conf" <<EOF
$user
worker_processes 2;
daemon off;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path $d/client_body;
	proxy_temp_path $d/proxy;
	fastcgi_temp_path $d/fastcgi;
	uwsgi_temp_path $d/uwsgi;
	scgi_temp_path $d/scgi;
	upstream app {
		server 127.0.0.1:$up;
		keepalive 64;
	}
	server {
		listen 127.0.0.1:$up;
		location / {
			default_type application/json;
			return 200 '{"ok":true,"items":[],"next_cursor":null}';
		}
	}
	server {
		listen 127.0.0.1:$port;
		location / {
			proxy_pass http://app;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
		}
	}
}
EOF
	nginx -p "$d" -e "$d/error.log" -c "$d/nginx.conf" </dev/null \
		>"$d/stdout.log" 2>&1 &
	extra_pids+=("$!")
	if ! bz_wait_http "http://127.0.0.1:$port/api/crm/ping" 10 "$!"; then
		cat "$d/error.log" >&2 || true
		bz_die "nginx did not start"
	fi
}

# gw_token SECRET TENANT - an HS256 user token (owner of TENANT, 1 h).
gw_token() {
	local secret=$1 tenant=$2 now h p s
	now=$(date +%s)
	b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
	h=$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)
	p=$(printf '{"sub":"bench-user","tenant_id":"%s","roles":["owner"],"iss":"bizosaas-brain","aud":"bizosaas","iat":%d,"exp":%d,"jti":"bench-%d"}' \
		"$tenant" "$now" "$((now + 3600))" "$now" | b64url)
	s=$(printf '%s.%s' "$h" "$p" |
		openssl dgst -sha256 -mac HMAC -macopt "key:$secret" -binary | b64url)
	printf '%s.%s.%s\n' "$h" "$p" "$s"
}

# gw_wrk LUA URL THREADS CONNECTIONS SECONDS - as wrk_run, with a script.
gw_wrk() {
	wrk -t "$3" -c "$4" -d "${5}s" --latency -s "$1" "$2" | awk '
		/^Requests\/sec:/ { rps = $2 }
		/^ +99%/ { p99 = $2 }
		/Non-2xx or 3xx responses:/ { err += $NF }
		/Socket errors:/ { gsub(/,/, ""); err += $4 + $6 + $8 + $10 }
		END { printf "%s %s %d\n", rps, p99, err }'
}

bench_gateway() {
	local duration=10 conns=100 threads=2 pace=20 rounds=3 n r
	local gport pport uport tenant secret token
	local g_rps g_p99 g_err p_rps p_p99 p_err u_rps u_p99 u_err
	local w_rps w_p99 w_err
	local -a gr=() gp=() pr=() pp=() ratios=()
	while (($# > 0)); do
		case $1 in
		--duration) duration=${2:?}; shift ;;
		--connections) conns=${2:?}; shift ;;
		--threads) threads=${2:?}; shift ;;
		--pace-ms) pace=${2:?}; shift ;;
		--rounds) rounds=${2:?}; shift ;;
		*) usage ;;
		esac
		shift
	done
	for n in "$duration" "$conns" "$threads" "$pace" "$rounds"; do
		[[ $n =~ ^[1-9][0-9]*$ ]] || bz_die "not a positive number: $n"
	done
	((rounds <= 9)) || bz_die "at most 9 rounds"
	bz_check_binaries "$BUILD" brain
	ensure_bench_deps
	stack_up
	uport=$(bz_free_port)
	pport=$(bz_free_port "$uport")
	gw_nginx_start "$pport" "$uport"
	svc_start brain HTTP_THREADS=2 "CRM_URL=http://127.0.0.1:$uport"
	svc_wait brain
	gport=${SVC_PORT[brain]}
	tenant=$(cat /proc/sys/kernel/random/uuid)
	"$here/stack" psql --dir "$tmp" -- -qc \
		"INSERT INTO brain.tenants (id, slug, name, status, subscription_tier, services_enabled, limits) VALUES ('$tenant', 'bench', 'Bench', 'active', 'enterprise', '{crm}', '{\"api_requests_per_minute\": 1000000000}')" >/dev/null
	secret=$(
		# shellcheck source=/dev/null
		. "$tmp/secrets.env"
		printf '%s' "$JWT_SECRET_KEY"
	)
	token=$(gw_token "$secret" "$tenant")
	[[ $(curl -s -o /dev/null -w '%{http_code}' \
		-H "Authorization: Bearer $token" \
		"http://127.0.0.1:$gport/api/crm/ping") == 200 ]] ||
		bz_die "the gateway does not answer 200 with the bench token"

	local lua=$tmp/auth.lua
	printf 'wrk.headers["Authorization"] = "Bearer %s"\n' "$token" >"$lua"
	local gurl="http://127.0.0.1:$gport/api/crm/ping"
	local purl="http://127.0.0.1:$pport/api/crm/ping"
	local uurl="http://127.0.0.1:$uport/api/crm/ping"
	bz_log "warm-up 2s each"
	wrk -t "$threads" -c "$conns" -d 2s -s "$lua" "$gurl" >/dev/null
	wrk -t "$threads" -c "$conns" -d 2s "$purl" >/dev/null
	bz_log "GET /api/crm/ping: ${duration}s, $threads threads, $conns connections"
	read -r u_rps u_p99 u_err < <(wrk_run "$uurl" "$threads" "$conns" "$duration")
	read -r w_rps w_p99 w_err < <(gw_wrk "$lua" \
		"http://127.0.0.1:$gport/whoami" "$threads" "$conns" "$duration")
	# Rounds of the two in turn: the machine's speed drifts by 10-25 %
	# over a minute, so each round's gateway is compared with that
	# round's nginx, and the median round is the result.
	for ((r = 1; r <= rounds; r++)); do
		bz_log "round $r/$rounds: brain gateway, nginx proxy_pass"
		read -r g_rps g_p99 g_err < <(gw_wrk "$lua" "$gurl" \
			"$threads" "$conns" "$duration")
		read -r p_rps p_p99 p_err < <(wrk_run "$purl" "$threads" \
			"$conns" "$duration")
		[[ -n $g_rps && -n $p_rps ]] || bz_die "wrk failed"
		gr+=("$g_rps")
		gp+=("$g_p99")
		pr+=("$p_rps")
		pp+=("$p_p99")
		ratios+=("$(awk -v g="$g_rps" -v p="$p_rps" \
			'BEGIN { printf "%.3f", g / p }')")
		((g_err == 0 && p_err == 0)) ||
			bz_log "round $r: errors: gateway $g_err, nginx $p_err"
	done

	# paced: wrk's delay() holds each connection 0..2*MS after every
	# answer (random, so the connections do not move in lockstep)
	local plua=$tmp/paced.lua palua=$tmp/paced-auth.lua
	local pu_rps pu_p99 pu_err pg_rps pg_p99 pg_err pp_rps pp_p99 pp_err
	printf 'function delay()\n\treturn math.random(0, %d)\nend\n' "$((pace * 2))" >"$plua"
	cat "$lua" "$plua" >"$palua"
	bz_log "paced: each connection waits 0..$((pace * 2))ms after each answer"
	read -r pu_rps pu_p99 pu_err < <(gw_wrk "$plua" "$uurl" "$threads" \
		"$conns" "$duration")
	read -r pg_rps pg_p99 pg_err < <(gw_wrk "$palua" "$gurl" "$threads" \
		"$conns" "$duration")
	read -r pp_rps pp_p99 pp_err < <(gw_wrk "$plua" "$purl" "$threads" \
		"$conns" "$duration")
	echo
	printf '%-22s %12s %10s %8s\n' target req/s p99 errors
	printf '%-22s %12s %10s %8s\n' "upstream alone" "$u_rps" "$u_p99" "$u_err"
	printf '%-22s %12s %10s %8s\n' "brain /whoami" "$w_rps" "$w_p99" "$w_err"
	for ((r = 0; r < rounds; r++)); do
		printf '%-22s %12s %10s   round %d\n' "brain gateway" \
			"${gr[r]}" "${gp[r]}" "$((r + 1))"
		printf '%-22s %12s %10s   ratio %s\n' "nginx proxy_pass" \
			"${pr[r]}" "${pp[r]}" "${ratios[r]}"
		# wrk prints 1.23ms / 456.00us / 1.2s; added = proxy - upstream
		gw_added "${gp[r]}" "${pp[r]}" "$u_p99" \
			"  p99 added over the upstream"
	done
	printf 'median ratio gateway/nginx over %d rounds: %.2f (bar 0.60)\n' \
		"$rounds" "$(bench_median "${ratios[@]}")"
	echo
	echo "paced (0..$((pace * 2))ms, ${pace}ms on average, between a connection's requests):"
	printf '%-22s %12s %10s %8s\n' target req/s p99 errors
	printf '%-22s %12s %10s %8s\n' "upstream alone" "$pu_rps" "$pu_p99" \
		"$pu_err"
	printf '%-22s %12s %10s %8s\n' "brain gateway" "$pg_rps" "$pg_p99" \
		"$pg_err"
	printf '%-22s %12s %10s %8s\n' "nginx proxy_pass" "$pp_rps" "$pp_p99" \
		"$pp_err"
	gw_added "$pg_p99" "$pp_p99" "$pu_p99" "paced p99 added over the upstream"
}

# gw_added GATEWAY_P99 NGINX_P99 UPSTREAM_P99 LABEL - what each proxy adds.
gw_added() {
	awk -v g="$1" -v n="$2" -v u="$3" -v label="$4" '
		function ms(v) {
			if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
			if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
			if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
			return v + 0
		}
		BEGIN {
			printf "%s: gateway %.2f ms, nginx %.2f ms\n", label,
				ms(g) - ms(u), ms(n) - ms(u)
		}'
}

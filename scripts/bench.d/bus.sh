# shellcheck shell=bash
# bus [--duration 10] [--clients 16] [--rate 5000] [--rounds 3]
#      events/s through libcommon's cm_bus_publish ($BUILD/fakes/bus_bench,
#      CLIENTS threads), through POST /api/events/publish (wrk, CLIENTS
#      connections, event-bus with HTTP_THREADS=2) and raw XADD
#      (redis-benchmark, CLIENTS connections), in one run: ROUNDS rounds
#      of the three in turn, each round's ratios to that round's XADD,
#      and the median of each; then publish -> handler latency p50/p99
#      at a steady RATE events/s, alone and with the event-bus consumers
#      (audit, webhooks) running (the earlier phases' streams deleted
#      first: steady state, no backlog).
#      Bars (issue 4): direct >= 0.7x XADD, HTTP >= 0.4x, p99 < 10 ms.

# here, tmp, BUILD and SVC_PORT come from scripts/bench, which sources this.
# shellcheck disable=SC2154

# bus_env - the stack's settings for a client of the bus (Redis, JWT key).
bus_env() {
	"$here/stack" env --dir "$tmp" --service event-bus
}

# bus_psql SQL - run SQL as the superuser.
bus_psql() {
	"$here/stack" psql --dir "$tmp" -- -q -v ON_ERROR_STOP=1 -c "$1" >/dev/null
}

# bus_forget_streams TENANT... - delete those tenants' streams and take
# them out of the stream set: the earlier phases' hundreds of thousands of
# events would otherwise be a backlog for the consumers started later, and
# the latency phase would measure their catch-up, not a steady 5,000/s.
bus_forget_streams() {
	local port t
	port=$(eval "$(bus_env)" && printf '%s' "$REDIS_PORT")
	for t in "$@"; do
		redis-cli -h 127.0.0.1 -p "$port" DEL "bz:ev:t:$t" >/dev/null
		redis-cli -h 127.0.0.1 -p "$port" SREM bz:ev:streams \
			"bz:ev:t:$t" >/dev/null
	done
}

# bus_xadd_rate CLIENTS N PAYLOAD - raw XADD requests/s (redis-benchmark).
bus_xadd_rate() {
	local port
	port=$(eval "$(bus_env)" && printf '%s' "$REDIS_PORT")
	redis-benchmark -h 127.0.0.1 -p "$port" -c "$1" -n "$2" -q \
		XADD bz:bench:raw '*' type system.maintenance event "$3" |
		tr '\r' '\n' |
		awk '/requests per second/ { for (i = 1; i < NF; i++)
			if ($(i + 1) == "requests") rps = $i } END { print rps }'
	redis-cli -h 127.0.0.1 -p "$port" DEL bz:bench:raw >/dev/null
}

# bus_wrk_lua FILE TOKEN - a wrk script posting one event per request.
bus_wrk_lua() {
	cat >"$1" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $2"
wrk.body = '{"event_type":"system.maintenance","aggregate_type":"system","aggregate_id":"bench","source_service":"bench","data":{"message":"bench"}}'
EOF
}

# bus_latency TENANT RATE SECONDS - "sent handled p50 p99 p999 max" (us).
bus_latency() {
	(eval "$(bus_env)" && "$BUILD/fakes/bus_bench" latency "$@")
}

bench_bus() {
	local duration=10 clients=16 rate=5000 rounds=3 n r
	local t_direct t_http t_lat1 t_lat2 payload token lua url base
	local x_rps d_out d_rps h_rps h_p99 h_err lat1 lat2 c_health c_auth
	local -a l xs=() ds=() hs=() dr=() hr=() p99s=()
	local errs=0
	while (($# > 0)); do
		case $1 in
		--duration) duration=${2:?}; shift ;;
		--clients) clients=${2:?}; shift ;;
		--rate) rate=${2:?}; shift ;;
		--rounds) rounds=${2:?}; shift ;;
		*) usage ;;
		esac
		shift
	done
	for n in "$duration" "$clients" "$rate" "$rounds"; do
		[[ $n =~ ^[1-9][0-9]*$ ]] || bz_die "not a positive number: $n"
	done
	((clients <= 256)) || bz_die "at most 256 clients"
	((rounds <= 9)) || bz_die "at most 9 rounds"
	bz_check_binaries "$BUILD" brain event-bus
	[[ -x $BUILD/fakes/bus_bench ]] ||
		bz_die "no $BUILD/fakes/bus_bench: make BUILD=... tests"
	ensure_bench_deps
	command -v redis-benchmark >/dev/null 2>&1 ||
		bz_die "redis-benchmark is missing (apt-get install redis-tools)"
	stack_up
	svc_start brain
	svc_wait brain
	t_direct=$(cat /proc/sys/kernel/random/uuid)
	t_http=$(cat /proc/sys/kernel/random/uuid)
	t_lat1=$(cat /proc/sys/kernel/random/uuid)
	t_lat2=$(cat /proc/sys/kernel/random/uuid)
	bus_psql "INSERT INTO brain.tenants (id, slug, name, status,
		subscription_tier) VALUES ('$t_http', 'bench-http', 'Bench',
		'active', 'enterprise')"
	# the envelope cm_bus_publish stores, for XADD of the same size
	payload='{"event_id":"'$(cat /proc/sys/kernel/random/uuid)'","event_type":"system.maintenance","event_version":1,"tenant_id":"'$t_direct'","source_service":"bench","occurred_at":"2026-01-01T00:00:00.000000Z","correlation_id":null,"causation_id":null,"aggregate_type":"system","aggregate_id":"bench","priority":"normal","data":{"message":"bench"},"metadata":{}}'

	# The HTTP path alone: no consumers competing for the two cores. The
	# idle event-bus costs the other two phases nothing.
	svc_start event-bus HTTP_THREADS=2 AUDIT_ENABLED=false \
		WEBHOOKS_ENABLED=false
	svc_wait event-bus
	token=$(eval "$(bus_env)" && "$BUILD/fakes/bus_bench" token "$t_http")
	lua=$tmp/publish.lua
	bus_wrk_lua "$lua" "$token"
	url="http://127.0.0.1:${SVC_PORT[event-bus]}/api/events/publish"
	wrk -t 2 -c "$clients" -d 2s -s "$lua" "$url" >/dev/null

	# Rounds of the three in turn: the machine's speed drifts by 10-25 %
	# over a minute, so each round's rates are compared with that round's
	# XADD, and the median round is the result.
	for ((r = 1; r <= rounds; r++)); do
		bz_log "round $r/$rounds: raw XADD (redis-benchmark), cm_bus_publish ($clients threads), POST /api/events/publish (wrk, $clients connections), ${duration}s each"
		x_rps=$(bus_xadd_rate "$clients" $((duration * 50000)) \
			"$payload")
		d_out=$(eval "$(bus_env)" &&
			"$BUILD/fakes/bus_bench" publish "$t_direct" \
				"$clients" "$duration")
		d_rps=${d_out##* }
		read -r h_rps h_p99 h_err < <(wrk_run_lua "$url" "$clients" \
			"$duration" "$lua")
		[[ -n $x_rps && -n $d_rps && -n $h_rps ]] ||
			bz_die "round $r: a phase gave no rate"
		xs+=("$x_rps")
		ds+=("$d_rps")
		hs+=("$h_rps")
		p99s+=("$h_p99")
		errs=$((errs + h_err))
		# every round starts from empty streams
		redis-cli -h 127.0.0.1 -p "$(eval "$(bus_env)" &&
			printf '%s' "$REDIS_PORT")" DEL "bz:ev:t:$t_direct" \
			"bz:ev:t:$t_http" >/dev/null
		dr+=("$(awk -v a="$d_rps" -v x="$x_rps" 'BEGIN { printf "%.3f", a / x }')")
		hr+=("$(awk -v a="$h_rps" -v x="$x_rps" 'BEGIN { printf "%.3f", a / x }')")
	done
	# Ceilings of this HTTP stack on this machine, for reading the above:
	# an unauthenticated GET, and an authenticated one (JWT check,
	# revocation lookup, tenant) that does almost nothing else.
	base="http://127.0.0.1:${SVC_PORT[event-bus]}"
	read -r c_health _ _ < <(wrk_run "$base/health" 2 "$clients" \
		"$duration")
	printf 'wrk.headers["Authorization"] = "Bearer %s"\n' "$token" \
		>"$tmp/auth.lua"
	read -r c_auth _ _ < <(wrk_run_lua \
		"$base/api/events/dead-letters?limit=1" "$clients" \
		"$duration" "$tmp/auth.lua")
	bz_stop_child "${SVC_PID[event-bus]}" 10
	unset 'SVC_PID[event-bus]' 'SVC_PORT[event-bus]'

	bz_log "latency at $rate events/s, ${duration}s, no other consumer"
	lat1=$(bus_latency "$t_lat1" "$rate" "$duration")
	bus_forget_streams "$t_direct" "$t_http" "$t_lat1"
	svc_start event-bus
	svc_wait event-bus
	bz_log "latency at $rate events/s, ${duration}s, event-bus consuming"
	lat2=$(bus_latency "$t_lat2" "$rate" "$duration")

	echo
	printf '%-6s %12s %12s %7s %12s %7s %10s\n' round "XADD/s" \
		"direct/s" ratio "HTTP/s" ratio "HTTP p99"
	for ((r = 0; r < rounds; r++)); do
		printf '%-6s %12.0f %12.0f %7s %12.0f %7s %10s\n' "$((r + 1))" \
			"${xs[r]}" "${ds[r]}" "${dr[r]}" "${hs[r]}" "${hr[r]}" \
			"${p99s[r]}"
	done
	printf '%-34s %8s\n' "median of the rounds' ratios" vs-XADD
	printf '%-34s %8.2f   (bar 0.70)\n' "cm_bus_publish (libcommon)" \
		"$(bench_median "${dr[@]}")"
	printf '%-34s %8.2f   (bar 0.40; %d errors)\n' \
		"POST /api/events/publish" "$(bench_median "${hr[@]}")" "$errs"
	echo "same server, for reference: GET /health $c_health req/s," \
		"authenticated GET /api/events/dead-letters $c_auth req/s"
	echo
	printf '%-34s %8s %8s %8s %8s %8s\n' "latency at $rate/s (us)" \
		handled p50 p99 p99.9 max
	read -r -a l <<<"$lat1"
	printf '%-34s %8s %8s %8s %8s %8s\n' "bus alone" "${l[1]}/${l[0]}" \
		"${l[2]}" "${l[3]}" "${l[4]}" "${l[5]}"
	read -r -a l <<<"$lat2"
	printf '%-34s %8s %8s %8s %8s %8s\n' "with event-bus consumers" \
		"${l[1]}/${l[0]}" "${l[2]}" "${l[3]}" "${l[4]}" "${l[5]}"
	echo "(bar: p99 under 10000 us)"
}

# wrk_run_lua URL CONNECTIONS SECONDS SCRIPT - prints "rps p99 errors".
wrk_run_lua() {
	local out
	out=$(wrk -t 2 -c "$2" -d "${3}s" --latency -s "$4" "$1")
	awk '
		/^Requests\/sec:/ { rps = $2 }
		/^ +99%/ { p99 = $2 }
		/Non-2xx or 3xx responses:/ { err += $NF }
		/Socket errors:/ { gsub(/,/, ""); err += $4 + $6 + $8 + $10 }
		END { printf "%s %s %d\n", rps, p99, err }
	' <<<"$out"
}

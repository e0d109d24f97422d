#!/usr/bin/env bash
# crispy side by side with peer AI gateways (`make bench-peers`, manual, not in CI).
#
# Installs the peers into .cache (LiteLLM's proxy into a venv, the Portkey gateway with npm, pinning
# @hono/node-server to 1.14.x: its 1.19 breaks Portkey's streaming), builds crispy, then runs
# test/peers: one mock OpenAI-compatible upstream, every gateway on 127.0.0.1 against it, sequential
# and concurrent rounds alternating the contenders. A peer that cannot be installed is skipped with a
# message. The table goes to stdout, the numbers to bin/bench-peers.json.
#
# Knobs: PEERS_ROUNDS (3), PEERS_SEQ (200 requests per contender per round), PEERS_CONNECTIONS (32),
# PEERS_CONC_DURATION (3s per contender per round), LITELLM_VERSION (1.108.7), PORTKEY_VERSION (1.15.2),
# CRISPY_BASE (a second crispy binary, e.g. an older build, measured alongside as crispy-base).
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=.cache
LITELLM_VERSION=${LITELLM_VERSION:-1.108.7}
PORTKEY_VERSION=${PORTKEY_VERSION:-1.15.2}
mkdir -p "$CACHE" bin

litellm=
venv=$CACHE/litellm-venv
if [ -x "$venv/bin/litellm" ] && "$venv/bin/pip" show litellm 2>/dev/null | grep -q "^Version: $LITELLM_VERSION$"; then
	litellm=$venv/bin/litellm
elif command -v python3 >/dev/null; then
	echo "bench-peers: installing LiteLLM $LITELLM_VERSION into $venv" >&2
	# A venv's scripts name its interpreter by absolute path: one moved with its checkout (or a
	# broken one) cannot be repaired in place, so start over.
	rm -rf "$venv"
	if python3 -m venv "$venv" && "$venv/bin/pip" install -q "litellm[proxy]==$LITELLM_VERSION" >&2; then
		litellm=$venv/bin/litellm
	else
		echo "bench-peers: LiteLLM could not be installed; continuing without it" >&2
	fi
else
	echo "bench-peers: no python3; continuing without LiteLLM" >&2
fi

portkey=
pdir=$CACHE/portkey
if [ -f "$pdir/node_modules/@portkey-ai/gateway/package.json" ] &&
	grep -q "\"version\": \"$PORTKEY_VERSION\"" "$pdir/node_modules/@portkey-ai/gateway/package.json"; then
	portkey=$pdir
elif command -v npm >/dev/null && command -v node >/dev/null; then
	echo "bench-peers: installing the Portkey gateway $PORTKEY_VERSION into $pdir" >&2
	mkdir -p "$pdir"
	cat >"$pdir/package.json" <<JSON
{
  "name": "crispy-bench-portkey",
  "private": true,
  "dependencies": { "@portkey-ai/gateway": "$PORTKEY_VERSION", "@hono/node-server": "~1.14.0" },
  "overrides": { "@hono/node-server": "~1.14.0" }
}
JSON
	if (cd "$pdir" && npm install --no-audit --no-fund >&2); then
		portkey=$pdir
	else
		echo "bench-peers: the Portkey gateway could not be installed; continuing without it" >&2
	fi
else
	echo "bench-peers: no node/npm; continuing without Portkey" >&2
fi

go build -o bin/crispy ./cmd/crispy
go build -o bin/bench-peers ./test/peers
exec bin/bench-peers --crispy bin/crispy ${CRISPY_BASE:+--crispy-base "$CRISPY_BASE"} --portkey-dir "$portkey" --litellm "$litellm" \
	--rounds "${PEERS_ROUNDS:-3}" --seq-requests "${PEERS_SEQ:-200}" \
	--connections "${PEERS_CONNECTIONS:-32}" --conc-duration "${PEERS_CONC_DURATION:-3s}" \
	--out bin/bench-peers.json

#!/usr/bin/env bash
# Smoke load (CI gate, `make smoke`; also the load half of `make bench`): start a fresh node from the
# built binary on loopback ports with a temp data dir, drive it with `crispy bench` (mixed load,
# bounded by SMOKE_DURATION ≤ 30 s), and fail on any 5xx, lost message, connection error or leaked
# goroutine (the admin listener's goroutine profile before and after the load, polled until it
# settles within a slack). Then stop the node with SIGTERM: it must exit 0. Never fails on timing.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-bin/crispy}
DURATION=${SMOKE_DURATION:-20s}
CONCURRENCY=${SMOKE_CONCURRENCY:-8}
MIX=${SMOKE_MIX:-chat-json=5,chat-stream=2,search=2,ingest=1,history=2,health=1}
LISTEN=${SMOKE_LISTEN:-127.0.0.1:18787}
ADMIN=${SMOKE_ADMIN:-127.0.0.1:19787}
OUT=${SMOKE_OUT:-}

dir=$(mktemp -d)
pid=
cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -rf "$dir"
}
trap cleanup EXIT

# A public tenant with the built-in models and a rate limit the load cannot reach: the smoke test
# is about 5xx, lost messages and leaks, not about 429s.
mkdir -p "$dir/tenants/smoke"
cat >"$dir/tenants/smoke/tenant.config.json" <<'JSON'
{
  "tenantId": "smoke", "accountId": "00000000000000000000000000000000", "aiGatewayId": "gw",
  "aiModels": {"chat": "local/extractive", "embeddings": "local/hash-embed"},
  "vectorizeNamespace": "smoke", "rateLimit": {"perMinute": 1000000, "burst": 1000000},
  "featureFlags": {}, "allowedHosts": [], "apiKeys": [], "public": true
}
JSON

"$BIN" serve --node-name smoke --data-dir "$dir/data" --tenants-dir "$dir/tenants" \
	--listen "$LISTEN" --admin-addr "$ADMIN" --log-format json --log-level warn >"$dir/node.log" 2>&1 &
pid=$!

ready=
for _ in $(seq 1 120); do
	if curl -fsS "http://$ADMIN/readyz" >/dev/null 2>&1; then
		ready=1
		break
	fi
	if ! kill -0 "$pid" 2>/dev/null; then
		break
	fi
	sleep 0.5
done
if [ -z "$ready" ]; then
	echo "smoke: node did not become ready; its log:" >&2
	cat "$dir/node.log" >&2
	exit 1
fi

bench_rc=0
"$BIN" bench --target "http://$LISTEN" --admin "http://$ADMIN" --tenant smoke \
	--mix "$MIX" --duration "$DURATION" --concurrency "$CONCURRENCY" --interval 5s \
	--check-goroutines --settle 20s --goroutine-slack 25 \
	${OUT:+--out "$OUT"} || bench_rc=$?

kill -TERM "$pid"
node_rc=0
wait "$pid" || node_rc=$?
pid=
if grep -q '"level":"error"' "$dir/node.log"; then
	echo "smoke: the node logged errors:" >&2
	grep '"level":"error"' "$dir/node.log" | head -20 >&2
fi
if [ "$node_rc" -ne 0 ]; then
	echo "smoke: node exited $node_rc after SIGTERM (want 0); its log:" >&2
	tail -50 "$dir/node.log" >&2
	exit 1
fi
if [ "$bench_rc" -ne 0 ]; then
	echo "smoke: bench failed (exit $bench_rc)" >&2
	exit 1
fi
echo "smoke: PASS (node stopped cleanly)"

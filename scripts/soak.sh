#!/usr/bin/env bash
# Soak (manual, `make soak`; not in CI): three nodes on loopback in one cluster, mixed load from
# `crispy bench` for SOAK_DURATION, and a rolling restart — one node stopped with SIGTERM and started
# again every SOAK_RESTART_EVERY seconds (n1, n2, n3, n1, …); SOAK_SIGNAL=KILL crashes it instead. Bench samples every SOAK_INTERVAL:
# requests, errors, 5xx, p50/p99 and each node's RSS and goroutines from its admin listener.
#
# Everything lands in SOAK_DIR (default ./soak, git-ignored): bench.log (the per-interval table),
# report.json (bench --out), n1..n3.log (node logs), restarts.log (when each node went down and was
# ready again). The data dirs are wiped at start so runs are comparable.
#
# Exit status is bench's: 1 when an invariant failed (a lost acknowledged message, or a 5xx —
# requests in flight to a draining node may get a 503; see the README on how to read the result).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-bin/crispy}
DIR=${SOAK_DIR:-soak}
DURATION=${SOAK_DURATION:-10m}
EVERY=${SOAK_RESTART_EVERY:-120}
RESTARTS=${SOAK_RESTARTS:-4}
INTERVAL=${SOAK_INTERVAL:-10s}
SIGNAL=${SOAK_SIGNAL:-TERM} # KILL: a crash instead of a drain
CONCURRENCY=${SOAK_CONCURRENCY:-16}
LOG_LEVEL=${SOAK_LOG_LEVEL:-warn}
MIX=${SOAK_MIX:-chat-json=5,chat-stream=2,search=2,ingest=1,history=2,health=1}
ROUTES=nats://127.0.0.1:6221,nats://127.0.0.1:6222,nats://127.0.0.1:6223

rm -rf "$DIR/data" "$DIR"/n?.log "$DIR"/n?.pid "$DIR/restarts.log"
mkdir -p "$DIR/tenants/soak"
# A public tenant whose rate limit the load cannot reach: the soak is about errors, lost messages,
# latency and memory over time, not about 429s.
cat >"$DIR/tenants/soak/tenant.config.json" <<'JSON'
{
  "tenantId": "soak", "accountId": "00000000000000000000000000000000", "aiGatewayId": "gw",
  "aiModels": {"chat": "local/extractive", "embeddings": "local/hash-embed"},
  "vectorizeNamespace": "soak", "rateLimit": {"perMinute": 1000000, "burst": 1000000},
  "featureFlags": {}, "allowedHosts": [], "apiKeys": [], "public": true
}
JSON

pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

start() { # start node $1 in the background, appending to $DIR/n$1.log
	"$BIN" serve --cluster soak --node-name "n$1" --data-dir "$DIR/data/n$1" --tenants-dir "$DIR/tenants" \
		--listen "127.0.0.1:878$1" --admin-addr "127.0.0.1:978$1" \
		--nats-cluster-listen "127.0.0.1:622$1" --nats-routes "$ROUTES" \
		--log-format json --log-level "$LOG_LEVEL" >>"$DIR/n$1.log" 2>&1 &
	pids[$1]=$!
}
ready() { # wait until node $1 answers /readyz; fail after 120 s
	for _ in $(seq 1 240); do
		curl -fsS "http://127.0.0.1:978$1/readyz" >/dev/null 2>&1 && return 0
		sleep 0.5
	done
	echo "soak: n$1 not ready after 120 s; its log:" >&2
	tail -30 "$DIR/n$1.log" >&2
	return 1
}
stamp() { date -u +%H:%M:%S; }

for i in 1 2 3; do start "$i"; done
for i in 1 2 3; do ready "$i"; done
echo "soak: 3 nodes ready at $(stamp); load for $DURATION, restart every ${EVERY}s ×$RESTARTS"

bench_rc=0
"$BIN" bench --tenant soak --duration "$DURATION" --concurrency "$CONCURRENCY" --interval "$INTERVAL" \
	--mix "$MIX" \
	--target http://127.0.0.1:8781,http://127.0.0.1:8782,http://127.0.0.1:8783 \
	--admin http://127.0.0.1:9781,http://127.0.0.1:9782,http://127.0.0.1:9783 \
	--tolerate-transport-errors --out "$DIR/report.json" >"$DIR/bench.log" 2>&1 &
bench=$!
tail -n +1 -f --pid="$bench" "$DIR/bench.log" &

for round in $(seq 1 "$RESTARTS"); do
	sleep "$EVERY"
	kill -0 "$bench" 2>/dev/null || break
	i=$(((round - 1) % 3 + 1))
	p=${pids[$i]}
	echo "$(stamp) n$i SIG$SIGNAL" >>"$DIR/restarts.log"
	kill "-$SIGNAL" "$p"
	rc=0
	wait "$p" || rc=$?
	echo "$(stamp) n$i exited $rc" >>"$DIR/restarts.log"
	start "$i"
	ready "$i"
	echo "$(stamp) n$i ready" >>"$DIR/restarts.log"
done
wait "$bench" || bench_rc=$?
sleep 1 # let tail print the summary

for i in 1 2 3; do
	kill -TERM "${pids[$i]}" 2>/dev/null || true
	rc=0
	wait "${pids[$i]}" || rc=$?
	echo "$(stamp) n$i final stop exited $rc" >>"$DIR/restarts.log"
done
pids=()
echo "soak: restarts:"
cat "$DIR/restarts.log"
echo "soak: bench exit $bench_rc (report $DIR/report.json, table $DIR/bench.log)"
exit "$bench_rc"

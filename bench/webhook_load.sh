#!/usr/bin/env bash
# webhook_load.sh - load test of `tunebot serve`'s webhook intake, end to end, with the exactly-once check.
#
# Usage: bench/webhook_load.sh [-d LOAD_S] [-c CONNS] [-w WARMUP_S] [-f FLOOD_N] [-D DRAIN_S] [-E] [-k]
#
#   -d S   measured load, seconds (default 30)
#   -c N   wrk connections (default 64)
#   -w S   warm-up load, seconds (default 3; its deliveries are checked too)
#   -f N   forged-signature flood, requests (default 20000; sent in 5 s wrk runs until the service has refused N)
#   -D S   longest wait for the worker to drain after the load (default 75)
#   -E     enforce the targets: exit 1 when one is missed (default: report them, exit 0)
#   -k     keep the work directory (database, logs, raw wrk output) and print its path
#
# From a checkout after `make install`:
#   1. starts the fake GitHub of tests/fakes/github.py on 127.0.0.1 and `.venv/bin/tunebot serve` with a fresh
#      SQLite store (WAL) in a temp dir, the service pinned to CPU 0 (`taskset -c 0`), everything else to CPU 1;
#   2. warm-up, then the load: signed `issue_comment` deliveries of a plain comment (no command), each request with
#      its own X-GitHub-Delivery (bench/wrk/bench_webhook.sh -u, one wrk thread: see below);
#   3. waits for the worker to drain, then checks exactly-once: every delivery the service answered 202 is stored
#      once, in state `done`, was claimed once (attempts = 1) and processed once (the service's own counter);
#   4. a forged-signature flood of N requests while sampling the service's RSS, then its idle RSS;
#   5. checks that no torch / ms-swift / EvalScope / transformers / peft library is mapped into the service;
#   6. stops everything it started (also on Ctrl-C or failure) and deletes the temp dir (unless -k).
# Needs wrk (installed from Debian with apt-get when missing), taskset, curl, python3. About 2 minutes.
#
# One wrk thread: webhook.lua draws each thread's id suffix with an unseeded math.random, so with -t 2 both threads
# send the same "unique" delivery ids and half the requests are answered as duplicates (the service counts them:
# `duplicate_requests` below).
#
# Targets (the floor of issue 13: one App installation sends a few deliveries per second, so a thousand per second
# on one core is ample headroom): rps >= 1000 and p99 <= 50 ms at 64 connections, every delivery durably recorded
# before its 202, lost = 0, RSS <= 150 MB through the 20,000-request forged flood and idle.
# The last line is:  rps=<n> p99_ms=<n> lost=<n> rss_mb=<n>
# Exit status: 0 ok; 1 exactly-once violated, a forbidden library loaded, or (-E) a target missed; 2 setup error.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HARNESS="${TUNEBOT_BENCH_HARNESS:-$ROOT/bench/wrk}"
SUPPORT="$ROOT/bench/webhook_support"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
PAYLOAD="${TUNEBOT_BENCH_PAYLOAD:-$ROOT/tests/fixtures/github/webhooks/issue_comment.created.with-installation.json}"
COMMENT="Thanks, this looks good to me. Merging after CI is green."

LOAD=30 CONNS=64 WARMUP=3 FLOOD=20000 DRAIN=75 ENFORCE=0 KEEP=0
usage() { sed -n '2,34p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while getopts ":d:c:w:f:D:Ekh" opt; do
  case "$opt" in
    d) LOAD=$OPTARG ;; c) CONNS=$OPTARG ;; w) WARMUP=$OPTARG ;; f) FLOOD=$OPTARG ;; D) DRAIN=$OPTARG ;;
    E) ENFORCE=1 ;; k) KEEP=1 ;; h|*) usage ;;
  esac
done
shift $((OPTIND - 1))
[ $# -eq 0 ] || usage
for n in "$LOAD" "$CONNS" "$WARMUP" "$FLOOD" "$DRAIN"; do
  [[ "$n" =~ ^[0-9]+$ ]] || { echo "webhook_load: not a number: $n" >&2; exit 2; }
done
[ "$LOAD" -gt 0 ] && [ "$CONNS" -gt 0 ] || { echo "webhook_load: -d and -c must be positive" >&2; exit 2; }

say() { echo "webhook_load: $*" >&2; }
die() { say "$*"; exit 2; }

# --- prerequisites ----------------------------------------------------------------------------------------------
[ -x "$VENV/bin/tunebot" ] || die "$VENV/bin/tunebot not found: run 'make install' first"
[ -x "$HARNESS/bench_webhook.sh" ] || die "wrk harness not found at $HARNESS (set TUNEBOT_BENCH_HARNESS)"
[ -r "$PAYLOAD" ] || die "payload $PAYLOAD not found (set TUNEBOT_BENCH_PAYLOAD)"
if ! command -v wrk >/dev/null; then
  say "installing wrk from Debian"
  SUDO=(); [ "$(id -u)" = 0 ] || SUDO=(sudo -n)
  { "${SUDO[@]}" apt-get update -qq && "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; } \
    >&2 || die "could not install wrk (apt-get install wrk)"
fi
for c in wrk taskset curl python3 timeout awk; do command -v "$c" >/dev/null || die "$c not found"; done
SERVE_CPU=0 OTHER_CPU=1
if [ "$(nproc)" -lt 2 ]; then
  say "warning: one CPU only; the service, wrk and the fake GitHub share it (figures are not comparable)"
  OTHER_CPU=0
fi

# --- processes and cleanup --------------------------------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/webhook_load.XXXXXX")
SERVE_PID='' GH_PID='' SAMPLER_PID='' BG_PID=''
stop_pid() { # $1 = pid, $2 = seconds to wait after SIGTERM before SIGKILL
  local pid=$1 i
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < $2 * 10; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then say "pid $pid did not stop on SIGTERM; killing it"; kill -KILL "$pid" 2>/dev/null; fi
  wait "$pid" 2>/dev/null || true
}
# shellcheck disable=SC2329  # invoked by the EXIT trap
cleanup() {
  if [ -n "$BG_PID" ] && kill -0 "$BG_PID" 2>/dev/null; then
    # The harness runs wrk under `timeout`, in a process group of its own: stop it through `timeout` (by pid).
    for child in $(ps -o pid= --ppid "$BG_PID" 2>/dev/null); do kill -TERM "$child" 2>/dev/null || true; done
    stop_pid "$BG_PID" 5
  fi
  stop_pid "$SAMPLER_PID" 1
  stop_pid "$SERVE_PID" 5  # interrupted: no point in waiting for a graceful drain of the backlog
  stop_pid "$GH_PID" 5
  if [ "$KEEP" = 1 ]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }  # utime + stime of the whole process, all threads
mb() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
metric() { # $1 = a series exactly as rendered, e.g. tunebot_webhook_requests_total{outcome="accepted"}
  curl -sS --max-time 10 "$URL_BASE/metrics" \
    | awk -v s="$1" '$1 == s { printf "%d", $2; found = 1 } END { if (!found) print 0 }'
}
field() { printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
harness() { # $1 = name, then options of bench/wrk/bench_webhook.sh; its result line goes to $WORK/<name>.out
  # In the background + `wait`, so that Ctrl-C / SIGTERM reach the trap at once instead of after the run.
  local name=$1
  shift
  "$HARNESS/bench_webhook.sh" -C "$OTHER_CPU" -t 1 -c "$CONNS" -w 0 -u "$@" -b "$COMMENT" \
    "$URL_BASE/webhook" "$SECRET" "$PAYLOAD" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  BG_PID=$!
  if ! wait "$BG_PID"; then BG_PID=''; cat "$WORK/$name.err" >&2; die "the $name run failed (see above)"; fi
  BG_PID=''
}
db_report() { taskset -c "$OTHER_CPU" "$PY" "$SUPPORT/db_report.py" "$@" "$DB"; }
json_get() { "$PY" -c "import json, sys; d = json.load(sys.stdin); print($1)"; }

SECRET="bench-webhook-secret-$$"
PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL_BASE="http://127.0.0.1:$PORT"
DB="$WORK/tunebot.db"

# --- 1. the fake GitHub and the service ---------------------------------------------------------------------------
taskset -c "$OTHER_CPU" "$PY" "$SUPPORT/fake_github.py" --report "$WORK/github.json" \
  >"$WORK/github.out" 2>"$WORK/github.err" &
GH_PID=$!
for _ in $(seq 200); do [ -s "$WORK/github.out" ] && break; kill -0 "$GH_PID" 2>/dev/null || break; sleep 0.1; done
[ -s "$WORK/github.out" ] || { cat "$WORK/github.err" >&2; die "fake GitHub did not start"; }
GH_URL=$(json_get 'd["url"]' <"$WORK/github.out")
GH_TOKEN=$(json_get 'd["token"]' <"$WORK/github.out")

env WEBHOOK_SECRET="$SECRET" GITHUB_TOKEN="$GH_TOKEN" TUNEBOT_GITHUB_API_URL="$GH_URL" \
  TUNEBOT_DATABASE_URL="sqlite:///$DB" TUNEBOT_JOB_SIGNING_KEY="bench-signing-key" PORT="$PORT" HOST=127.0.0.1 \
  TUNEBOT_PUBLIC_URL="$URL_BASE" LOG_LEVEL=WARNING \
  taskset -c "$SERVE_CPU" "$VENV/bin/tunebot" serve >"$WORK/serve.log" 2>&1 &
SERVE_PID=$!
T0=$(date +%s.%N)
for _ in $(seq 300); do
  curl -fsS --max-time 1 "$URL_BASE/healthz" >/dev/null 2>&1 && break
  kill -0 "$SERVE_PID" 2>/dev/null || break
  sleep 0.1
done
curl -fsS --max-time 2 "$URL_BASE/healthz" >/dev/null 2>&1 \
  || { tail -20 "$WORK/serve.log" >&2; die "tunebot serve did not start"; }
START_S=$(elapsed "$T0")
sleep 1
RSS_START=$(rss_kb "$SERVE_PID")
say "service up in ${START_S}s on :$PORT (pid $SERVE_PID, idle RSS $(mb "$RSS_START") MB); fake GitHub at $GH_URL"

# --- 2. warm-up and load ----------------------------------------------------------------------------------------
WARM_REQ=0
if [ "$WARMUP" -gt 0 ]; then
  harness warmup -d "$WARMUP"
  WARM_LINE=$(cat "$WORK/warmup.out")
  say "warm-up ${WARMUP}s: $WARM_LINE"
  WARM_REQ=$(field requests "$WARM_LINE")
fi
CPU0=$(cpu_ticks "$SERVE_PID")
harness load -d "$LOAD" -o "$WORK/wrk_load.txt"
LOAD_LINE=$(cat "$WORK/load.out")
CPU1=$(cpu_ticks "$SERVE_PID")
LOAD_REQ=$(field requests "$LOAD_LINE")
CPU_US=$(awk -v t=$((CPU1 - CPU0)) -v hz="$(getconf CLK_TCK)" -v n="$LOAD_REQ" 'BEGIN { printf "%.0f", t / hz * 1e6 / n }')
say "load ${LOAD}s x ${CONNS} connections: $LOAD_LINE"
say "  service CPU: ${CPU_US} us per request (all threads; 1e6/that = what one core can take)"
RPS=$(field rps "$LOAD_LINE"); P99=$(field p99_ms "$LOAD_LINE")
CLIENT_2XX=$((LOAD_REQ + WARM_REQ))
RSS_LOAD=$(rss_kb "$SERVE_PID")

# --- 3. drain and exactly-once ------------------------------------------------------------------------------------
T0=$(date +%s.%N)
deadline=$(($(date +%s) + DRAIN))
while :; do
  unfinished=$(db_report --unfinished)
  [ "$unfinished" = 0 ] && break
  if [ "$(date +%s)" -ge "$deadline" ]; then say "the worker did not drain in ${DRAIN}s: $unfinished unfinished"; break; fi
  sleep 0.5
done
DRAIN_S=$(elapsed "$T0")
REPORT=$(db_report)
ACCEPTED=$(metric 'tunebot_webhook_requests_total{outcome="accepted"}')
DUPLICATE=$(metric 'tunebot_webhook_requests_total{outcome="duplicate"}')
STORE_ERR=$(metric 'tunebot_webhook_requests_total{outcome="store_error"}')
PROCESSED=$(metric 'tunebot_deliveries_processed_total{event="issue_comment",outcome="done"}')
read -r TOTAL DONE RETRIED DUP_IDS < <(printf '%s' "$REPORT" \
  | json_get '" ".join(str(x) for x in (d["total"], d["states"].get("done", 0), d["retried"], d["duplicate_ids"]))')
# Lost: answered 202 but not stored, or stored but not done after the drain. The store is fresh: each row is a 202.
LOST=$(((ACCEPTED > TOTAL ? ACCEPTED - TOTAL : 0) + TOTAL - DONE))
say "drained in ${DRAIN_S}s: 202s=$ACCEPTED stored=$TOTAL done=$DONE processed=$PROCESSED claimed_twice=$RETRIED" \
  "duplicate_ids=$DUP_IDS duplicate_requests=$DUPLICATE store_errors=$STORE_ERR client_2xx=$CLIENT_2XX" \
  "(+2 pre-flights; wrk does not count the answers still in flight when it stops)"
EXACTLY_ONCE=1
if [ "$LOST" != 0 ] || [ "$TOTAL" != "$ACCEPTED" ] || [ "$PROCESSED" != "$DONE" ] || [ "$RETRIED" != 0 ] \
   || [ "$DUP_IDS" != 0 ] || [ "$DUPLICATE" != 0 ]; then
  EXACTLY_ONCE=0
  say "EXACTLY-ONCE VIOLATED: $REPORT"
fi
if [ "$CLIENT_2XX" -gt $((ACCEPTED + DUPLICATE + 2)) ]; then
  EXACTLY_ONCE=0
  say "the client saw $CLIENT_2XX 2xx answers but the service counted only $((ACCEPTED + DUPLICATE))"
fi

# --- 4. forged-signature flood and idle RSS ----------------------------------------------------------------------
(while kill -0 "$SERVE_PID" 2>/dev/null; do rss_kb "$SERVE_PID"; sleep 0.2; done) >"$WORK/rss_flood.txt" &
SAMPLER_PID=$!
# wrk runs for a duration, not a count: run it 5 s at a time until the service has refused FLOOD forged requests.
REJECTED=0 FLOOD_RUNS=0
while [ "$REJECTED" -lt "$FLOOD" ]; do
  harness flood -x -d 5
  FLOOD_LINE=$(cat "$WORK/flood.out")
  FLOOD_RUNS=$((FLOOD_RUNS + 1))
  [ "$FLOOD_RUNS" -lt 100 ] || die "the forged flood got only $REJECTED refusals in $FLOOD_RUNS runs"
  REJECTED=$(metric 'tunebot_webhook_requests_total{outcome="bad_signature"}')
done
stop_pid "$SAMPLER_PID" 1
SAMPLER_PID=
RSS_FLOOD=$(sort -n "$WORK/rss_flood.txt" | tail -1)
RSS_FLOOD_FIRST=$(head -1 "$WORK/rss_flood.txt")
sleep 3
RSS_IDLE=$(rss_kb "$SERVE_PID")
say "forged flood of ${FLOOD} requests ($FLOOD_RUNS x 5 s, last: $FLOOD_LINE): rejected=$REJECTED; RSS $(mb "$RSS_FLOOD_FIRST") -> max $(mb "$RSS_FLOOD") MB"
say "RSS: idle at start $(mb "$RSS_START") MB, after the load $(mb "$RSS_LOAD") MB, idle after the flood" \
  "$(mb "$RSS_IDLE") MB"

# --- 5. no ML stack in the service ------------------------------------------------------------------------------
FORBIDDEN=$(grep -Eio '/(torch|swift|evalscope|transformers|peft|bitsandbytes|runner_agent)/[^ ]*' \
  "/proc/$SERVE_PID/maps" | sort -u | head -5 || true)
if [ -n "$FORBIDDEN" ]; then
  say "FORBIDDEN LIBRARIES MAPPED into the service: $FORBIDDEN"
else
  say "no torch / ms-swift / EvalScope / transformers / peft file is mapped into the service process"
fi

# --- 6. shutdown --------------------------------------------------------------------------------------------------
stop_pid "$SERVE_PID" 20
SERVE_PID=''
stop_pid "$GH_PID" 5
GH_PID=''
[ -s "$WORK/github.json" ] && say "the fake GitHub was asked: $(cat "$WORK/github.json")"
if grep -Eq 'Traceback|ERROR' "$WORK/serve.log"; then
  say "the service logged errors:"
  grep -E -m5 -A3 'Traceback|ERROR' "$WORK/serve.log" >&2 || true
fi

RSS_MAX=$(printf '%s\n' "$RSS_FLOOD" "$RSS_IDLE" "$RSS_START" | sort -n | tail -1)
verdict() { if awk "BEGIN { exit !($2) }"; then echo "$1 met"; else echo "$1 MISSED"; fi; }
V=("$(verdict "rps>=1000" "$RPS >= 1000")" "$(verdict "p99<=50ms" "$P99 <= 50")" "$(verdict "lost=0" "$LOST == 0")"
   "$(verdict "rss<=150MB" "$(mb "$RSS_MAX") <= 150")")
MISSED=$(printf '%s\n' "${V[@]}" | grep -c MISSED || true)
say "targets: ${V[*]}"
echo "rps=$(awk -v r="$RPS" 'BEGIN { printf "%.0f", r }') p99_ms=$P99 lost=$LOST rss_mb=$(mb "$RSS_MAX")"
if [ "$EXACTLY_ONCE" = 0 ] || [ -n "$FORBIDDEN" ]; then exit 1; fi
if [ "$ENFORCE" = 1 ] && [ "$MISSED" -gt 0 ]; then exit 1; fi
exit 0

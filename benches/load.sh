#!/usr/bin/env bash
# HTTP load benchmark: Regent (release build, default policies) against a bare
# hyper server returning a fixed body, loaded by the same wrk in the same run.
# Bodies: every generated test input of the default policies, cycled, sent to
# /v1/data/<pkg>/allow and to /v1/data/<pkg>/filter. Loopback only.
#
# Two Regents: one with --disable-decision-cache (uncached rows), one with the
# cache on, warmed with every body first (cached rows: all hits). Afterwards
# the cached one is filled with 100k distinct decisions and its RSS read.
#
#   bash benches/load.sh                 # 3 runs of 10 s each, 32 connections
#   RUNS=5 DURATION=20s CONNS=32 bash benches/load.sh
#   LOGGED=1 bash benches/load.sh        # + rows with the console decision log on
#   PIN=1 bash benches/load.sh           # servers on CPU 1, wrk on CPU 0 (below)
#
# With LOGGED=1, a third Regent runs with --set decision_logs.console=true
# and the cache on; its stderr goes through a pipe to a reader that keeps
# only the first lines (as a container runtime reads a container's stderr).
# It is warmed like the cached one: "allow-cached-logged" is all hits, the
# path where the log's share of the cost is largest.
#
# The "paced-" rows load the same targets with the same 32 connections, but
# each connection waits a random 0..2*PACED_MS ms (PACED_MS defaults to 2)
# after every answer before its next request (see cycle.lua): a load below
# saturation (their ratio is to "paced-bare"),
# where latency is the server's own. At full speed a closed loop's mean
# latency is CONNS / (requests/s) whatever the server does (Little's law;
# less the time wrk takes between an answer and the next request, which it
# does not count).
#
# With PIN=1, every server under load (and the LOGGED=1 log reader) runs on
# CPU 1 only and wrk on CPU 0 only (taskset; start to ready is not pinned),
# so the generator and the server under test never take turns on one core:
# a view of what one core of each server does, without the scheduling
# between them that the default (shared) setup counts in latency.
#
# Needs wrk (Debian: apt-get install wrk) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
LOGGED=${LOGGED:-0}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
PACED_MS=${PACED_MS:-2}
PIN=${PIN:-0}
srv=() gen=()
if [ "$PIN" = 1 ]; then
  srv=(taskset -c 1) gen=(taskset -c 0)
  "${srv[@]}" true && "${gen[@]}" true || { echo "PIN=1 needs CPUs 0 and 1" >&2; exit 1; }
fi

cargo build --release --quiet --bin regent --example bare_server
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# path<TAB>{"input": ...} for allow and for filter.
sed -nE 's/^[[:space:]]*(not )?data\.([a-z_]+)\.allow with input as (.*)$/\2\t\3/p' policies/tests/*_test.rego \
  | awk -F'\t' '{ printf "/v1/data/%s/allow\t{\"input\": %s}\n", $1, $2 > "'"$work"'/allow.txt";
                  printf "/v1/data/%s/filter\t{\"input\": %s}\n", $1, $2 > "'"$work"'/filter.txt" }'
echo "bodies: $(wc -l < "$work/allow.txt") per endpoint"

# 100k distinct bodies (generated inputs with a counter) to fill the cache.
awk -F'\t' '{ sub(/}$/, "", $2); for (k = 0; k < 4; k++) if (n++ < 100000) printf "%s\t%s, \"fill\": %d}\n", $1, $2, n }' \
  "$work/allow.txt" > "$work/fill.txt"

# Start a Regent (extra flags: $1) and print "pid addr" once /health answers 200.
start_regent() { # log-name flags...
  local log="$work/$1.log"; shift
  "${srv[@]}" ./target/release/regent run --server --addr 127.0.0.1:0 --log-level info "$@" 2> "$log" &
  local pid=$!
  until grep -q "Initializing server" "$log" 2>/dev/null; do sleep 0.001; done
  local addr; addr=$(grep -o '127\.0\.0\.1:[0-9]*' "$log" | head -1)
  until curl -sf "http://$addr/health" > /dev/null; do sleep 0.001; done
  echo "$pid $addr"
}
# Like start_regent, but stderr goes through a pipe to a reader that keeps
# only the first 20 lines in the log (the decision log is read and dropped).
start_logged() { # log-name flags...
  local log="$work/$1.log"; shift
  "${srv[@]}" ./target/release/regent run --server --addr 127.0.0.1:0 --log-level info "$@" \
    2> >("${srv[@]}" python3 -c 'import sys
out = open(sys.argv[1], "w")
for n, line in enumerate(sys.stdin):
    if n < 20:
        out.write(line)
        out.flush()' "$log") &
  local pid=$!
  until grep -q "Initializing server" "$log" 2>/dev/null; do sleep 0.001; done
  local addr; addr=$(grep -o '127\.0\.0\.1:[0-9]*' "$log" | head -1)
  until curl -sf "http://$addr/health" > /dev/null; do sleep 0.001; done
  echo "$pid $addr"
}
# Start to ready first, on an idle machine: 10 starts of the release binary.
ready=$(python3 benches/start_to_ready.py target/release/regent "${READY_STARTS:-10}")
read -r regent_pid regent_addr < <(start_regent uncached --disable-decision-cache)
pids+=("$regent_pid")
read -r cached_pid cached_addr < <(start_regent cached)
pids+=("$cached_pid")

if [ "$LOGGED" = 1 ]; then
  read -r logged_pid logged_addr < <(start_logged logged --set decision_logs.console=true)
  pids+=("$logged_pid")
fi

"${srv[@]}" ./target/release/examples/bare_server > "$work/bare.log" &
bare_pid=$!
pids+=("$bare_pid")
until grep -q listening "$work/bare.log" 2>/dev/null; do sleep 0.01; done
bare_addr=$(grep -o '127\.0\.0\.1:[0-9]*' "$work/bare.log")

# CPU time (user + system, in clock ticks) a process has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tick_us=$((1000000 / $(getconf CLK_TCK)))
# Load addr ($1) with bodies ($2); print "name req/s p50 p99 non-2xx server-us
# wrk-us": the last two are the CPU time the server (pid $4) and wrk used
# per request during the load (bash's `times` gives wrk's).
load() { # addr bodies name server-pid
  local before; before=$(cpu_ticks "$4")
  (BODIES="$2" DELAY_MS="${DELAY_MS:-}" "${gen[@]}" wrk -t1 -c"$CONNS" -d"$DURATION" --latency -s benches/cycle.lua "http://$1" \
    > "$work/wrk.out"; times > "$work/wrk.times")
  local used=$(( ($(cpu_ticks "$4") - before) * tick_us ))
  awk -v name="$3" -v srv_us="$used" '
    FNR == NR && /requests in/ {n=$1} FNR == NR && /Requests\/sec/ {rps=$2}
    FNR == NR && /^ +50%/ {p50=$2} FNR == NR && /^ +99%/ {p99=$2} FNR == NR && /Non-2xx/ {bad=$NF}
    FNR != NR && FNR == 2 {split($1, u, /[ms]/); split($2, s, /[ms]/); wrk_us=(u[1]*60+u[2]+s[1]*60+s[2])*1e6}
    END {printf "%s %s %s %s %s %.1f %.1f\n", name, rps, p50, p99, bad+0, srv_us/n, wrk_us/n}' \
    "$work/wrk.out" "$work/wrk.times"
}

# Warm the cached instance: every body once (a miss each), then measure hits.
DURATION=5s load "$cached_addr" "$work/allow.txt" warm "$cached_pid" > /dev/null
DURATION=5s load "$cached_addr" "$work/filter.txt" warm "$cached_pid" > /dev/null
if [ "$LOGGED" = 1 ]; then DURATION=5s load "$logged_addr" "$work/allow.txt" warm "$logged_pid" > /dev/null; fi
for run in $(seq "$RUNS"); do
  load "$bare_addr" "$work/allow.txt" bare "$bare_pid"
  load "$regent_addr" "$work/allow.txt" allow "$regent_pid"
  load "$regent_addr" "$work/filter.txt" filter "$regent_pid"
  load "$cached_addr" "$work/allow.txt" allow-cached "$cached_pid"
  load "$cached_addr" "$work/filter.txt" filter-cached "$cached_pid"
  if [ "$LOGGED" = 1 ]; then load "$logged_addr" "$work/allow.txt" allow-cached-logged "$logged_pid"; fi
  # Paced: the same connections, each waiting 0..2*PACED_MS ms after every answer.
  DELAY_MS=$PACED_MS load "$bare_addr" "$work/allow.txt" paced-bare "$bare_pid"
  DELAY_MS=$PACED_MS load "$regent_addr" "$work/allow.txt" paced-allow "$regent_pid"
  DELAY_MS=$PACED_MS load "$regent_addr" "$work/filter.txt" paced-filter "$regent_pid"
  DELAY_MS=$PACED_MS load "$cached_addr" "$work/allow.txt" paced-allow-cached "$cached_pid"
done > "$work/results.txt"
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$regent_pid/status")
# Decisions that overran the inline budget under load (evaluated twice).
slow=$(curl -sf "http://$regent_addr/metrics" | awk '/^regent_slow_decisions_total/ {print $2}')
warm_rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$cached_pid/status")
# Fill the cached instance with 100k distinct decisions, then read its RSS.
DURATION=15s load "$cached_addr" "$work/fill.txt" fill "$cached_pid" > /dev/null
entries=$(curl -sf "http://$cached_addr/metrics" | awk '/^regent_decision_cache_entries/ {print $2}')
cached_rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$cached_pid/status")

if [ "$PIN" = 1 ]; then echo "PIN=1: the servers under load on CPU 1, wrk on CPU 0"; fi
python3 - "$work/results.txt" "$ready" "$rss_kb" "$entries" "$cached_rss_kb" "$warm_rss_kb" "$slow" <<'PY'
import statistics, sys
def ms(v):
    for unit, f in (("us", 1e-3), ("ms", 1.0), ("s", 1e3)):
        if v.endswith(unit) and (unit != "s" or not v.endswith(("us", "ms"))):
            return float(v[: -len(unit)]) * f
    return float(v)
rows = {}
for line in open(sys.argv[1]):
    name, rps, p50, p99, bad, srv_us, wrk_us = line.split()
    rows.setdefault(name, []).append((float(rps), ms(p50), ms(p99), int(bad), float(srv_us), float(wrk_us)))
med = lambda xs: statistics.median(xs)
bare = med([r[0] for r in rows["bare"]])
print(f"{'target':19} {'req/s':>10} {'ratio':>6} {'p50 ms':>7} {'p99 ms':>7} {'srv us':>7} {'wrk us':>7} non-2xx  (medians of {len(rows['bare'])} runs)")
names = ("bare", "allow", "filter", "allow-cached", "filter-cached", "allow-cached-logged",
         "paced-bare", "paced-allow", "paced-filter", "paced-allow-cached")
for name in names:
    if name not in rows:
        continue
    r = rows[name]
    rps = med([x[0] for x in r])
    base = med([x[0] for x in rows["paced-bare"]]) if name.startswith("paced-") else bare
    print(f"{name:19} {rps:10.0f} {rps / base:6.2f} {med([x[1] for x in r]):7.3f} {med([x[2] for x in r]):7.3f} "
          f"{med([x[4] for x in r]):7.1f} {med([x[5] for x in r]):7.1f} {sum(x[3] for x in r)}")
print("srv us, wrk us: CPU time (user + system) the server process and wrk used per request")
print(sys.argv[2])
print(f"uncached Regent RSS after the runs: {int(sys.argv[3]) / 1024:.1f} MiB; "
      f"{sys.argv[7]} of its decisions overran the inline budget (evaluated again off the workers)")
print(f"cached Regent: RSS {int(sys.argv[6]) / 1024:.1f} MiB after the cached runs; after the fill: {sys.argv[4]} cached decisions, RSS {int(sys.argv[5]) / 1024:.1f} MiB")
PY

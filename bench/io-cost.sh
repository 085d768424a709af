#!/usr/bin/env bash
# bench/io-cost.sh [WORKLOAD...]: what one I/O costs the target, in counts that hold up on a loaded machine.
# Starts `serve --store memory --cores 1 --poll $POLL --volume-size 256M` (default sleep; written whole first) from this checkout (Release) on CPU 1, drives
# it with SPDK's perf on CPU 0 and, over the measured seconds, counts with `perf stat -p` on the whole target process:
# CPU time (task-clock: user + kernel, so the loopback TCP and io_uring work done in its context counts), syscalls,
# io_uring_enter calls, submissions (SQEs) and completions (CQEs), context switches, receives that found no data
# (io_uring poll arms) and io-wq punts; CLOCKS=1 also the managed clock reads (uprobes on libSystem.Native's
# SystemNative_GetTimestamp, Stopwatch, and ..._GetLowResolutionTimestamp, Environment.TickCount64: each probe hit
# traps, so the spin runs slower under it; compare these counts only with each other).
# Prints per I/O (I/O = commands the target completed over the counted seconds, from its metrics on METRICS_PORT,
# default PORT+1): shard-thread CPU us, CPU us, syscalls, enters, SQEs, CQEs, switches, poll arms, punts, [clock reads]; and CPU ns per KiB.
# Workloads: rr4k-qd1 (default), rr4k-qd32, sr128k-qd8, sw128k-qd8. Env: SECS=8 WARMUP=3 POLL=sleep PORT=25620
# DISCOVERY_PORT=25209 LABEL, SERVE_ARGS (more serve options, e.g. --in-capsule-data 128K), DLL (a built duroslight.dll elsewhere, e.g. a copy of another tree's bin; SKIP_BUILD=1), NICE (e.g. -15: target and perf ahead of a loaded machine's builds; root), SPDK_PEER_DIR (a built SPDK tree, see the spdk-perf tool), 2 MiB hugepages.
set -euo pipefail
cd "$(dirname "$0")/.."
label=${LABEL:-$(git rev-parse --short HEAD)}; port=${PORT:-25620}; dport=${DISCOVERY_PORT:-25209}
secs=${SECS:-8}; warm=${WARMUP:-3}; poll=${POLL:-sleep}; prio=${NICE:-0}; mport=${METRICS_PORT:-$((port + 1))}
: "${SPDK_PEER_DIR:?set SPDK_PEER_DIR to a built SPDK tree}"
export LD_LIBRARY_PATH=$SPDK_PEER_DIR/build/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
perf=$SPDK_PEER_DIR/build/examples/perf
[ "${SKIP_BUILD:-}" ] || dotnet build -c Release src/Duroslight.Server -nologo -v q > /dev/null
dir=$(mktemp -d /tmp/io-cost.XXXXXX)
# PROFILE: JIT-compiled methods get names in the profile (/tmp/perf-PID.map).
# (W^X off: with it on, JIT code runs from an anonymous double mapping that perf cannot name.)
[ "${PROFILE:-}" ] && export DOTNET_PerfMapEnabled=1 DOTNET_EnableWriteXorExecute=0
nice -n "$prio" taskset -c 1 dotnet "${DLL:-src/Duroslight.Server/bin/Release/net10.0/duroslight.dll}" serve --listen 127.0.0.1:$port \
    --discovery 127.0.0.1:$dport --metrics 127.0.0.1:$mport --data-dir "$dir" --store memory --cores 1 --poll "$poll" --volume-size 256M ${SERVE_ARGS:-} > "$dir/log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir" "/tmp/perf-$pid.map"' EXIT
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.2; done
tr="trtype:tcp adrfam:IPv4 traddr:127.0.0.1 trsvcid:$port subnqn:nqn.2026-11.io.duroslight:default hostnqn:nqn.2014-08.org.nvmexpress:uuid:$(cat /proc/sys/kernel/random/uuid)"
args() {
  case $1 in
    rr4k-qd1) echo "-o 4096 -q 1 -w randread";;      rr4k-qd32) echo "-o 4096 -q 32 -w randread";;
    sr128k-qd8) echo "-o 131072 -q 8 -w read";;      sw128k-qd8) echo "-o 131072 -q 8 -w write";;
    *) echo "unknown workload $1" >&2; exit 2;;
  esac
}
events=task-clock,context-switches,raw_syscalls:sys_enter,syscalls:sys_enter_io_uring_enter,io_uring:io_uring_submit_req,io_uring:io_uring_complete,io_uring:io_uring_poll_arm,io_uring:io_uring_queue_async_work
if [ "${CLOCKS:-}" ]; then
  native=$(dotnet --list-runtimes | awk '/Microsoft.NETCore.App 10/{gsub(/[\[\]]/, "", $3); d = $3 "/" $2} END{print d}')/libSystem.Native.so
  for f in SystemNative_GetTimestamp SystemNative_GetLowResolutionTimestamp; do
    perf probe -q -x "$native" -a $f 2> /dev/null || true   # already defined: fine
  done
  trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir" "/tmp/perf-$pid.map"; perf probe -q -d "probe_libSystem:*"' EXIT
  events=$events,probe_libSystem:SystemNative_GetTimestamp,probe_libSystem:SystemNative_GetLowResolutionTimestamp
fi
# Written whole first: the memory store allocates a page on its first write, which the rows must not measure.
nice -n "$prio" taskset -c 0 "$perf" -c 0x1 -q 8 -o 131072 -w write -d 2048 -t 120 -r "$tr" > /dev/null 2>&1
for w in "${@:-rr4k-qd1}"; do
  read -r -a a <<< "$(args "$w")"
  # perf's -a warms up unmeasured; the counters cover the middle of its measured seconds.
  nice -n "$prio" taskset -c 0 "$perf" -c 0x1 "${a[@]}" -a "$warm" -t "$secs" -r "$tr" > "$dir/perf.txt" 2>&1 &
  spdk=$!
  sleep $((warm + 1))
  read -r load _ < /proc/loadavg
  if [ "${PROFILE:-}" ]; then   # PROFILE=DIR: also a profile (-g) of the same seconds: DIR/LABEL.WORKLOAD.perf.data, top symbols in .txt (.dso.txt: by binary), bench/profile-buckets.py's shares of the shard thread in .buckets.txt
    perf record -g -F 1999 -p "$pid" -o "$dir/rec.data" -- sleep $((secs - 2)) > /dev/null 2>&1 &
    rec=$!
  fi
  # The target's own counters over exactly the counted seconds: commands completed and the shard thread's CPU.
  scrape() { curl -s "http://127.0.0.1:$mport/metrics" | awk '/^duroslight_commands_total/ { n += $NF } /^duroslight_shard_cpu_seconds_total/ { c += $NF } END { printf "%d %.6f\n", n, c }'; }
  read -r io0 cpu0 <<< "$(scrape)"
  perf stat -p "$pid" -x, -e "$events" -- sleep $((secs - 2)) 2> "$dir/stat.txt" > /dev/null
  read -r io1 cpu1 <<< "$(scrape)"
  echo "$((io1 - io0)),,ios" >> "$dir/stat.txt"; echo "$(echo "$cpu1 - $cpu0" | bc -l),,shardcpu" >> "$dir/stat.txt"
  if [ "${PROFILE:-}" ]; then
    wait $rec || true; mkdir -p "$PROFILE"
    cp "$dir/rec.data" "$PROFILE/$label.$w.perf.data"
    python3 bench/profile-buckets.py "$dir/rec.data" shard-0 > "$PROFILE/$label.$w.buckets.txt" || true
    perf report -i "$dir/rec.data" --no-children -g none --sort sym --stdio 2> /dev/null | grep -v '^#' | grep -v '^$' | head -40 > "$PROFILE/$label.$w.txt" || true
    perf report -i "$dir/rec.data" --no-children -g none --sort dso --stdio 2> /dev/null | grep -v '^#' | grep -v '^$' | head -12 > "$PROFILE/$label.$w.dso.txt" || true
  fi
  wait $spdk || true
  grep -q '^Total' "$dir/perf.txt" || { echo "$w: perf failed:"; tail -5 "$dir/perf.txt"; cat "$dir/stat.txt"; continue; }
  awk -v l="$label" -v w="$w" -v ld="$load" -v s=$((secs - 2)) -v size="${a[1]}" '
    FNR == NR { split($0, f, ","); c[f[3]] = f[1]; next }
    /^Total/ { iops = $3; n = c["ios"] > 0 ? c["ios"] : iops * s;
      printf "%s %s load1=%s IOPS=%s MiB/s=%.0f ios=%d shard_us/IO=%.2f cpu_us/IO=%.2f cpu_ns/KiB=%.0f syscalls/IO=%.3f enters/IO=%.3f sqes/IO=%.3f cqes/IO=%.3f switches/IO=%.3f pollarms/IO=%.3f punts/IO=%.3f",
        l, w, ld, iops, iops * size / 1048576, n, c["shardcpu"] * 1e6 / n, c["task-clock"] * 1000 / n, c["task-clock"] * 1e6 / (n * size / 1024),
        c["raw_syscalls:sys_enter"] / n, c["syscalls:sys_enter_io_uring_enter"] / n, c["io_uring:io_uring_submit_req"] / n,
        c["io_uring:io_uring_complete"] / n, c["context-switches"] / n,
        c["io_uring:io_uring_poll_arm"] / n, c["io_uring:io_uring_queue_async_work"] / n
      if ("probe_libSystem:SystemNative_GetTimestamp" in c)
        printf " stopwatch/IO=%.2f tickcount/IO=%.2f", c["probe_libSystem:SystemNative_GetTimestamp"] / n,
          c["probe_libSystem:SystemNative_GetLowResolutionTimestamp"] / n
      printf "\n" }' "$dir/stat.txt" "$dir/perf.txt"
done

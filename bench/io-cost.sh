#!/usr/bin/env bash
# bench/io-cost.sh [WORKLOAD...]: what one I/O costs the target, in counts that hold up on a loaded machine.
# Starts `serve --store memory --cores 1 --poll $POLL --volume-size 256M` (default sleep; written whole first) from this checkout (Release) on CPU 1, drives
# it with SPDK's perf on CPU 0 and, over the measured seconds, counts with `perf stat -p` on the whole target process:
# CPU time (task-clock: user + kernel, so the loopback TCP and io_uring work done in its context counts), syscalls,
# io_uring_enter calls, submissions (SQEs) and completions (CQEs), context switches, receives that found no data
# (io_uring poll arms) and io-wq punts; CLOCKS=1 also the managed clock reads (uprobes on libSystem.Native's
# SystemNative_GetTimestamp, Stopwatch, and ..._GetLowResolutionTimestamp, Environment.TickCount64: each probe hit
# traps, so the spin runs slower under it; compare these counts only with each other).
# Prints per I/O: shard-thread CPU us, CPU us, syscalls, enters, SQEs, CQEs, switches, poll arms, punts, [clock reads]; and CPU ns per KiB.
# The I/O count is exact: the target's duroslight_commands_total over the counted seconds (metrics on METRICS_PORT),
# which also gives the shard loop's own counts per I/O (iters: loop iterations, busy mode's include its spin between
# the runs; work_iters: those that found work; loop_enters: its io_uring_enter calls; sleeps: those that waited) and
# CQEs per enter; and ksoftirqd/1's CPU time per I/O (softirq work the kernel deferred to a thread on the target's
# CPU) and the interrupts CPU 1 took per I/O (both machine-wide, so other load on CPU 1 adds to them).
# Workloads: rr4k-qd1 (default), rr4k-qd32, sr128k-qd8, sw128k-qd8. Env: SECS=8 WARMUP=3 POLL=sleep PORT=25620
# DISCOVERY_PORT=25209 LABEL, SERVE_ARGS (more serve options, e.g. --in-capsule-data 128K), DLL (a built duroslight.dll elsewhere, e.g. a copy of another tree's bin; SKIP_BUILD=1), NICE (e.g. -15: target and perf ahead of a loaded machine's builds; root), SPDK_PEER_DIR (a built SPDK tree, see the spdk-perf tool), 2 MiB hugepages.
set -euo pipefail
cd "$(dirname "$0")/.."
label=${LABEL:-$(git rev-parse --short HEAD)}; port=${PORT:-25620}; dport=${DISCOVERY_PORT:-25209}; mport=${METRICS_PORT:-25621}
secs=${SECS:-8}; warm=${WARMUP:-3}; poll=${POLL:-sleep}; prio=${NICE:-0}
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
# The target's loop and command counters, summed over shards: name value.
scrape() {
  curl -s "http://127.0.0.1:$mport/metrics" | awk '
    /^duroslight_commands_total\{.*op="(read|write)"/ { c["ios"] += $NF }
    /^duroslight_shard_iterations_total/ { c["iters"] += $NF }
    /^duroslight_shard_work_iterations_total/ { c["work_iters"] += $NF }
    /^duroslight_shard_enters_total/ { c["loop_enters"] += $NF }
    /^duroslight_shard_sleeps_total/ { c["sleeps"] += $NF }
    /^duroslight_shard_cpu_seconds_total/ { c["shardcpu"] += $NF * 1e6 }   # us
    END { for (k in c) printf "%s %.0f\n", k, c[k] }'
}
# Inter-processor interrupts CPU 1 has taken (rescheduling, function call, IRQ work: how task work reaches a ring
# without deferred task work), machine-wide.
irqs1() { awk '$1 ~ /^(RES|CAL|IWI):$/ { n += $3 } END { print n }' /proc/interrupts; }
# Times the kernel took the CPU from the shard thread (involuntary context switches of shard-0): a busy shard that is
# preempted waits for its next time slice, a sleeping one is woken ahead of the tasks that ran meanwhile.
preempted() {
  for t in /proc/$pid/task/*; do [ "$(cat "$t/comm")" = shard-0 ] && awk '/^nonvoluntary_ctxt_switches/{print $2}' "$t/status"; done
}
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
# The first scrapes compile the metrics endpoint (seconds with tiering off); later ones take milliseconds.
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$mport/metrics" > /dev/null && break; sleep 0.2; done
scrape > /dev/null
# Written whole first: the memory store allocates a page on its first write, which the rows must not measure.
nice -n "$prio" taskset -c 0 "$perf" -c 0x1 -q 8 -o 131072 -w write -d 2048 -t 120 -r "$tr" > /dev/null 2>&1
for w in "${@:-rr4k-qd1}"; do
  read -r -a a <<< "$(args "$w")"
  # A warm-up run first, then the counted run: perf stat counts over the counted run's whole life (connect to
  # disconnect, a few hundred syscalls against 10^5 I/Os), and the target is idle while it is scraped before and
  # after, so the counters and the commands (duroslight_commands_total) cover the same I/Os exactly.
  nice -n "$prio" taskset -c 0 "$perf" -c 0x1 "${a[@]}" -t "$warm" -r "$tr" > /dev/null 2>&1 || true
  read -r load _ < /proc/loadavg
  scrape > "$dir/m0.txt"
  read -r ks0 _ < /proc/$(pgrep -x ksoftirqd/1)/schedstat; irq0=$(irqs1); read -r pre0 < <(preempted)
  if [ "${PROFILE:-}" ]; then   # PROFILE=DIR: also a profile (-g) of the same seconds: DIR/LABEL.WORKLOAD.perf.data, top symbols in .txt (.dso.txt: by binary), bench/profile-buckets.py's shares of the shard thread in .buckets.txt
    perf record -g -F 1999 -p "$pid" -o "$dir/rec.data" -- sleep "$secs" > /dev/null 2>&1 &
    rec=$!
  fi
  perf stat -p "$pid" -x, -e "$events" -o "$dir/stat.txt" -- \
    nice -n "$prio" taskset -c 0 "$perf" -c 0x1 "${a[@]}" -t "$secs" -r "$tr" > "$dir/perf.txt" 2>&1 || true
  sleep 0.3   # past the next tick, which publishes the last commands' counts
  scrape > "$dir/m1.txt"
  read -r ks1 _ < /proc/$(pgrep -x ksoftirqd/1)/schedstat
  echo "ksoftirqd $((ks1 - ks0))" >> "$dir/m1.txt"; echo "irqs $(($(irqs1) - irq0))" >> "$dir/m1.txt"
  echo "preempted $(($(preempted) - pre0))" >> "$dir/m1.txt"
  if [ "${PROFILE:-}" ]; then
    wait $rec || true; mkdir -p "$PROFILE"
    cp "$dir/rec.data" "$PROFILE/$label.$w.perf.data"; cp "/tmp/perf-$pid.map" "$PROFILE/$label.$w.perf.map" 2> /dev/null || true
    python3 bench/profile-buckets.py "$dir/rec.data" shard-0 > "$PROFILE/$label.$w.buckets.txt" || true
    perf report -i "$dir/rec.data" --no-children -g none --sort sym --stdio 2> /dev/null | grep -v '^#' | grep -v '^$' | head -40 > "$PROFILE/$label.$w.txt" || true
    perf report -i "$dir/rec.data" --no-children -g none --sort dso --stdio 2> /dev/null | grep -v '^#' | grep -v '^$' | head -12 > "$PROFILE/$label.$w.dso.txt" || true
  fi
  awk -v l="$label" -v w="$w" -v ld="$load" -v s="$secs" -v size="${a[1]}" '
    FILENAME ~ /m0.txt$/ { m0[$1] = $2; next }
    FILENAME ~ /m1.txt$/ { m[$1] = $2 - m0[$1]; next }
    FILENAME ~ /stat.txt$/ { if (split($0, f, ",") > 2) c[f[3]] = f[1]; next }
    END { iops = m["ios"] / s; n = m["ios"]; if (n <= 0) { print w ": no commands counted"; exit }
      printf "%s %s load1=%s IOPS=%s MiB/s=%.0f ios=%d shard_us/IO=%.2f cpu_us/IO=%.2f cpu_ns/KiB=%.0f syscalls/IO=%.3f enters/IO=%.3f sqes/IO=%.3f cqes/IO=%.3f cqes/enter=%.2f switches/IO=%.3f pollarms/IO=%.3f punts/IO=%.3f iters/IO=%.1f work_iters/IO=%.3f loop_enters/IO=%.3f sleeps/IO=%.3f ksoftirqd1_ns/IO=%.0f ipis1/IO=%.3f shard_preempted/IO=%.4f",
        l, w, ld, iops, iops * size / 1048576, n, m["shardcpu"] / n, c["task-clock"] * 1000 / n, c["task-clock"] * 1e6 / (n * size / 1024),
        c["raw_syscalls:sys_enter"] / n, c["syscalls:sys_enter_io_uring_enter"] / n, c["io_uring:io_uring_submit_req"] / n,
        c["io_uring:io_uring_complete"] / n, c["io_uring:io_uring_complete"] / c["syscalls:sys_enter_io_uring_enter"],
        c["context-switches"] / n, c["io_uring:io_uring_poll_arm"] / n, c["io_uring:io_uring_queue_async_work"] / n,
        m["iters"] / n, m["work_iters"] / n, m["loop_enters"] / n, m["sleeps"] / n, m["ksoftirqd"] / n, m["irqs"] / n, m["preempted"] / n
      if ("probe_libSystem:SystemNative_GetTimestamp" in c)
        printf " stopwatch/IO=%.2f tickcount/IO=%.2f", c["probe_libSystem:SystemNative_GetTimestamp"] / n,
          c["probe_libSystem:SystemNative_GetLowResolutionTimestamp"] / n
      printf "\n" }' "$dir/m0.txt" "$dir/m1.txt" "$dir/stat.txt"
done

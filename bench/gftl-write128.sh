#!/bin/bash
# Fixed-work write runs on the GFTL through SPDK's initiator. Phases (PHASES, in order, default "prefill rw4k sw128k"):
#   prefill   8192 128K sequential writes at QD8 (the 1 GiB namespace once)
#   rw4k      RW_IOS 4K random writes at QD32 (the collector starts once the log wraps)
#   rw4k-qd1  RW_QD1_IOS 4K random writes at QD1 (a lone write: goes out at once as its own record)
#   sr128k    SR_PASSES 128K sequential read passes at QD8 (default none; with them the default order follows
#             compare.sh's, rw4k, sr128k, sw128k: the first pass re-packs what the 4K writes fragmented)
#   sw128k    SW_PASSES passes of 128K sequential writes at QD8 over the namespace (the log wraps on the default
#             4 GiB device, so the collector must keep up with the stream)
# After each phase, its deltas: rate and load (not claims), then counts that do not depend on the machine's load:
# records and host writes (host writes per record), mean records in flight when one started (depth), host writes
# that waited in the queue and for how long, waits for a free segment, segments freed, device bytes written
# (records, re-packs and the collector's copies), user bytes written and the collector's relocated bytes, segments
# opened fresh (never written: on a file-backed device the filesystem allocates as they fill) or reused, device reads of chunk reads per
# host I/O, re-packed bytes; the target's device traffic from /proc/PID/io (write bytes per host byte; read_bytes:
# host reads and the collector's victim reads);
# the shard thread's CPU time (/proc/PID/task/TID/schedstat, ns) and the whole process's (utime + stime), per host
# I/O; and with perf stat over the phase: syscalls, io_uring_enter calls, io_uring submissions, io-wq punts, context
# switches, and the block layer's bios, device requests and plug flushes per host I/O (in the process's context).
# POLL=sleep runs the shard in sleep mode: with the default busy polling its thread is on the CPU the whole time, so
# its CPU per I/O is wall time, not work; in sleep mode it is the work (plus the idle spin, at most 100 us per gap).
# STORE=memory runs the same phases on `--store memory` (no GFTL counters): its shard CPU per write is the engine and
# network path alone, so the GFTL's own per-write cost is the difference. PROFILE=PHASE also records `perf record -g`
# of the shard thread during that phase (JIT symbols through DOTNET_PerfMapEnabled=1 and W^X off; that costs a little on its
# own) into OUTDIR/PHASE.profile.txt (top symbols, self and children).
# usage: SPDK_PEER_DIR=$HOME/spdk bench/gftl-write128.sh OUTDIR   (from the checkout, after a Release build of
# src/Duroslight.Server; env: PHASES, RW_IOS=131072 RW_QD1_IOS=5000 SR_PASSES=0 SW_PASSES=4 DEV=4G PORT=14640 SCRATCH=/var/tmp
# STORE=gftl|memory POLL=busy|sleep PROFILE=PHASE NICE=0 (e.g. -15 as root on a loaded machine) DLL=path/to/duroslight.dll)
set -u
out=$1; RW_IOS=${RW_IOS:-131072}; RW_QD1_IOS=${RW_QD1_IOS:-5000}; SW_PASSES=${SW_PASSES:-4}; PORT=${PORT:-14640}
SR_PASSES=${SR_PASSES:-0}; PHASES=${PHASES:-prefill rw4k $( ((SR_PASSES > 0)) && echo sr128k) sw128k}; STORE=${STORE:-gftl}; PROFILE=${PROFILE:-}; NICE=${NICE:-0}; POLL=${POLL:-busy}
SPDK=${SPDK_PEER_DIR:?set SPDK_PEER_DIR}
mkdir -p "$out"; export LD_LIBRARY_PATH=$SPDK/build/lib
PERF=$SPDK/build/examples/perf
dev=${SCRATCH:-/var/tmp}/gftl-w128-$$.img; data=${SCRATCH:-/var/tmp}/gftl-w128-data-$$; rm -rf "$dev" "$data"; mkdir -p "$data"
DLL=${DLL:-$(ls src/Duroslight.Server/bin/Release/net*/duroslight.dll | head -1)}
case $STORE in gftl) store=(--device "$dev:${DEV:-4G}");; memory) store=(--store memory);; *) echo "STORE=gftl|memory"; exit 2;; esac
[ -n "$PROFILE" ] && export DOTNET_PerfMapEnabled=1 DOTNET_EnableWriteXorExecute=0
(exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && { echo "port $PORT is in use"; exit 1; }
nice -n "$NICE" taskset -c 1 dotnet "$DLL" serve --listen 127.0.0.1:$PORT --discovery 127.0.0.1:$((PORT + 1)) \
  --metrics 127.0.0.1:$((PORT + 2)) --data-dir "$data" "${store[@]}" --cores 1 --poll "$POLL" > "$out/target.log" 2>&1 < /dev/null &
pid=$!; tid=none; trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dev" "$data" /tmp/perf-$pid.map /tmp/perf-$tid.map' EXIT
# The port accepts before the store is ready (seen at load 20: the prefill failed to connect): wait for Active.
for _ in $(seq 1 600); do grep -q "state Active" "$out/target.log" && break; kill -0 $pid 2>/dev/null || break; sleep 0.2; done
kill -0 $pid 2>/dev/null || { echo "the target exited:"; tail -5 "$out/target.log"; exit 1; }
tid=$(grep -l '^shard-0$' /proc/$pid/task/*/comm | head -1 | cut -d/ -f5)
[ -n "$tid" ] || { echo "no shard-0 thread in pid $pid"; exit 1; }
# perf record -t looks JIT symbols up by the thread's id.
[ -n "$PROFILE" ] && ln -sf /tmp/perf-$pid.map /tmp/perf-$tid.map
TR="trtype:tcp adrfam:IPv4 traddr:127.0.0.1 trsvcid:$PORT subnqn:nqn.2026-11.io.duroslight:default hostnqn:nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555"
events=context-switches,raw_syscalls:sys_enter,syscalls:sys_enter_io_uring_enter,io_uring:io_uring_submit_req,io_uring:io_uring_queue_async_work,block:block_bio_queue,block:block_rq_issue,block:block_unplug,ext4:ext4_sync_file_enter

# One "name value" line per counter: the GFTL's write-path metrics, /proc/PID/io, the shard's and the process's CPU.
snap() {
  curl -s -m 2 "http://127.0.0.1:$((PORT + 2))/metrics" |
    grep -E "^duroslight_gftl_(host_writes|records|record_depth|writes_queued|write_queue_seconds|room_waits|gc_segments_cleaned|device_reads|segments_opened|device_bytes_written|user_bytes_written|gc_relocated_bytes|repacked_bytes)_total[ {]" |
    sed 's/^duroslight_gftl_//; s/_total / /; s/segments_opened_total{kind="\([a-z]*\)"}/opened_\1/'
  awk '/^(read|write)_bytes/{sub(":", "", $1); print "dev_" $1, $2}' /proc/$pid/io
  echo "shard_ns $(cut -d' ' -f1 /proc/$pid/task/$tid/schedstat)"
  echo "proc_ticks $(cut -d')' -f2 /proc/$pid/stat | awk '{print $12 + $13}')"
}

# The phase's deltas: $1 name, $2 host I/Os, $3 bytes each, $4 before, $5 after, $6 perf stat -x, output.
deltas() {
  awk -v name="$1" -v n="$2" -v bs="$3" -v tick="$(getconf CLK_TCK)" '
    FILENAME == ARGV[1] { a[$1] = $2; next }
    FILENAME == ARGV[2] { d[$1] = $2 - a[$1]; next }
    { split($0, f, ","); c[f[3]] = f[1] }
    END {
      printf "%s counts:", name
      if (d["records"] > 0)
        printf " host_writes/record=%.2f depth=%.2f queued=%.3f queue_us=%.0f room_waits=%d gc_cleaned=%d records=%d",
          d["host_writes"] / d["records"], d["record_depth"] / d["records"], d["writes_queued"] / n,
          (d["writes_queued"] > 0 ? d["write_queue_seconds"] * 1e6 / d["writes_queued"] : 0), d["room_waits"],
          d["gc_segments_cleaned"], d["records"]
      if ("device_bytes_written" in d)
        printf " device_written_MiB=%.0f user_written_MiB=%.0f gc_relocated_MiB=%.0f opened_fresh=%d opened_reused=%d device_reads/IO=%.2f repacked_MiB=%.0f",
          d["device_bytes_written"] / 1048576, d["user_bytes_written"] / 1048576, d["gc_relocated_bytes"] / 1048576,
          d["opened_fresh"], d["opened_reused"], d["device_reads"] / n, d["repacked_bytes"] / 1048576
      printf " dev_write_B/host_B=%.3f dev_read_MiB=%.0f shard_us/IO=%.2f proc_us/IO=%.2f", d["dev_write_bytes"] / (n * bs),
        d["dev_read_bytes"] / 1048576, d["shard_ns"] / n / 1000, d["proc_ticks"] * 1e6 / tick / n
      printf " syscalls/IO=%.2f enters/IO=%.2f submits/IO=%.2f punts/IO=%.3f switches/IO=%.3f bios/IO=%.3f device_requests/IO=%.3f unplugs/IO=%.3f fdatasyncs/GiB=%.2f\n",
        c["raw_syscalls:sys_enter"] / n, c["syscalls:sys_enter_io_uring_enter"] / n, c["io_uring:io_uring_submit_req"] / n,
        c["io_uring:io_uring_queue_async_work"] / n, c["context-switches"] / n, c["block:block_bio_queue"] / n,
        c["block:block_rq_issue"] / n, c["block:block_unplug"] / n, c["ext4:ext4_sync_file_enter"] * 1073741824 / (n * bs) }' "$4" "$5" "$6"
}

phase() { # name ios bytes perf-args...
  local name=$1 n=$2 bs=$3 load stat rec=; shift 3; read -r load _ < /proc/loadavg
  snap > "$out/$name.before"
  perf stat -x, -e "$events" -p "$pid" -o "$out/$name.stat" & stat=$!
  if [ "$PROFILE" = "$name" ]; then perf record -g -F 999 -t "$tid" -o "$out/$name.perf.data" > /dev/null 2>&1 & rec=$!; fi
  timeout 900 nice -n "$NICE" taskset -c 0 "$PERF" -c 0x1 -S posix -L "$@" -d "$n" -t 600 -r "$TR" > "$out/$name.txt" 2>&1
  kill -INT $stat $rec 2>/dev/null; wait $stat $rec 2>/dev/null
  snap > "$out/$name.after"
  echo "$name load=$load $(awk '/^Total/{printf "IOPS=%s MiB/s=%s avg_us=%s", $3, $4, $5}' "$out/$name.txt")"
  deltas "$name" "$n" "$bs" "$out/$name.before" "$out/$name.after" "$out/$name.stat"
  if [ -n "$rec" ]; then
    perf report -i "$out/$name.perf.data" --no-children --sort sym --stdio 2> /dev/null | grep -v '^#' | grep '%' | head -60 > "$out/$name.profile.txt"
    perf report -i "$out/$name.perf.data" --children --sort sym --stdio -g none 2> /dev/null | grep -v '^#' | grep '%' | head -80 >> "$out/$name.profile.txt"
  fi
}

for p in $PHASES; do
  case $p in
    prefill) phase prefill 8192 131072 -q 8 -o 131072 -w write;;
    rw4k) phase rw4k "$RW_IOS" 4096 -q 32 -o 4096 -w randwrite;;
    rw4k-qd1) phase rw4k-qd1 "$RW_QD1_IOS" 4096 -q 1 -o 4096 -w randwrite;;
    sr128k) for p in $(seq 1 "$SR_PASSES"); do phase sr128k-$p 8192 131072 -q 8 -o 131072 -w read; done;;
    sw128k) phase sw128k $((8192 * SW_PASSES)) 131072 -q 8 -o 131072 -w write;;
    *) echo "unknown phase $p"; exit 2;;
  esac
done

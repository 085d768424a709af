#!/bin/bash
# Fixed-work 128K write run on the GFTL through SPDK's initiator: prefill the 1 GiB namespace with 128K writes, RW_IOS
# 4K random writes at QD32 (the collector starts), SR_PASSES 128K sequential read passes at QD8 (default none; with
# them the run follows compare.sh's order rw4k, sr128k, sw128k: the first pass re-packs what the 4K writes
# fragmented), then SW_PASSES passes of 128K sequential writes at QD8 over the whole namespace (on the default 4 GiB
# device the log wraps, so the collector must keep up with the stream). After each phase: rate, load, and the GFTL's
# counters: records and host writes, mean records in flight when one started (depth), host writes that waited in the
# queue and for how long, waits for a free segment, segments freed, device bytes written (records, re-packs and the
# collector's copies) and the collector's copies alone, segments opened fresh (never written: on a file-backed device
# the filesystem allocates as they fill) or reused, device reads of chunk reads (per 128K read: / 8192 per pass),
# re-packed bytes. The target's device traffic from /proc/PID/io (read_bytes: host reads and the collector's victim
# reads). The counts do not depend on the machine's load (the rates and the time queued do).
# usage: SPDK_PEER_DIR=$HOME/spdk bench/gftl-write128.sh OUTDIR   (from the checkout, after a Release build of
# src/Duroslight.Server; env: RW_IOS=131072 SR_PASSES=0 SW_PASSES=4 DEV=4G PORT=14640 SCRATCH=/var/tmp
# DLL=path/to/duroslight.dll)
set -u
out=$1; RW_IOS=${RW_IOS:-131072}; SR_PASSES=${SR_PASSES:-0}; SW_PASSES=${SW_PASSES:-4}; PORT=${PORT:-14640}
SPDK=${SPDK_PEER_DIR:?set SPDK_PEER_DIR}
mkdir -p "$out"; export LD_LIBRARY_PATH=$SPDK/build/lib
PERF=$SPDK/build/examples/perf
dev=${SCRATCH:-/var/tmp}/gftl-w128-$$.img; data=${SCRATCH:-/var/tmp}/gftl-w128-data-$$; rm -rf "$dev" "$data"; mkdir -p "$data"
DLL=${DLL:-$(ls src/Duroslight.Server/bin/Release/net*/duroslight.dll | head -1)}
taskset -c 1 dotnet "$DLL" serve --listen 127.0.0.1:$PORT --discovery 127.0.0.1:$((PORT + 1)) --metrics 127.0.0.1:$((PORT + 2)) \
  --data-dir "$data" --device "$dev:${DEV:-4G}" --cores 1 --poll busy > "$out/target.log" 2>&1 < /dev/null &
pid=$!; trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dev" "$data"' EXIT
# The port accepts before the store is ready (seen at load 20: the prefill failed to connect): wait for Active.
for _ in $(seq 1 600); do grep -q "state Active" "$out/target.log" && break; sleep 0.2; done
TR="trtype:tcp adrfam:IPv4 traddr:127.0.0.1 trsvcid:$PORT subnqn:nqn.2026-11.io.duroslight:default hostnqn:nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555"
metrics() { curl -s -m 2 "http://127.0.0.1:$((PORT + 2))/metrics" |
  grep -E "^duroslight_gftl_(host_writes|records|record_depth|writes_queued|write_queue_seconds|room_waits|gc_segments_cleaned|device_reads|segments_opened)_total|^duroslight_gftl_(device_bytes_written|gc_relocated_bytes|repacked_bytes)_total|^duroslight_gftl_user_bytes_written_total|^duroslight_gftl_write_amp" |
  awk '{v = $2; if ($1 ~ /bytes/) { v = sprintf("%dMiB", $2 / 1048576) } printf "%s=%s ", $1, v}' |
  sed 's/duroslight_gftl_//g; s/_bytes_total=/=/g; s/_total=/=/g; s/segments_opened_total{kind="\([a-z]*\)"}/opened_\1/g'
  awk '/^(read|write)_bytes/{printf "target_%s%d MiB ", $1, $2 / 1048576}' /proc/$pid/io; }
phase() { local name=$1 load; shift; read -r load _ < /proc/loadavg
  timeout 900 taskset -c 0 "$PERF" -c 0x1 -S posix "$@" -t 600 -r "$TR" > "$out/$name.txt" 2>&1
  echo "$name load=$load $(awk '/^Total/{printf "IOPS=%s MiB/s=%s", $3, $4}' "$out/$name.txt") | $(metrics)"; }
phase prefill -q 8 -o 131072 -w write -d 8192
phase rw4k -q 32 -o 4096 -w randwrite -d "$RW_IOS"
for p in $(seq 1 "$SR_PASSES"); do phase sr128k-$p -q 8 -o 131072 -w read -d 8192; done
phase sw128k -q 8 -o 131072 -w write -d $((8192 * SW_PASSES))

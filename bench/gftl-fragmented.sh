#!/bin/bash
# Fixed-work fragmentation run on the GFTL through SPDK's initiator (no time dependence, so the counts below do not
# depend on the machine's load): prefill the 1 GiB namespace with 128K writes, one 128K read pass (sequentially
# written data), RW_IOS 4K random writes at QD32, then three 128K read passes at QD8, each over the whole namespace.
# After each phase: rate, load, and the GFTL's metrics (device reads, re-packed bytes, dropped re-packs, write
# amplification). duroslight_gftl_device_reads_total per pass / 8192 = device reads per 128K read (1 = contiguous).
# usage: SPDK_PEER_DIR=$HOME/spdk bench/gftl-fragmented.sh OUTDIR   (from the checkout, after a Release build of
# src/Duroslight.Server; env: RW_IOS=131072 DEV=4G PORT=14630 SCRATCH=/var/tmp)
set -u
out=$1; RW_IOS=${RW_IOS:-131072}; PORT=${PORT:-14630}; SPDK=${SPDK_PEER_DIR:?set SPDK_PEER_DIR}
mkdir -p "$out"; export LD_LIBRARY_PATH=$SPDK/build/lib
PERF=$SPDK/build/examples/perf
dev=${SCRATCH:-/var/tmp}/gftl-frag-$$.img; data=${SCRATCH:-/var/tmp}/gftl-frag-data-$$; rm -rf "$dev" "$data"; mkdir -p "$data"
DLL=$(ls src/Duroslight.Server/bin/Release/net*/duroslight.dll | head -1)
taskset -c 1 dotnet "$DLL" serve --listen 127.0.0.1:$PORT --discovery 127.0.0.1:$((PORT + 1)) --metrics 127.0.0.1:$((PORT + 2)) \
  --data-dir "$data" --device "$dev:${DEV:-4G}" --cores 1 --poll busy > "$out/target.log" 2>&1 < /dev/null &
pid=$!; trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dev" "$data"' EXIT
for _ in $(seq 1 300); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.2; done
TR="trtype:tcp adrfam:IPv4 traddr:127.0.0.1 trsvcid:$PORT subnqn:nqn.2026-11.io.duroslight:default hostnqn:nqn.2014-08.org.nvmexpress:uuid:11111111-2222-3333-4444-555555555555"
metrics() { curl -s -m 2 "http://127.0.0.1:$((PORT + 2))/metrics" | grep -E "^duroslight_gftl_(write_amp|repack|device_reads)" |
  awk '{printf "%s=%s ", $1, $2}' | sed 's/duroslight_gftl_//g'; }
phase() { local name=$1 load; shift; read -r load _ < /proc/loadavg
  timeout 900 taskset -c 0 "$PERF" -c 0x1 -S posix "$@" -t 600 -r "$TR" > "$out/$name.txt" 2>&1
  echo "$name load=$load $(awk '/^Total/{printf "IOPS=%s MiB/s=%s", $3, $4}' "$out/$name.txt") | $(metrics)"; }
phase prefill -q 8 -o 131072 -w write -d 8192
phase pass0 -q 8 -o 131072 -w read -d 8192
phase rw4k -q 32 -o 4096 -w randwrite -d "$RW_IOS"
for p in 1 2 3; do phase pass$p -q 8 -o 131072 -w read -d 8192; done

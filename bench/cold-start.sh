#!/usr/bin/env bash
# cold-start.sh: how fast a freshly started target serves, second by second (issue: full speed from the first second).
# Starts `duroslight serve --store memory --cores 1 --poll MODE` pinned to CPU 1, and as soon as its port accepts,
# runs SPDK's spdk_nvme_perf (CPU 0) in back-to-back 1-second windows of 4K random reads at QD32; prints IOPS per
# window. Repeat with different runtime settings through env (e.g. DOTNET_TieredCompilation=0) to compare.
# usage: SPDK_PEER_DIR=~/spdk bench/cold-start.sh [WINDOWS=12] [MODE=busy]   (run from the checkout, after a Release build)
set -u
SPDK=${SPDK_PEER_DIR:?set SPDK_PEER_DIR to a built SPDK tree (see ../shared/tools/spdk-perf/README.md)}
WINDOWS=${1:-12}; MODE=${2:-busy}; PORT=${DL_PORT:-24430}
PERF=$SPDK/build/examples/perf; export LD_LIBRARY_PATH=$SPDK/build/lib
DLL=$(ls src/Duroslight.Server/bin/Release/net*/duroslight.dll | head -1)
data=$(mktemp -d); HOSTNQN=nqn.2014-08.org.nvmexpress:uuid:$(cat /proc/sys/kernel/random/uuid)
taskset -c 1 dotnet "$DLL" serve --store memory --cores 1 --poll "$MODE" --listen 127.0.0.1:$PORT \
  --discovery 127.0.0.1:$((PORT + 1)) --metrics off --data-dir "$data" > "$data/target.log" 2>&1 < /dev/null &
pid=$!; trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
start=$(date +%s.%N)
until (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; do kill -0 $pid 2>/dev/null || { cat "$data/target.log"; exit 1; }; sleep 0.05; done
printf "listening after %.2f s\n" "$(echo "$(date +%s.%N) - $start" | bc)"
TR="trtype:tcp adrfam:IPv4 traddr:127.0.0.1 trsvcid:$PORT subnqn:nqn.2026-11.io.duroslight:default hostnqn:$HOSTNQN"
for w in $(seq 1 "$WINDOWS"); do
  iops=$(taskset -c 0 "$PERF" -c 0x1 -q 32 -o 4096 -w randread -t 1 -r "$TR" 2>/dev/null | awk '/^Total/{print $3}')
  echo "window $w: ${iops:-NA} IOPS"
done

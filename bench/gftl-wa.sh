#!/usr/bin/env bash
# GFTL write amplification at 70% full, end to end over the reactor (issue 16), and the target's allocations per I/O
# with the collector running. Per queue depth: a fresh target (`duroslight serve`, the GFTL, one shard, a small device
# file), a region of 70% of the GFTL's physical capacity written once with 128K writes, then PASSES x the region in 4K
# random overwrites at that queue depth (bench/Duroslight.Load, fixed work: --ios). Write amplification is the
# difference of the target's device and user byte counters over the overwrite phase: a count, valid on a loaded
# machine. With ALLOC=1, fixed-work rows follow on the same (full, collecting) target, each run twice, and print
# target_alloc_B/io (the shard threads' managed allocations per I/O) and the segments the collector freed meanwhile.
# usage: bench/gftl-wa.sh [QD ...]        (default: 8 32)
# env: IO_PORT DISC_PORT METRICS_PORT (24420 28009 29180), TARGET_CPU=0 GEN_CPU=1, DEVICE_SIZE=257M, PASSES=2,
#      CONNS=1 (connections; the queue depth is split over them), ALLOC=0, SCRATCH_DIR=/var/tmp, SKIP_BUILD=0
set -euo pipefail
cd "$(dirname "$0")/.."
target_cpu=${TARGET_CPU:-0} gen_cpu=${GEN_CPU:-1} device_size=${DEVICE_SIZE:-257M} passes=${PASSES:-2} conns=${CONNS:-1}
io_port=${IO_PORT:-24420} disc_port=${DISC_PORT:-28009} metrics_port=${METRICS_PORT:-29180}
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    dotnet build src/Duroslight.Server -c Release -v q -nologo >/dev/null
    dotnet build bench/Duroslight.Load -c Release -v q -nologo >/dev/null
fi
server=src/Duroslight.Server/bin/Release/net10.0/duroslight
load=bench/Duroslight.Load/bin/Release/net10.0/duroslight-load
url=http://127.0.0.1:$metrics_port/metrics
pid=

scrape() { curl -s -m 5 "$url"; }
# metric NAME [TEXT]: the value of a series whose name (with labels) starts with NAME, from TEXT or a fresh scrape.
metric() { awk -v m="$1" 'index($0, m) == 1 { print $NF; exit }' <<<"${2:-$(scrape)}"; }
run() { taskset -c "$gen_cpu" "$load" --target 127.0.0.1:$io_port --metrics "$url" "$@"; }
stop() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; pid=; }

# row NAME LOAD-ARGS...: the same fixed-work run twice (the first also pays for first use in this process: code
# compiled, pools grown); prints the generator's lines and the segments the collector freed during each.
row() {
    local name=$1 pass; shift
    for pass in first again; do
        local cleaned; cleaned=$(metric duroslight_gftl_gc_segments_cleaned_total)
        local line; line=$(run "$@")
        echo "$name ($pass) | $line | gc_segments_freed=$(( $(metric duroslight_gftl_gc_segments_cleaned_total) - cleaned )) load=$(cut -d' ' -f1 /proc/loadavg)"
    done
}

qds=("$@"); [ ${#qds[@]} -gt 0 ] || qds=(8 32)
for qd in "${qds[@]}"; do
    data=$(mktemp -d "${SCRATCH_DIR:-/var/tmp}/gftl-wa.XXXXXX")
    trap 'stop; rm -rf "$data"' EXIT
    "$server" serve --cores "$target_cpu" --poll sleep --listen 127.0.0.1:$io_port --discovery 127.0.0.1:$disc_port \
        --metrics 127.0.0.1:$metrics_port --data-dir "$data/dir" --device "$data/device0.img:$device_size" \
        --volume-size 1G --log-level warning > "$data/target.log" 2>&1 < /dev/null &
    pid=$!
    for _ in $(seq 1 300); do [ -n "$(metric 'duroslight_gftl_physical_bytes{type="capacity"' 2>/dev/null)" ] && break; sleep 0.2; done
    capacity=$(metric 'duroslight_gftl_physical_bytes{type="capacity"')
    capacity=$(printf '%.0f' "$capacity")
    region=$(( capacity * 7 / 10 / 131072 * 131072 ))
    run --rw write --bs 128k --qd 8 --size "$region" --ios $(( region / 131072 )) >/dev/null
    before=$(scrape)
    line=$(run --rw randwrite --bs 4k --connections "$conns" --qd $(( qd / conns )) --size "$region" --ios $(( passes * region / 4096 )))
    after=$(scrape)
    d() { awk -v a="$(metric "$1" "$after")" -v b="$(metric "$1" "$before")" 'BEGIN { printf "%.0f", a - b }'; }
    user=$(d duroslight_gftl_user_bytes_written_total) device=$(d duroslight_gftl_device_bytes_written_total)
    copies=$(d duroslight_gftl_gc_relocated_bytes_total) writes=$(d duroslight_gftl_host_writes_total) records=$(d duroslight_gftl_records_total)
    awk -v qd="$qd" -v cap="$capacity" -v reg="$region" -v u="$user" -v dv="$device" -v c="$copies" -v w="$writes" -v r="$records" \
        -v freed="$(d duroslight_gftl_gc_segments_cleaned_total)" -v load="$(cut -d' ' -f1 /proc/loadavg)" 'BEGIN {
        printf "QD %d: capacity %d MiB, region %d MiB (70%%), %.2f x the region overwritten | write amplification %.3f | GC copies per user byte %.3f | host writes per record %.2f | segments freed %d | load %s\n",
            qd, cap / 1048576, reg / 1048576, u / reg, dv / u, c / u, w / r, freed, load }'
    echo "  overwrite: $line"
    if [ "${ALLOC:-0}" = 1 ]; then
        row "4K randwrite QD32" --rw randwrite --bs 4k --connections 2 --qd 16 --size "$region" --ios 65536
        row "4K randwrite+trim25 QD32" --rw randwrite --trim 25 --bs 4k --connections 2 --qd 16 --size "$region" --ios 65536
        row "4K randread QD32" --rw randread --bs 4k --connections 2 --qd 16 --size "$region" --ios 65536
        row "128K read QD8 (fragmented)" --rw read --bs 128k --connections 2 --qd 4 --size "$region" --ios $(( region / 131072 ))
        row "128K write QD8" --rw write --bs 128k --connections 2 --qd 4 --size "$region" --ios $(( 2 * region / 131072 ))
        row "4K randread QD1" --rw randread --bs 4k --qd 1 --size "$region" --ios 8192
    fi
    stop
    rm -rf "$data"
done

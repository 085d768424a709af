# Sourced by the cluster benchmarks (bench/run-replication.sh, run-rebuild.sh, run-migration.sh): builds the server
# and the load generator, starts a real etcd on loopback and gives node start-up and `ctl` helpers. Node n listens on
# base+421+n (NVMe/TCP), base+11+n (discovery), base+181+n (metrics); etcd on base+379/380.
# Before sourcing, set: base (port base) and tag (temporary directory name). Afterwards: $server, $load, $dir,
# $etcd_url, pids[etcd] and pids[N] (kill -9 a node with `kill -9 "${pids[N]}"`), and everything is cleaned up at exit.
dotnet build src/Duroslight.Server -c Release -v q -nologo >/dev/null
dotnet build bench/Duroslight.Load -c Release -v q -nologo >/dev/null
server=src/Duroslight.Server/bin/Release/net10.0/duroslight
load=bench/Duroslight.Load/bin/Release/net10.0/duroslight-load
dir=$(mktemp -d "/var/tmp/dsl-$tag.XXXXXX")
declare -A pids
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
etcd_url=http://127.0.0.1:$((base + 379))
etcd --name b --data-dir "$dir/etcd" --listen-client-urls "$etcd_url" --advertise-client-urls "$etcd_url" \
     --listen-peer-urls http://127.0.0.1:$((base + 380)) --initial-advertise-peer-urls http://127.0.0.1:$((base + 380)) \
     --initial-cluster b=http://127.0.0.1:$((base + 380)) >"$dir/etcd.log" 2>&1 & pids[etcd]=$!
for _ in $(seq 100); do python3 -c "import urllib.request; urllib.request.urlopen('$etcd_url/health', timeout=1)" 2>/dev/null && break; sleep 0.2; done

# start_node N [serve options...]: starts node N of cluster "bench" in the background (log appended to $dir/nN.log).
start_node() {
    local n=$1; shift
    mkdir -p "$dir/n$n"
    "$server" serve --etcd "$etcd_url" --cluster bench --node-index "$n" "$@" \
        --listen 127.0.0.1:$((base + 421 + n)) --discovery 127.0.0.1:$((base + 11 + n)) --metrics 127.0.0.1:$((base + 181 + n)) \
        --data-dir "$dir/n$n" --control-socket "$dir/n$n/ctl.sock" >>"$dir/n$n.log" 2>&1 & pids[$n]=$!
}

# wait_active N: until node N's control socket says Active (2 min at most; else its log and exit 1).
wait_active() {
    local n=$1
    for _ in $(seq 240); do [ -S "$dir/n$n/ctl.sock" ] && "$server" status --socket "$dir/n$n/ctl.sock" 2>/dev/null | grep -q Active && return; sleep 0.5; done
    echo "node $n is not Active:" >&2; tail -20 "$dir/n$n.log" >&2; exit 1
}

# node_ctl N ARGS...: `duroslight ctl` against node N.
node_ctl() { "$server" ctl --socket "$dir/n$1/ctl.sock" "${@:2}"; }

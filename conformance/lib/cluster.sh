# shellcheck shell=bash
# Case 13 (multipath): an etcd on loopback and three `duroslight serve` nodes (memory store) in one cluster, with a
# volume of three replicas. The nodes are ordinary targets of lib/target.sh (names c0 c1 c2), so the guest's
# `ctl`/metrics requests and the harness's stop logic work on them as on the others.

CLUSTER_NODES=3
CLUSTER_NAME=conformance
CLUSTER_VOLUME=mpath
CLUSTER_VOLUME_SIZE=64M
# A short lease: a node that dies shows down within 3 s (DUROSLIGHT_CONF_LEASE_TTL=10 for the serve default).
CLUSTER_LEASE_TTL=${DUROSLIGHT_CONF_LEASE_TTL:-3}
ETCD_PID=
ETCD_LOG=
# set by cluster_start: the volume's primary node index and NSID
CLUSTER_PRIMARY=
CLUSTER_NSID=

# cluster_etcd_start CLIENT_PORT PEER_PORT DATA_DIR: a single-member etcd on 127.0.0.1, answering /health
cluster_etcd_start() {
    local client=$1 peer=$2 data=$3 i=0 url="http://127.0.0.1:$1" purl="http://127.0.0.1:$2"
    have etcd || { warn "etcd not found (apt-get install etcd-server)"; return 1; }
    port_busy "$client" && { warn "etcd port 127.0.0.1:$client is in use"; return 1; }
    port_busy "$peer" && { warn "etcd peer port 127.0.0.1:$peer is in use"; return 1; }
    ETCD_LOG=$WORK_DIR/etcd.log
    etcd --name conformance --data-dir "$data" --listen-client-urls "$url" --advertise-client-urls "$url" \
        --listen-peer-urls "$purl" --initial-advertise-peer-urls "$purl" --initial-cluster "conformance=$purl" \
        >"$ETCD_LOG" 2>&1 &
    ETCD_PID=$!
    while [ $i -lt 150 ]; do
        kill -0 "$ETCD_PID" 2>/dev/null || { warn "etcd exited:"; tail -10 "$ETCD_LOG" | indent >&2; ETCD_PID=; return 1; }
        http_get "$client" /health 2>/dev/null | grep -q '"health":"true"' && { log "etcd up (pid $ETCD_PID) on $url"; return 0; }
        sleep 0.2; i=$((i + 1))
    done
    warn "etcd did not answer /health within 30s"; return 1
}

# cluster_start IO_BASE DISC_BASE METRICS_BASE ETCD_PORT NQN: node i listens on BASE+i; etcd on ETCD_PORT and +1
cluster_start() {
    local io=$1 disc=$2 met=$3 etcd_port=$4 nqn=$5 i
    cluster_etcd_start "$etcd_port" "$((etcd_port + 1))" "$WORK_DIR/etcd-data" || return 1
    for i in $(seq 0 $((CLUSTER_NODES - 1))); do
        target_start "c$i" "$((io + i))" "$((disc + i))" "$((met + i))" "$WORK_DIR/data-c$i" --nqn "$nqn" --memory \
            --etcd "http://127.0.0.1:$etcd_port" --cluster "$CLUSTER_NAME" --node-index "$i" --lease-ttl "$CLUSTER_LEASE_TTL" --aux-count 0 \
            || { warn "cluster node $i did not start"; return 1; }
    done
    cluster_wait_nodes || return 1
    local out
    out=$(target_ctl c0 volumes create "$CLUSTER_VOLUME" "$CLUSTER_VOLUME_SIZE" --replicas 3) \
        || { warn "volumes create failed: $out"; return 1; }
    log "cluster volume: $out"
    cluster_wait_ready
}

# Every node Active in `ctl nodes list` (up to 30 s).
cluster_wait_nodes() {
    local i=0 out
    while [ $i -lt 150 ]; do
        out=$(target_ctl c0 nodes list) && [ "$(grep -o 'state=Active' <<<"$out" | wc -l)" -eq "$CLUSTER_NODES" ] && return 0
        sleep 0.2; i=$((i + 1))
    done
    warn "the cluster's nodes are not all Active: $out"; return 1
}

# field KEY of a `ctl volumes show` line (key=value words)
_cluster_field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p" | head -1; }

# The volume is ready for hosts once it has a primary, every node is in the in-sync set and every replica is open
# (the primary's only once it forwards to every secondary, docs/ARCHITECTURE.md "Replicated writes"; up to 30 s).
cluster_wait_ready() {
    local i=0 out primary in_sync states want
    want=$(seq -s, 0 $((CLUSTER_NODES - 1)))
    while [ $i -lt 150 ]; do
        if out=$(target_ctl c0 volumes show "$CLUSTER_VOLUME"); then
            primary=$(_cluster_field "$out" primary); in_sync=$(_cluster_field "$out" in_sync)
            states=$(_cluster_field "$out" replica_states)
            if [ "${primary:--1}" -ge 0 ] && [ "$in_sync" = "[$want]" ] \
                && [ "$(grep -o '"open"' <<<"$states" | wc -l)" -eq "$CLUSTER_NODES" ]; then
                CLUSTER_PRIMARY=$primary; CLUSTER_NSID=$(_cluster_field "$out" nsid)
                log "cluster volume ready: primary $primary, in_sync $in_sync, replicas $states"
                return 0
            fi
        fi
        sleep 0.2; i=$((i + 1))
    done
    warn "the cluster volume did not get ready within 30s: $out"; return 1
}

# The nodes first (a node leaves etcd gracefully on SIGTERM), then etcd.
cluster_stop() {
    local i
    for i in $(seq 0 $((CLUSTER_NODES - 1))); do
        [ -n "${TARGET_PID[c$i]:-}" ] && target_stop "c$i"
    done
    if [ -n "$ETCD_PID" ]; then kill -TERM "$ETCD_PID" 2>/dev/null; wait "$ETCD_PID" 2>/dev/null; ETCD_PID=; fi
}

#!/usr/bin/env bash
# Duroslight NVMe/TCP conformance suite: a real Linux initiator (Debian's kernel nvme-tcp,
# nvme-cli, fio) in a QEMU guest against the target built from this repository.
#
#   conformance/run.sh                 # everything
#   conformance/run.sh --case 3        # one case (repeatable, or --case 2,3,fio-verify)
#   conformance/run.sh --list          # the cases
#   conformance/run.sh --help
#
# Last line of output: "N passed, N failed, N skipped"; exit status 0 only if none failed.
set -uo pipefail

CONF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$CONF_DIR/.." && pwd)
# shellcheck source=lib/common.sh
. "$CONF_DIR/lib/common.sh"
. "$CONF_DIR/lib/prereqs.sh"
. "$CONF_DIR/lib/kernel.sh"
. "$CONF_DIR/lib/initramfs.sh"
. "$CONF_DIR/lib/vm.sh"
. "$CONF_DIR/lib/target.sh"
. "$CONF_DIR/lib/capture.sh"
. "$CONF_DIR/lib/cluster.sh"

# A setup failure still ends with the summary line CI reads.
die() {
    printf '[%s] ERROR: %s\n' "$(_ts)" "$*" >&2
    [ "${DIE_SUMMARY:-0}" = 1 ] && echo "conformance setup failed: $*" && echo "0 passed, 1 failed, 0 skipped"
    exit 2
}

CASE_IDS=(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15)
declare -A CASE_NAME=(
    [1]=discover [2]=identify [3]=fio-verify [4]=aux-subsystems [5]=allow-host
    [6]=multi-controller [7]=target-restart [8]=discard [9]=discovery-aen [10]=protocol-capture [11]=discovery-client [12]=reservations
    [13]=multipath [14]=failover [15]=move
)
declare -A CASE_DESC=(
    [1]="nvme discover lists the default subsystem (not the aux ones) with trsvcid/traddr"
    [2]="connect; nvme list / id-ctrl / id-ns / ns-descs; no nvme warnings in dmesg"
    [3]="fio crc32c verify: 4K randrw QD16, 128K seq write+read, 132K straddling writes; without and with hdr/data digest"
    [4]="<nqn>.aux-1 connects with the same NGUID; <nqn>.aux-0 is refused"
    [5]="a host NQN outside --allow-host is refused (Connect Invalid Host); the allowed one connects"
    [6]="disconnect/reconnect; 4 controllers from 4 host NQNs; disconnect-all -> target metrics 0 controllers"
    [7]="target restart (SIGTERM) while connected: host reconnects by itself, fio verify passes"
    [8]="blkdiscard and blkdiscard -z read back zeros, neighbours intact"
    [9]="control-API changes (referral added, host allowed) reach a persistent discovery controller as AEN + new log"
    [10]="tshark NVMe/TCP dissector on a short session: no malformed packet, no error-level expert info"
    [11]="optional: Lightbits' discovery-client connects through discovery, gets every log-change AEN, honours auxSuffix"
    [12]="two host NQNs: resv-register/acquire/report/release, preempt-and-abort, a write refused with Reservation Conflict"
    [13]="etcd + 3 cluster nodes, a 3-replica volume: one namespace, 3 paths (optimized/inaccessible), fio verify via multipath"
    [14]="the cluster of 13: SIGKILL of the primary node under fio crc32c verify via multipath; another path turns optimized"
    [15]="the cluster of 13: a 2-replica volume's primary moved to the third node (ctl volumes move) under fio crc32c verify via multipath"
)

# test ports and identities (not the defaults, so a developer's target can keep running)
IO_PORT=${DUROSLIGHT_CONF_IO_PORT:-14420}
DISC_PORT=${DUROSLIGHT_CONF_DISC_PORT:-18009}
METRICS_PORT=${DUROSLIGHT_CONF_METRICS_PORT:-19180}
ALLOW_IO_PORT=$((IO_PORT + 1)); ALLOW_DISC_PORT=$((DISC_PORT + 1)); ALLOW_METRICS_PORT=$((METRICS_PORT + 1))
DC_IO_PORT=$((IO_PORT + 2)); DC_DISC_PORT=$((DISC_PORT + 2)); DC_METRICS_PORT=$((METRICS_PORT + 2))
# cases 13 and 14: three cluster nodes on BASE + 10 + i, etcd on IO_PORT + 20 (client) and + 21 (peer)
CLUSTER_IO_PORT=$((IO_PORT + 10)); CLUSTER_DISC_PORT=$((DISC_PORT + 10)); CLUSTER_METRICS_PORT=$((METRICS_PORT + 10))
CLUSTER_ETCD_PORT=${DUROSLIGHT_CONF_ETCD_PORT:-$((IO_PORT + 20))}
# Lightbits' discovery-client binary for case 11 (built outside the repo; see conformance/README.md)
DISCOVERY_CLIENT=${DUROSLIGHT_DISCOVERY_CLIENT:-}
NQN=${DUROSLIGHT_CONF_NQN:-nqn.2026-11.io.duroslight:default}
CLUSTER_NQN=${NQN%:*}:multipath

SELECTED=()
EXCLUDED=()
TIMEOUT=1500
CASE_TIMEOUT=420
KVM=auto
BUILD=1
INSTALL=1
KEEP=0
PREPARE_ONLY=0

usage() {
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    cat <<EOF

Options:
  --case LIST        run only these cases (numbers or names, comma separated, repeatable)
  --skip LIST        leave these cases out (reported as SKIPPED, "excluded by --skip")
  --list             list the cases and exit
  --timeout S        overall limit for the guest run (default $TIMEOUT)
  --case-timeout S   limit for one case inside the guest (default $CASE_TIMEOUT)
  --kvm auto|on|off  accelerator (auto: KVM only if a probe boot works, else TCG)
  --no-build         do not run 'dotnet build' (use the existing build or \$DUROSLIGHT_SERVER)
  --no-install       never apt-get install missing host packages
  --keep             keep the work directory even if everything passed
  --prepare          only install prerequisites, fetch the kernel, build initramfs + target
Environment:
  DUROSLIGHT_SERVER            target command to use instead of the repo build
  DUROSLIGHT_CONFORMANCE_CACHE cache dir (default \${XDG_CACHE_HOME:-\$HOME/.cache}/duroslight-conformance)
  DUROSLIGHT_KERNEL_DEB        a linux-image .deb to use instead of apt-get download
  DUROSLIGHT_DISCOVERY_CLIENT  a Lightbits discovery-client binary for case 11 (skipped without one)
EOF
}

resolve_case() {
    local c=$1 id
    for id in "${CASE_IDS[@]}"; do
        if [ "$c" = "$id" ] || [ "$c" = "${CASE_NAME[$id]}" ]; then echo "$id"; return 0; fi
    done
    die "unknown case '$c' (see --list)"
}

while [ $# -gt 0 ]; do
    case "$1" in
        --case) shift; [ $# -gt 0 ] || die "--case needs a value"
            IFS=, read -r -a _cs <<<"$1"; for _c in "${_cs[@]}"; do SELECTED+=("$(resolve_case "$_c")"); done ;;
        --case=*) IFS=, read -r -a _cs <<<"${1#*=}"; for _c in "${_cs[@]}"; do SELECTED+=("$(resolve_case "$_c")"); done ;;
        --skip) shift; [ $# -gt 0 ] || die "--skip needs a value"
            IFS=, read -r -a _cs <<<"$1"; for _c in "${_cs[@]}"; do EXCLUDED+=("$(resolve_case "$_c")"); done ;;
        --list) for id in "${CASE_IDS[@]}"; do printf '%3s  %-17s %s\n' "$id" "${CASE_NAME[$id]}" "${CASE_DESC[$id]}"; done; exit 0 ;;
        --timeout) shift; TIMEOUT=$1 ;;
        --case-timeout) shift; CASE_TIMEOUT=$1 ;;
        --kvm) shift; case "$1" in auto) KVM=auto ;; on|kvm) KVM=kvm ;; off|tcg) KVM=tcg ;; *) die "--kvm auto|on|off" ;; esac ;;
        --no-build) BUILD=0 ;;
        --no-install) INSTALL=0 ;;
        --keep) KEEP=1 ;;
        --prepare) PREPARE_ONLY=1 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument $1" ;;
    esac
    shift
done
[ ${#SELECTED[@]} -gt 0 ] || SELECTED=("${CASE_IDS[@]}")
# unique, in numeric order
mapfile -t SELECTED < <(printf '%s\n' "${SELECTED[@]}" | sort -n -u)
excluded() { local c; for c in "${EXCLUDED[@]}"; do [ "$c" = "$1" ] && return 0; done; return 1; }
RUN_CASES=()
for _c in "${SELECTED[@]}"; do excluded "$_c" || RUN_CASES+=("$_c"); done
want() { local c; for c in "${RUN_CASES[@]}"; do [ "$c" = "$1" ] && return 0; done; return 1; }

WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/duroslight-conformance.XXXXXX")
SHARE=$WORK_DIR/share
VM_PID=
CLEANED=0
cleanup() {
    [ "$CLEANED" = 1 ] && return; CLEANED=1
    if [ -n "$VM_PID" ] && kill -0 "$VM_PID" 2>/dev/null; then kill -TERM "$VM_PID" 2>/dev/null; wait "$VM_PID" 2>/dev/null; fi
    [ -n "${CAPTURE_PID:-}" ] && { kill -INT "$CAPTURE_PID" 2>/dev/null; sleep 1; kill -KILL "$CAPTURE_PID" 2>/dev/null; }
    cluster_stop
    target_stop_all
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM HUP

T_START=$SECONDS
DIE_SUMMARY=1
log "work dir: $WORK_DIR (cache: $CACHE_DIR)"
NEED_CAPTURE=0; want 10 && NEED_CAPTURE=1
NEED_CLUSTER=0; { want 13 || want 14 || want 15; } && NEED_CLUSTER=1
ensure_prereqs "$NEED_CAPTURE" "$INSTALL" "$NEED_CLUSTER"
kernel_fetch
log "guest kernel: $KERNEL_VERSION ($KERNEL_ID)"
initramfs_build
vm_pick_accel "$KVM"
target_build "$BUILD"
if [ "$PREPARE_ONLY" = 1 ]; then log "prepared in $((SECONDS - T_START))s"; rm -rf "$WORK_DIR"; exit 0; fi

# --- targets -------------------------------------------------------------------
target_start main "$IO_PORT" "$DISC_PORT" "$METRICS_PORT" "$WORK_DIR/data-main" --nqn "$NQN" \
    || die "the target did not start (log: $WORK_DIR/target-main.log)"
ALLOWED_HOSTNQN="nqn.2014-08.org.nvmexpress:uuid:$(cat /proc/sys/kernel/random/uuid)"
ALLOWED_HOSTID=$(cat /proc/sys/kernel/random/uuid)
if want 5; then
    target_start allow "$ALLOW_IO_PORT" "$ALLOW_DISC_PORT" "$ALLOW_METRICS_PORT" "$WORK_DIR/data-allow" \
        --nqn "$NQN" --allow-host "$ALLOWED_HOSTNQN" \
        || warn "the --allow-host target did not start: case 5 will fail"
fi

DC_STARTED=
DC_ADDR=10.0.2.100
if want 11 && [ -n "$DISCOVERY_CLIENT" ]; then
    [ -x "$DISCOVERY_CLIENT" ] || die "DUROSLIGHT_DISCOVERY_CLIENT=$DISCOVERY_CLIENT is not an executable"
    # The client assumes every discovery service it talks to listens on 8009 (it adds the node it discovers from as
    # a referral on 8009 and drops other ports), so the guest sees this target as $DC_ADDR, discovery on 8009 and
    # I/O on its own port, forwarded by QEMU to the host's test ports (one bash /dev/tcp relay per connection).
    dc_fwd() { printf ',guestfwd=tcp:%s:%s-cmd:bash -c %s' "$DC_ADDR" "$1" "'exec 3<>/dev/tcp/127.0.0.1/$2; cat <&3 & p=\$!; cat >&3; kill \$p'"; }
    VM_NETDEV_EXTRA="$(dc_fwd 8009 "$DC_DISC_PORT")$(dc_fwd "$DC_IO_PORT" "$DC_IO_PORT")"
    target_start dc "$DC_IO_PORT" "$DC_DISC_PORT" "$DC_METRICS_PORT" "$WORK_DIR/data-dc" --nqn "$NQN" --advertise "$DC_ADDR" \
        && DC_STARTED=8009 || warn "the discovery-client target did not start: case 11 will fail"
fi

CLUSTER_STARTED=0
if [ "$NEED_CLUSTER" = 1 ]; then
    cluster_start "$CLUSTER_IO_PORT" "$CLUSTER_DISC_PORT" "$CLUSTER_METRICS_PORT" "$CLUSTER_ETCD_PORT" "$CLUSTER_NQN" \
        && CLUSTER_STARTED=1 || warn "the cluster did not start: cases 13, 14 and 15 will fail"
fi

# --- the shared folder -----------------------------------------------------------
mkdir -p "$SHARE"/{guest,req,results,logs,bin}
if want 11 && [ -n "$DISCOVERY_CLIENT" ]; then cp "$DISCOVERY_CLIENT" "$SHARE/bin/discovery-client"; fi
cp "$CONF_DIR"/guest/{lib.sh,main.sh,case.sh} "$SHARE/guest/"
cat >"$SHARE/config.env" <<EOF
TARGET_IP=10.0.2.2
EXPECT_TRADDR=127.0.0.1
IO_PORT=$IO_PORT
DISC_PORT=$DISC_PORT
ALLOW_IO_PORT=$ALLOW_IO_PORT
DC_DISC_PORT=$DC_STARTED
DC_ADDR=$DC_ADDR
NQN=$NQN
ALLOWED_HOSTNQN=$ALLOWED_HOSTNQN
ALLOWED_HOSTID=$ALLOWED_HOSTID
VOLUME_BYTES=1073741824
LBA_BYTES=4096
FIO_RAND_SIZE=16m
FIO_SEQ_SIZE=32m
FIO_STRADDLE_COUNT=64
CLUSTER_STARTED=$CLUSTER_STARTED
CLUSTER_NQN=$CLUSTER_NQN
CLUSTER_IO_PORT=$CLUSTER_IO_PORT
CLUSTER_PRIMARY=$CLUSTER_PRIMARY
CLUSTER_VOLUME=$CLUSTER_VOLUME
CLUSTER_LEASE_TTL=$CLUSTER_LEASE_TTL
CASES="${RUN_CASES[*]}"
CASE_TIMEOUT=$CASE_TIMEOUT
EOF

# --- host side of the guest's requests -------------------------------------------
declare -A TLOG_BEGIN=() TLOG_END=()
MAIN_DIED_REPORTED=0
handle_request() { # $1 = request file
    local f=$1 id req action arg resp
    id=$(basename "$f" .req); req=$(cat "$f"); rm -f "$f"
    action=${req%% *}; arg=${req#"$action"}; arg=${arg# }
    case "$action" in
        case-begin)
            TLOG_BEGIN[$arg]=$(stat -c %s "${TARGET_LOG[main]}" 2>/dev/null || echo 0)
            log "case $arg (${CASE_NAME[$arg]:-?}) running"
            resp=ok ;;
        case-end)   TLOG_END[$arg]=$(stat -c %s "${TARGET_LOG[main]}" 2>/dev/null || echo 0); resp=ok ;;
        ctrl-count)
            if target_alive "$arg"; then
                resp=$(target_ctrl_count "$arg") && resp="ok $resp" || resp="err $resp"
            else resp="err target '$arg' is not running"; fi ;;
        restart-target)
            log "restarting target '$arg' on the guest's request"
            if target_restart "$arg" "$IO_PORT"; then resp="ok $TARGET_RESTART_RESULT"; else resp="err $TARGET_RESTART_RESULT"; fi
            log "restart: $resp" ;;
        metric)
            # metric NAME METRIC: the sum of METRIC over its series on target NAME's /metrics
            local tname=${arg%% *}
            if resp=$(target_metric_sum "$tname" "${arg#* }"); then resp="ok $resp"; else resp="err $resp"; fi ;;
        ctl)
            # ctl NAME ARGS...: the guest drives the target's control API (duroslight ctl)
            local tname=${arg%% *} targs=${arg#* }
            # shellcheck disable=SC2086
            if resp=$(target_ctl "$tname" $targs); then resp="ok $resp"; else resp="err $resp"; fi
            log "ctl $arg: $resp" ;;
        kill-node)
            # kill-node NAME: SIGKILL a cluster node (a crash: no lease revoke, etcd expires it)
            if target_kill "$arg"; then resp="ok $TARGET_KILL_RESULT"; else resp="err $TARGET_KILL_RESULT"; fi
            log "kill-node $arg: $resp" ;;
        start-node)
            # start-node NAME: start a killed node again with its arguments
            if target_relaunch "$arg"; then resp=ok; else resp="err target '$arg' did not start"; fi
            log "start-node $arg: $resp" ;;
        capture-start) capture_start; resp=$CAPTURE_RESULT ;;
        capture-stop)  capture_stop; resp=$CAPTURE_RESULT; log "capture: $resp" ;;
        *) resp="err unknown request '$req'" ;;
    esac
    echo "$resp" >"$SHARE/req/$id.tmp"; mv "$SHARE/req/$id.tmp" "$SHARE/req/$id.resp"
}

declare -A REPORTED=()
report_new_results() {
    local c r
    for c in "${SELECTED[@]}"; do
        [ -n "${REPORTED[$c]:-}" ] && continue
        [ -f "$SHARE/results/$c.result" ] || continue
        REPORTED[$c]=1
        r=$(head -1 "$SHARE/results/$c.result")
        log "case $c (${CASE_NAME[$c]}): $r"
    done
}

# --- run the guest ------------------------------------------------------------------
log "booting the guest ($VM_ACCEL, ${VM_SMP} vCPU, ${VM_MEM} MiB), cases: ${RUN_CASES[*]}, timeout ${TIMEOUT}s"
T_BOOT=$SECONDS
vm_start "$SHARE" "$WORK_DIR/console.log" "$TIMEOUT"
BOOT_REPORTED=0
while kill -0 "$VM_PID" 2>/dev/null; do
    for f in "$SHARE"/req/*.req; do [ -e "$f" ] && handle_request "$f"; done
    report_new_results
    if [ "$BOOT_REPORTED" = 0 ] && grep -q 'guest-init: ready' "$WORK_DIR/console.log" 2>/dev/null; then
        BOOT_REPORTED=1; log "guest up in $((SECONDS - T_BOOT))s ($(grep -m1 'guest-init: ready' "$WORK_DIR/console.log"))"
    fi
    if [ "$MAIN_DIED_REPORTED" = 0 ] && ! target_alive main; then
        MAIN_DIED_REPORTED=1; warn "the target process exited unexpectedly:"; tail -20 "${TARGET_LOG[main]}" | indent >&2
    fi
    sleep 0.2
done
wait "$VM_PID"; VM_RC=$?
report_new_results
VM_SECONDS=$((SECONDS - T_BOOT))
log "guest finished: exit $VM_RC after ${VM_SECONDS}s"
cleanup

# --- report ---------------------------------------------------------------------------
PASSED=0; FAILED=0; SKIPPED=0; GUEST_OK=1
[ -f "$SHARE/results/ALL_DONE" ] || GUEST_OK=0
echo
echo "==== Duroslight NVMe/TCP conformance ($VM_ACCEL guest, kernel $KERNEL_VERSION) ===="
for c in "${SELECTED[@]}"; do
    name="case $c ${CASE_NAME[$c]}"
    if excluded "$c"; then
        status=SKIP; why="excluded by --skip"
    elif [ -f "$SHARE/results/$c.result" ]; then
        status=$(head -1 "$SHARE/results/$c.result"); why=$(sed -n '2,$p' "$SHARE/results/$c.result")
    else
        status=FAIL; why="no result: the guest did not get to this case (exit $VM_RC, timeout ${TIMEOUT}s?)"
    fi
    case "$status" in
        PASS) PASSED=$((PASSED + 1)); echo "PASS    $name"; [ -z "$why" ] || printf '%s\n' "$why" | sed 's/^/          /' ;;
        SKIP) SKIPPED=$((SKIPPED + 1)); echo "SKIPPED $name: $why" ;;
        *)    FAILED=$((FAILED + 1)); echo "FAIL    $name"
              printf '%s\n' "$why" | sed 's/^/          - /'
              if [ -f "$SHARE/logs/case$c.log" ]; then
                  echo "  --- guest log of case $c ($WORK_DIR/share/logs/case$c.log, last 120 lines):"
                  tail -120 "$SHARE/logs/case$c.log" | indent
              fi
              if [ "$c" = 13 ] || [ "$c" = 14 ] || [ "$c" = 15 ]; then
                  for n in c0 c1 c2; do
                      [ -f "${TARGET_LOG[$n]:-}" ] || continue
                      echo "  --- cluster node $n (${TARGET_LOG[$n]}, last 15 lines):"; tail -15 "${TARGET_LOG[$n]}" | indent
                  done
              elif [ -n "${TLOG_BEGIN[$c]:-}" ]; then
                  echo "  --- target output during case $c (last 40 lines):"
                  tail -c +"$((TLOG_BEGIN[$c] + 1))" "${TARGET_LOG[main]}" | head -c "$(( ${TLOG_END[$c]:-999999999} - TLOG_BEGIN[$c] ))" | tail -40 | indent
              fi ;;
    esac
done
if [ "$GUEST_OK" = 0 ]; then
    echo "GUEST DID NOT COMPLETE (qemu exit $VM_RC; 124 = overall timeout ${TIMEOUT}s). Console (last 80 lines of $WORK_DIR/console.log):"
    tail -80 "$WORK_DIR/console.log" 2>/dev/null | indent
    [ -s "$WORK_DIR/qemu.log" ] && { echo "qemu stderr:"; indent <"$WORK_DIR/qemu.log"; }
fi
if ! grep -q . "${TARGET_LOG[main]}" 2>/dev/null; then :; elif [ "$FAILED" -gt 0 ]; then
    echo "target log: ${TARGET_LOG[main]} (last 15 lines):"; tail -15 "${TARGET_LOG[main]}" | indent
fi
if [ "$FAILED" -eq 0 ] && [ "$GUEST_OK" = 1 ] && [ "$KEEP" = 0 ]; then
    rm -rf "$WORK_DIR"; echo "guest run ${VM_SECONDS}s, total $((SECONDS - T_START))s"
else
    echo "guest run ${VM_SECONDS}s, total $((SECONDS - T_START))s; artefacts kept in $WORK_DIR"
fi
if [ "$GUEST_OK" = 0 ] && [ "$FAILED" -eq 0 ]; then FAILED=1; fi
echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
[ "$FAILED" -eq 0 ]

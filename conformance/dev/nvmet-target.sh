#!/usr/bin/env bash
# Reference target for checking the conformance harness itself: Linux's own NVMe/TCP
# target (nvmet-tcp) in a second QEMU guest, behind the same command line as Duroslight's
# `serve`, so that
#
#   DUROSLIGHT_SERVER=conformance/dev/nvmet-target.sh conformance/run.sh --case 2,3
#
# runs the suite against it. A case that fails here but passes against Duroslight (or the
# other way round) points at the harness or at the Linux target, not at Duroslight.
# Differences from Duroslight: one port (4420 in the VM) serves I/O and discovery, so the
# discovery log reports traddr 10.0.2.15 / trsvcid 4420; the metrics endpoint serves a
# constant; stopping the process stops the VM (a crash, not a graceful shutdown).
#
# usage: nvmet-target.sh serve --listen A:P --discovery A:P --metrics A:P --data-dir D
#                              [--nqn NQN] [--allow-host HOSTNQN ...]
set -uo pipefail
CONF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$CONF_DIR/lib/common.sh"
. "$CONF_DIR/lib/prereqs.sh"
. "$CONF_DIR/lib/kernel.sh"
. "$CONF_DIR/lib/initramfs.sh"

[ "${1:-}" = serve ] || die "usage: $0 serve --listen A:P --discovery A:P --metrics A:P --data-dir D [--nqn N] [--allow-host H]..."
shift
LISTEN=; DISC=; METRICS=; DATA=; NQN=nqn.2026-11.io.duroslight:default; ALLOW=()
while [ $# -gt 0 ]; do
    case "$1" in
        --listen) LISTEN=$2; shift ;;
        --discovery) DISC=$2; shift ;;
        --metrics) METRICS=$2; shift ;;
        --data-dir) DATA=$2; shift ;;
        --nqn) NQN=$2; shift ;;
        --allow-host) ALLOW+=("$2"); shift ;;
        *) die "unknown argument $1" ;;
    esac
    shift
done
[ -n "$LISTEN" ] && [ -n "$DISC" ] && [ -n "$METRICS" ] && [ -n "$DATA" ] || die "missing arguments"
mkdir -p "$DATA"
WORK_DIR=$DATA
kernel_fetch >/dev/null
initramfs_build 2>/dev/null

SHARE=$DATA/vm-share
rm -rf "$SHARE"; mkdir -p "$SHARE/guest"
[ -f "$DATA/disk.img" ] || truncate -s 1G "$DATA/disk.img"
# stable identifiers per data dir (same NGUID for every subsystem)
[ -f "$DATA/nguid" ] || cat /proc/sys/kernel/random/uuid >"$DATA/nguid"
UUID=$(cat "$DATA/nguid")
cat >"$SHARE/guest/main.sh" <<EOF
set -x
while read -r ko; do insmod "\$ko"; done </etc/modules-extra.order
mount -t configfs none /sys/kernel/config
cd /sys/kernel/config/nvmet || exit 1
mkdir ports/1
echo tcp >ports/1/addr_trtype; echo ipv4 >ports/1/addr_adrfam
echo 10.0.2.15 >ports/1/addr_traddr; echo 4420 >ports/1/addr_trsvcid
for s in $NQN $NQN.aux-1 $NQN.aux-2 $NQN.aux-3 $NQN.aux-4 $NQN.aux-0; do
    mkdir subsystems/\$s
    echo Duroslight-nvmet-reference >subsystems/\$s/attr_model
    echo 1 >subsystems/\$s/attr_allow_any_host
    mkdir subsystems/\$s/namespaces/1
    echo /dev/vda >subsystems/\$s/namespaces/1/device_path
    echo $UUID >subsystems/\$s/namespaces/1/device_uuid
    echo $UUID >subsystems/\$s/namespaces/1/device_nguid
    echo 1 >subsystems/\$s/namespaces/1/enable
done
echo 0 >subsystems/$NQN.aux-0/attr_allow_any_host
for h in ${ALLOW[*]:-}; do
    mkdir -p hosts/\$h
    echo 0 >subsystems/$NQN/attr_allow_any_host
    ln -s /sys/kernel/config/nvmet/hosts/\$h subsystems/$NQN/allowed_hosts/\$h
done
for s in subsystems/*; do ln -s /sys/kernel/config/nvmet/\$s ports/1/subsystems/; done
mkdir -p /www
echo 'lightbox_fe_ctrl_id_used{pool_id="0",shard="0",type="counter"} 0' >/www/metrics
httpd -p 9180 -h /www
echo TARGET-READY
while :; do sleep 3600; done
EOF

MON=$DATA/monitor.fifo
rm -f "$MON"; mkfifo "$MON"
exec 5<>"$MON"
qemu-system-x86_64 -nodefaults -no-user-config -machine pc -accel tcg,thread=multi -cpu max -smp 1 -m 768 \
    -display none -no-reboot -monitor stdio \
    -kernel "$KERNEL_IMAGE" -initrd "$INITRAMFS" -append "console=ttyS0 panic=-1 edd=off loglevel=4" \
    -serial "file:$DATA/vm-console.log" \
    -netdev user,id=n0 -device virtio-net-pci,netdev=n0,romfile= \
    -drive "file=$DATA/disk.img,if=none,id=d0,format=raw" \
    -device virtio-blk-pci,drive=d0,logical_block_size=4096,physical_block_size=4096 \
    -virtfs "local,path=$SHARE,mount_tag=share,security_model=none,id=share" <&5 >"$DATA/vm-monitor.log" 2>&1 &
QPID=$!
trap 'kill $QPID 2>/dev/null; wait $QPID 2>/dev/null; echo "reference target stopped"; exit 0' TERM INT
for _ in $(seq 1 300); do
    grep -q TARGET-READY "$DATA/vm-console.log" 2>/dev/null && break
    kill -0 $QPID 2>/dev/null || { cat "$DATA/vm-console.log"; exit 1; }
    sleep 0.2
done
grep -q TARGET-READY "$DATA/vm-console.log" || { tail -30 "$DATA/vm-console.log"; kill $QPID; exit 1; }
for fwd in "${LISTEN##*:}:4420" "${DISC##*:}:4420" "${METRICS##*:}:9180"; do
    echo "hostfwd_add tcp:127.0.0.1:${fwd%%:*}-10.0.2.15:${fwd##*:}" >&5
done
echo "reference nvmet target ready: $LISTEN $DISC $METRICS nqn=$NQN allow=${ALLOW[*]:-any}"
wait $QPID

# shellcheck shell=bash
# QEMU guest: accelerator detection and boot. User-mode networking only: the guest is
# 10.0.2.15 and reaches the host's 127.0.0.1 as 10.0.2.2. Results come back through a
# virtio-9p shared folder.

VM_MEM=${VM_MEM:-1024}
VM_SMP=${VM_SMP:-2}

# _qemu_base <accel-args...>: common command line (kernel, initramfs, devices); stdout
_qemu_cmd() { # $1=accel(kvm|tcg) $2=share dir $3=console file $4=extra cmdline
    local accel=$1 share=$2 console=$3 extra=$4 cpu
    if [ "$accel" = kvm ]; then cpu=(-accel kvm -cpu host); else cpu=(-accel tcg,thread=multi -cpu max); fi
    QEMU_CMD=(qemu-system-x86_64 -nodefaults -no-user-config -machine pc "${cpu[@]}"
        -smp "$VM_SMP" -m "$VM_MEM" -display none -no-reboot
        -kernel "$KERNEL_IMAGE" -initrd "$INITRAMFS"
        -append "console=ttyS0 panic=-1 edd=off loglevel=6 $extra"
        -serial "file:$console"
        -netdev "user,id=n0${VM_NETDEV_EXTRA:-}" -device virtio-net-pci,netdev=n0,romfile=
        -virtfs "local,path=$share,mount_tag=share,security_model=none,id=share")
}

# Decide the accelerator. $1 = auto|kvm|tcg. Sets VM_ACCEL.
# On some hosts /dev/kvm exists but a stock kernel cannot boot under it (QEMU aborts
# setting MSRs, or the guest hangs silently): a short probe boot decides, and its result
# is cached per host kernel / QEMU / guest kernel.
vm_pick_accel() {
    local want=$1 key cache probe rc t0
    VM_ACCEL=tcg
    [ "$want" = tcg ] && return 0
    if [ ! -w /dev/kvm ]; then
        [ "$want" = kvm ] && die "--kvm on but /dev/kvm is not usable"
        log "accelerator: TCG (no usable /dev/kvm)"; return 0
    fi
    key=$(echo "$(uname -r) $(qemu-system-x86_64 --version | head -1) $KERNEL_ID" | short_hash)
    cache=$CACHE_DIR/kvm-probe-$key
    if [ "$want" = auto ] && [ -f "$cache" ]; then
        VM_ACCEL=$(cat "$cache")
        log "accelerator: $VM_ACCEL (cached probe result $cache)"; return 0
    fi
    probe=$(mktemp -d "${WORK_DIR:-/tmp}/kvm-probe.XXXXXX")
    _qemu_cmd kvm "$probe" "$probe/console.log" duroslight.probe=1
    t0=$SECONDS
    timeout -k 2 20 "${QEMU_CMD[@]}" >"$probe/qemu.log" 2>&1; rc=$?
    if grep -q DUROSLIGHT-PROBE-OK "$probe/console.log" 2>/dev/null; then
        VM_ACCEL=kvm
        log "accelerator: KVM (probe boot took $((SECONDS - t0))s)"
    else
        log "accelerator: TCG (KVM probe failed rc=$rc: $(grep -m1 -iE 'error|assert' "$probe/qemu.log" || echo 'guest did not boot within 20s'))"
        [ "$want" = kvm ] && die "--kvm on but the KVM probe boot failed"
    fi
    mkdir -p "$CACHE_DIR"; echo "$VM_ACCEL" >"$cache"
    rm -rf "$probe"
}

# vm_start <share dir> <console file> <timeout s>; sets VM_PID (a `timeout` wrapper).
vm_start() {
    local share=$1 console=$2 tmo=$3
    _qemu_cmd "$VM_ACCEL" "$share" "$console" ""
    printf '%q ' "${QEMU_CMD[@]}" >"$WORK_DIR/qemu.cmdline"
    timeout -k 5 "$tmo" "${QEMU_CMD[@]}" >"$WORK_DIR/qemu.log" 2>&1 &
    VM_PID=$!
}

# One conformance case, run inside the guest: sh case.sh N
# Each case prints a readable log (commands, their output, ok/FAIL lines) and ends with
# finish_case (PASS unless a check failed) or skip_case.
# shellcheck shell=sh
CASE_NO=$1
. /share/guest/lib.sh
init_host_identity
dmesg_mark
DEFAULT_NQN=$NQN
MIB=1048576

# Connect to the default subsystem; sets CTRL and DEV. extra args: nvme connect options
connect_default() {
    CTRL=; DEV=
    nvme_connect "$DEFAULT_NQN" "$IO_PORT" "$@" || { bad "nvme connect to $DEFAULT_NQN failed"; return 1; }
    CTRL=$(ctrls_of "$DEFAULT_NQN" "$HOSTNQN" | head -1)
    [ -n "$CTRL" ] || { bad "no controller for $DEFAULT_NQN in /sys/class/nvme after connect"; return 1; }
    DEV=$(ns_dev_of "$DEFAULT_NQN" 15) || { bad "no namespace block device for $DEFAULT_NQN after 15s"; return 1; }
    say "  connected: ctrl=$CTRL state=$(ctrl_state "$CTRL") dev=/dev/$DEV"
}

# ---------------------------------------------------------------------------
case_1() { # discovery log
    say "nvme discover -t tcp -a $TARGET_IP -s $DISC_PORT"
    nvme discover -t tcp -a "$TARGET_IP" -s "$DISC_PORT" >"$STATE/disc.out" 2>&1
    rc=$?
    sed 's/^/    > /' "$STATE/disc.out"
    [ $rc -eq 0 ] || { bad "nvme discover exited $rc"; return; }
    # one line per entry: subnqn|trtype|adrfam|subtype|trsvcid|traddr
    awk '
        /^=====Discovery Log Entry/ { if (n) print e; n=1; e=""; delete f; next }
        n && /:/ { k=$1; sub(/:.*/, "", k); v=$0; sub(/^[^:]*:[ \t]*/, "", v); sub(/[ \t]+$/, "", v); f[k]=v;
                   e=f["subnqn"] "|" f["trtype"] "|" f["adrfam"] "|" f["subtype"] "|" f["trsvcid"] "|" f["traddr"] }
        END { if (n) print e }' "$STATE/disc.out" >"$STATE/disc.entries"
    say "  parsed entries (subnqn|trtype|adrfam|subtype|trsvcid|traddr):"
    sed 's/^/    /' "$STATE/disc.entries"
    s=$DEFAULT_NQN
    line=$(grep "^$s|" "$STATE/disc.entries" | head -1)
    exp="$s|tcp|ipv4|nvme subsystem|$IO_PORT|$EXPECT_TRADDR"
    if [ -z "$line" ]; then bad "discovery log has no entry for $s"
    elif [ "$line" = "$exp" ]; then ok "$s: tcp ipv4 trsvcid=$IO_PORT traddr=$EXPECT_TRADDR"
    else bad "$s entry is '$line', expected '$exp'"; fi
    # Aux subsystems are reachable (case 4) but not advertised: hosts that connect every entry connect once.
    if grep -q "aux-" "$STATE/disc.entries"; then bad "the discovery log lists aux subsystems: $(grep aux- "$STATE/disc.entries" | tr '\n' ' ')"
    else ok "no aux subsystem is listed"; fi
    n=$(sed -n 's/^Discovery Log Number of Records \([0-9]*\).*/\1/p' "$STATE/disc.out")
    e=$(wc -l <"$STATE/disc.entries")
    [ "$n" = "$e" ] && ok "record count $n matches entries" || bad "header says $n records, $e entries printed"
    p=$(dmesg_nvme_problems); [ -z "$p" ] || bad "kernel nvme warnings/errors: $p"
}

# ---------------------------------------------------------------------------
case_2() { # connect + identify
    connect_default || return
    nvme list >"$STATE/list.out" 2>&1; sed 's/^/    list> /' "$STATE/list.out"
    grep -q "/dev/$DEV " "$STATE/list.out" && ok "nvme list shows /dev/$DEV" || bad "nvme list does not show /dev/$DEV"
    grep "/dev/$DEV " "$STATE/list.out" | grep -q Duroslight && ok "nvme list model is Duroslight" \
        || bad "nvme list line for /dev/$DEV lacks model Duroslight"

    nvme id-ctrl "/dev/$CTRL" >"$STATE/idc.out" 2>&1 || bad "nvme id-ctrl /dev/$CTRL failed"
    sed 's/^/    id-ctrl> /' "$STATE/idc.out"
    mn=$(idfield "$STATE/idc.out" mn); sn=$(idfield "$STATE/idc.out" sn); fr=$(idfield "$STATE/idc.out" fr)
    cntlid=$(idfield "$STATE/idc.out" cntlid); subnqn=$(idfield "$STATE/idc.out" subnqn)
    case "$mn" in *Duroslight*) ok "mn='$mn'" ;; *) bad "model number '$mn' does not contain Duroslight" ;; esac
    [ -n "$sn" ] && ok "sn='$sn'" || bad "empty serial number"
    [ -n "$fr" ] && ok "fr='$fr'" || bad "empty firmware revision"
    [ "$subnqn" = "$DEFAULT_NQN" ] && ok "subnqn=$subnqn" || bad "id-ctrl subnqn '$subnqn' != $DEFAULT_NQN"
    scntl=$(cat "/sys/class/nvme/$CTRL/cntlid")
    if [ -n "$cntlid" ] && [ $((cntlid)) -eq $((scntl)) ]; then ok "cntlid $cntlid matches the Connect response ($scntl)"
    else bad "id-ctrl cntlid '$cntlid' != cntlid from Connect '$scntl'"; fi
    [ "$(cat "/sys/class/nvme/$CTRL/model" | sed 's/ *$//')" = "$mn" ] || note "sysfs model differs from id-ctrl mn"

    nvme id-ns "/dev/$DEV" >"$STATE/idns.out" 2>&1 || bad "nvme id-ns /dev/$DEV failed"
    sed 's/^/    id-ns> /' "$STATE/idns.out"
    nsze=$(idfield "$STATE/idns.out" nsze); ncap=$(idfield "$STATE/idns.out" ncap)
    nguid=$(idfield "$STATE/idns.out" nguid)
    exp_lbas=$((VOLUME_BYTES / LBA_BYTES))
    [ $((nsze)) -eq $exp_lbas ] && ok "nsze=$nsze ($exp_lbas blocks)" || bad "nsze=$nsze, expected $exp_lbas"
    [ $((ncap)) -eq $exp_lbas ] && ok "ncap=$ncap" || bad "ncap=$ncap, expected $exp_lbas"
    inuse=$(grep -E '^lbaf .*in use' "$STATE/idns.out")
    case "$inuse" in *"lbads:12 "*) ok "in-use LBA format: $inuse" ;; *) bad "in-use LBA format is not 4096 bytes: '$inuse'" ;; esac
    case "$nguid" in ""|00000000000000000000000000000000) bad "NGUID missing/zero: '$nguid'" ;;
        *) ok "nguid=$nguid"; echo "$nguid" >"$STATE/default.nguid" ;; esac

    nvme ns-descs "/dev/$DEV" >"$STATE/descs.out" 2>&1 || bad "nvme ns-descs /dev/$DEV failed"
    sed 's/^/    ns-descs> /' "$STATE/descs.out"
    dn=$(idfield "$STATE/descs.out" nguid | tr -d '-')
    du=$(idfield "$STATE/descs.out" uuid)
    [ "$dn" = "$nguid" ] && ok "ns-descs NGUID matches id-ns" || bad "ns-descs nguid '$dn' != id-ns nguid '$nguid'"
    if [ -n "$du" ]; then
        [ "$du" != "00000000-0000-0000-0000-000000000000" ] && ok "ns-descs uuid=$du" || bad "ns-descs UUID is zero"
    else note "no UUID descriptor (only NGUID)"; fi

    lbs=$(cat "/sys/block/$DEV/queue/logical_block_size"); sz=$(($(cat "/sys/block/$DEV/size") * 512))
    [ "$lbs" -eq "$LBA_BYTES" ] && ok "logical block size $lbs" || bad "logical block size $lbs, expected $LBA_BYTES"
    [ "$sz" -eq "$VOLUME_BYTES" ] && ok "block device size $sz" || bad "block device size $sz, expected $VOLUME_BYTES"
    say "  sysfs wwid: $(cat /sys/block/$DEV/wwid 2>/dev/null)"
    nvme disconnect -n "$DEFAULT_NQN" >/dev/null 2>&1 || bad "nvme disconnect -n $DEFAULT_NQN failed"
    say "  kernel log of this case:"; show_dmesg_new
    p=$(dmesg_nvme_problems); [ -z "$p" ] && ok "no nvme warnings/errors in the kernel log" || bad "kernel nvme warnings/errors: $p"
}

# ---------------------------------------------------------------------------
fio_suite() { # DEV LABEL
    d=$1; l=$2
    run_fio "randrw4k$l" "$d" --rw=randrw --bs=4k --iodepth=16 --offset=0 --size="$FIO_RAND_SIZE" \
        || bad "$l: 4K randrw QD16 verify failed"
    run_fio "seq128k$l" "$d" --rw=write --bs=128k --iodepth=4 --offset=$((64 * MIB)) --size="$FIO_SEQ_SIZE" --do_verify=0 \
        || bad "$l: 128K sequential write failed"
    run_fio "seq128k$l" "$d" --rw=write --bs=128k --iodepth=4 --offset=$((64 * MIB)) --size="$FIO_SEQ_SIZE" --verify_only \
        || bad "$l: 128K sequential read-back verify failed"
    # 132 KiB blocks starting at 4 KiB: every write straddles a 128 KiB boundary
    run_fio "straddle132k$l" "$d" --rw=write --bs=132k --iodepth=4 --offset=$((128 * MIB + 4096)) --size=$((132 * 1024 * FIO_STRADDLE_COUNT)) \
        || bad "$l: unaligned 132K straddling writes verify failed"
    run_fio "straddle132kr$l" "$d" --rw=randwrite --bs=132k --iodepth=8 --offset=$((192 * MIB + 8192)) --size=$((132 * 1024 * FIO_STRADDLE_COUNT)) \
        || bad "$l: random 132K straddling writes verify failed"
}

case_3() { # fio verify, without and with digests
    connect_default || return
    fio_suite "$DEV" "-nodigest"
    nvme disconnect -n "$DEFAULT_NQN" >/dev/null 2>&1
    disconnect_all
    connect_default --hdr-digest --data-digest || return
    fio_suite "$DEV" "-digest"
    disconnect_all
    say "  kernel log of this case:"; show_dmesg_new
    p=$(dmesg_nvme_problems); [ -z "$p" ] && ok "no nvme warnings/errors in the kernel log" || bad "kernel nvme warnings/errors: $p"
}

# ---------------------------------------------------------------------------
case_4() { # aux subsystems
    if [ ! -s "$STATE/default.nguid" ]; then
        connect_default || return
        nvme id-ns "/dev/$DEV" >"$STATE/idns.out" 2>&1
        idfield "$STATE/idns.out" nguid >"$STATE/default.nguid"
    fi
    # Linux 6.1 rejects a namespace whose IDs duplicate another subsystem's: one at a time.
    disconnect_all
    dn=$(cat "$STATE/default.nguid")
    aux=$DEFAULT_NQN.aux-1
    if nvme_connect "$aux"; then
        c=$(ctrls_of "$aux" "$HOSTNQN" | head -1)
        d=$(ns_dev_of "$aux" 15)
        if [ -n "$d" ]; then
            nvme id-ns "/dev/$d" >"$STATE/auxns.out" 2>&1
            an=$(idfield "$STATE/auxns.out" nguid)
            [ "$an" = "$dn" ] && ok "$aux: ctrl $c, /dev/$d, same NGUID $an" || bad "$aux NGUID '$an' != default NGUID '$dn'"
            nvme id-ctrl "/dev/$c" >"$STATE/auxc.out" 2>&1
            [ "$(idfield "$STATE/auxc.out" subnqn)" = "$aux" ] && ok "$aux id-ctrl subnqn" || bad "$aux id-ctrl subnqn is '$(idfield "$STATE/auxc.out" subnqn)'"
        else
            bad "$aux connected (ctrl '$c') but no namespace block device appeared"
        fi
    else
        bad "connect to $aux failed"
    fi
    disconnect_all
    dmesg_mark
    aux0=$DEFAULT_NQN.aux-0
    if nvme_connect "$aux0"; then
        bad "connect to $aux0 succeeded, expected refusal"
    else
        ok "connect to $aux0 refused (nvme-cli exit non-zero)"
        msg=$(cat "$STATE/connect.out")
        [ -n "$msg" ] && ok "nvme-cli says: $msg" || bad "nvme-cli printed no reason"
    fi
    [ -z "$(ctrls_of "$aux0")" ] && ok "no controller left for $aux0" || bad "controller exists for $aux0: $(ctrls_of "$aux0")"
    say "  kernel log:"; show_dmesg_new
    k=$(dmesg_new | grep -iE 'connect|not allowed|invalid|failed' | head -3)
    [ -n "$k" ] && ok "kernel reports the refusal: $k" || bad "kernel log has no line about the refused connect"
}

# ---------------------------------------------------------------------------
case_5() { # --allow-host
    other=$(new_hostnqn); otherid=$(new_uuid)
    say "  target on port $ALLOW_IO_PORT allows only $ALLOWED_HOSTNQN"
    if nvme_connect "$DEFAULT_NQN" "$ALLOW_IO_PORT" --hostnqn="$other" --hostid="$otherid"; then
        bad "host $other (not allowed) could connect"
    else
        ok "host $other refused; nvme-cli: $(cat "$STATE/connect.out")"
    fi
    say "  kernel log:"; show_dmesg_new
    k=$(dmesg_new | grep -iE 'not allowed|invalid host' | head -2)
    [ -n "$k" ] && ok "kernel reports Connect Invalid Host: $k" || bad "kernel log does not report an invalid-host Connect rejection"
    disconnect_all
    if nvme_connect "$DEFAULT_NQN" "$ALLOW_IO_PORT" --hostnqn="$ALLOWED_HOSTNQN" --hostid="$ALLOWED_HOSTID"; then
        d=$(ns_dev_of "$DEFAULT_NQN" 15) && ok "allowed host connects, /dev/$d" || bad "allowed host connected but no namespace"
    else
        bad "allowed host $ALLOWED_HOSTNQN was refused"
    fi
    disconnect_all
}

# ---------------------------------------------------------------------------
metrics_ctrls() { # -> number (or an error word) for the main target
    r=$(host_req ctrl-count main); echo "${r#ok }"
}
wait_metrics() { # expected, timeout s
    _t=0
    while :; do
        v=$(metrics_ctrls); [ "$v" = "$1" ] && { echo "$v"; return 0; }
        _t=$((_t + 1)); [ $_t -ge $2 ] && { echo "$v"; return 1; }
        sleep 1
    done
}
case_6() { # disconnect/reconnect; 4 hosts; disconnect-all -> 0 controllers
    connect_default || return
    v=$(wait_metrics 1 5) && ok "target reports 1 controller" || bad "target reports '$v' controllers with one host connected"
    nvme disconnect -n "$DEFAULT_NQN" >"$STATE/disc.out" 2>&1; say "  disconnect: $(cat "$STATE/disc.out")"
    [ -z "$(ctrls_of "$DEFAULT_NQN")" ] && ok "disconnected" || bad "controller still present after disconnect"
    connect_default || return
    md5_at "$DEV" 0 $MIB >/dev/null && ok "reconnected, read OK on /dev/$DEV" || bad "read after reconnect failed"
    disconnect_all
    i=1
    while [ $i -le 4 ]; do
        h=$(new_hostnqn); hid=$(new_uuid)
        # nvme-cli 2.3 refuses a 2nd controller to the same subsystem/address ("already
        # connected") whatever the host NQN, even with --duplicate-connect: use the kernel API.
        fabrics_connect "$DEFAULT_NQN" "$IO_PORT" "$h" "$hid" || bad "connect as host #$i ($h) failed"
        i=$((i + 1))
    done
    n=$(ctrls_of "$DEFAULT_NQN" | wc -l)
    [ "$n" -eq 4 ] && ok "4 controllers live: $(ctrls_of "$DEFAULT_NQN" | tr '\n' ' ')" || bad "$n controllers instead of 4"
    for c in $(ctrls_of "$DEFAULT_NQN"); do say "    $c cntlid=$(cat /sys/class/nvme/$c/cntlid) state=$(ctrl_state $c) hostnqn=$(cat /sys/class/nvme/$c/hostnqn)"; done
    v=$(wait_metrics 4 5) && ok "target metrics: 4 controllers" || bad "target metrics report '$v' controllers, expected 4"
    say "  \$ nvme disconnect-all"; nvme disconnect-all 2>&1 | sed 's/^/    > /'
    [ -z "$(ls /sys/class/nvme 2>/dev/null)" ] && ok "no controllers left on the host" || bad "host still has: $(ls /sys/class/nvme)"
    v=$(wait_metrics 0 10) && ok "target metrics: 0 controllers after disconnect-all" \
        || bad "target metrics report '$v' controllers 10s after disconnect-all, expected 0"
    say "  kernel log:"; show_dmesg_new
    p=$(dmesg_nvme_problems); [ -z "$p" ] && ok "no nvme warnings/errors in the kernel log" || bad "kernel nvme warnings/errors: $p"
}

# ---------------------------------------------------------------------------
case_7() { # target restart while connected
    connect_default || return
    c0=$CTRL
    run_fio prerestart "$DEV" --rw=write --bs=64k --iodepth=4 --offset=$((256 * MIB)) --size=$((16 * MIB)) --do_verify=0 \
        || bad "write before restart failed"
    # I/O in flight across the restart: must be requeued and complete after reconnect
    fio --name=inflight --filename="/dev/$DEV" --ioengine=libaio --direct=1 --rw=randwrite --bs=4k --iodepth=4 \
        --offset=$((320 * MIB)) --size=$((4 * MIB)) --verify=crc32c --verify_fatal=1 --rate_iops=200 \
        >"$STATE/inflight.out" 2>&1 &
    fpid=$!
    sleep 2
    say "  asking the host to restart the target (SIGTERM + start, same data dir)"
    r=$(host_req restart-target main); say "  host: $r"
    case "$r" in ok*) ok "target restarted: ${r#ok }" ;; *) bad "target restart failed: $r" ;; esac
    i=0; seen=""
    while [ $i -lt 300 ]; do  # 60 s
        s=$(ctrl_state "$c0")
        case " $seen " in *" $s "*) ;; *) seen="$seen $s"; say "  $c0 state: $s" ;; esac
        [ "$s" = live ] && [ -n "$(echo "$seen" | grep -E 'connecting|resetting')" ] && break
        sleep 0.2; i=$((i + 1))
    done
    [ "$(ctrl_state "$c0")" = live ] && ok "host reconnected by itself ($c0 states:$seen)" || bad "$c0 is '$(ctrl_state "$c0")' 60s after the restart (states:$seen)"
    wait "$fpid"; frc=$?
    grep -E 'err=|verify|error' "$STATE/inflight.out" | sed 's/^/    inflight> /'
    [ $frc -eq 0 ] && ok "fio with I/O in flight across the restart passed verify" || { bad "in-flight fio across restart failed (exit $frc)"; tail -20 "$STATE/inflight.out" | sed 's/^/    >> /'; }
    d2=$(ns_dev_of "$DEFAULT_NQN" 5)
    [ "$d2" = "$DEV" ] && ok "same block device /dev/$DEV" || bad "block device changed: '$DEV' -> '$d2'"
    run_fio prerestart "$DEV" --rw=write --bs=64k --iodepth=4 --offset=$((256 * MIB)) --size=$((16 * MIB)) --verify_only \
        || bad "data written before the restart does not verify after it"
    run_fio postrestart "$DEV" --rw=randrw --bs=4k --iodepth=16 --offset=$((384 * MIB)) --size=$((8 * MIB)) \
        || bad "fio verify after restart failed"
    disconnect_all
    say "  kernel log:"; show_dmesg_new
}

# ---------------------------------------------------------------------------
case_8() { # discard / write-zeroes read back as zeros
    connect_default || return
    nvme id-ns "/dev/$DEV" >"$STATE/idns.out" 2>&1
    say "  id-ns dlfeat=$(idfield "$STATE/idns.out" dlfeat) (bits 2:0 = 001b: deallocated blocks read as zeros); id-ctrl oncs=$(nvme id-ctrl "/dev/$CTRL" | awk -F: '/^oncs/ {gsub(/ /, "", $2); print $2}')"
    dmax=$(cat "/sys/block/$DEV/queue/discard_max_bytes"); wz=$(cat "/sys/block/$DEV/queue/write_zeroes_max_bytes")
    say "  discard_max_bytes=$dmax discard_granularity=$(cat /sys/block/$DEV/queue/discard_granularity) write_zeroes_max_bytes=$wz"
    [ "$dmax" -gt 0 ] || bad "device advertises no discard support (ONCS.DSM clear?)"
    base=$((512 * MIB)); len=$MIB
    dd if=/dev/urandom of="$STATE/pattern" bs=64k count=16 2>/dev/null
    dd if="$STATE/pattern" of="/dev/$DEV" bs=64k seek=$((base / 65536)) oflag=direct conv=fsync 2>/dev/null || bad "pattern write failed"
    [ "$(md5_at "$DEV" $base $len)" = "$(md5sum <"$STATE/pattern" | cut -d' ' -f1)" ] && ok "1 MiB pattern written and read back" || bad "pattern readback mismatch"
    # discard 256 KiB starting at +64 KiB: straddles the 128 KiB chunk boundaries
    say "  \$ blkdiscard -o $((base + 65536)) -l 262144 /dev/$DEV"
    if /usr/sbin/blkdiscard -o $((base + 65536)) -l 262144 "/dev/$DEV" 2>"$STATE/bd.err"; then
        [ "$(md5_at "$DEV" $((base + 65536)) 262144)" = "$(md5_zero 262144)" ] && ok "discarded range reads zeros" || bad "discarded range does not read back as zeros"
    else bad "blkdiscard failed: $(cat "$STATE/bd.err")"; fi
    [ "$(md5_at "$DEV" $base 65536)" = "$(dd if="$STATE/pattern" bs=65536 count=1 2>/dev/null | md5sum | cut -d' ' -f1)" ] \
        && ok "data before the discarded range intact" || bad "data before the discarded range changed"
    [ "$(md5_at "$DEV" $((base + 327680)) 65536)" = "$(dd if="$STATE/pattern" bs=65536 skip=5 count=1 2>/dev/null | md5sum | cut -d' ' -f1)" ] \
        && ok "data after the discarded range intact" || bad "data after the discarded range changed"
    # write zeroes (BLKZEROOUT) over 132 KiB at +512 KiB+4 KiB
    zo=$((base + 524288 + 4096)); zl=$((132 * 1024))
    say "  \$ blkdiscard -z -o $zo -l $zl /dev/$DEV"
    if /usr/sbin/blkdiscard -z -o $zo -l $zl "/dev/$DEV" 2>"$STATE/bd.err"; then
        [ "$(md5_at "$DEV" $zo $zl)" = "$(md5_zero $zl)" ] && ok "zeroed range reads zeros" || bad "blkdiscard -z range does not read back as zeros"
    else bad "blkdiscard -z failed: $(cat "$STATE/bd.err")"; fi
    [ "$(md5_at "$DEV" $((base + 524288)) 4096)" = "$(dd if="$STATE/pattern" bs=4096 skip=128 count=1 2>/dev/null | md5sum | cut -d' ' -f1)" ] \
        && ok "block before the zeroed range intact" || bad "block before the zeroed range changed"
    [ "$(md5_at "$DEV" $((zo + zl)) 4096)" = "$(dd if="$STATE/pattern" bs=4096 skip=$(((zo + zl - base) / 4096)) count=1 2>/dev/null | md5sum | cut -d' ' -f1)" ] \
        && ok "block after the zeroed range intact" || bad "block after the zeroed range changed"
    # whole 1 MiB
    if /usr/sbin/blkdiscard -o $base -l $len "/dev/$DEV" 2>"$STATE/bd.err"; then
        [ "$(md5_at "$DEV" $base $len)" = "$(md5_zero $len)" ] && ok "whole 1 MiB discard reads zeros" || bad "1 MiB discard does not read back as zeros"
    else bad "blkdiscard (1 MiB) failed: $(cat "$STATE/bd.err")"; fi
    disconnect_all
    say "  kernel log:"; show_dmesg_new
    p=$(dmesg_nvme_problems); [ -z "$p" ] && ok "no nvme warnings/errors in the kernel log" || bad "kernel nvme warnings/errors: $p"
}

# ---------------------------------------------------------------------------
case_9() { # control-API changes reach a persistent discovery controller as AEN + changed log
    DISC_NQN=nqn.2014-08.org.nvmexpress.discovery
    # The kernel reports each AEN as a uevent with NVME_AEN=<dw0>: busybox `uevent` listens on the netlink
    # socket and runs the script for each event with its variables in the environment.
    printf '#!/bin/sh\n[ -n "$NVME_AEN" ] && echo "$NVME_AEN $DEVPATH" >>%s/uevents\nexit 0\n' "$STATE" >"$STATE/uevent.sh"
    chmod +x "$STATE/uevent.sh"; : >"$STATE/uevents"
    uevent "$STATE/uevent.sh" & UEVENT_PID=$!
    say "\$ nvme discover -t tcp -a $TARGET_IP -s $DISC_PORT --persistent"
    nvme discover -t tcp -a "$TARGET_IP" -s "$DISC_PORT" --persistent >"$STATE/pdisc.out" 2>&1 || { bad "persistent discover failed: $(tail -3 "$STATE/pdisc.out")"; return; }
    DCTRL=$(ctrls_of "$DISC_NQN" | head -1)
    [ -n "$DCTRL" ] && ok "persistent discovery controller /dev/$DCTRL (state $(ctrl_state "$DCTRL"))" || { bad "no persistent discovery controller in /sys/class/nvme"; return; }
    g0=$(disc_genctr "$DCTRL")
    say "  genctr before: $g0"

    # 1. a referral added through the control API
    r=$(host_req ctl main referrals add 10.0.2.99:18999); say "  host: $r"
    wait_aen "$DCTRL" 1 && ok "AEN after 'referrals add': $(tail -1 "$STATE/uevents")" || bad "no discovery AEN uevent within 10s of 'referrals add'"
    nvme discover -d "$DCTRL" >"$STATE/d1.out" 2>&1; sed 's/^/    > /' "$STATE/d1.out"
    read_log_no_rae "$DCTRL"
    grep -q 'traddr: *10.0.2.99' "$STATE/d1.out" && ok "log page lists the referral 10.0.2.99:18999" || bad "log page has no referral entry after 'referrals add'"
    g1=$(disc_genctr "$DCTRL"); [ "$g1" -gt "$g0" ] 2>/dev/null && ok "genctr $g0 -> $g1" || bad "genctr did not move ($g0 -> $g1)"

    # 2. this host removed from, then allowed to, the default subsystem
    r=$(host_req ctl main hosts set default nqn.2014-08.org.nvmexpress:uuid:00000000-0000-0000-0000-0000000000aa); say "  host: $r"
    wait_aen "$DCTRL" 2 && ok "AEN after 'hosts set' (this host removed)" || bad "no discovery AEN after 'hosts set'"
    nvme discover -d "$DCTRL" >"$STATE/d2.out" 2>&1
    read_log_no_rae "$DCTRL"
    grep -q "subnqn: *$DEFAULT_NQN\$" "$STATE/d2.out" && bad "default subsystem still listed for a host not allowed" || ok "default subsystem no longer listed"
    r=$(host_req ctl main hosts allow default "$HOSTNQN"); say "  host: $r"
    wait_aen "$DCTRL" 3 && ok "AEN after 'hosts allow $HOSTNQN'" || bad "no discovery AEN after 'hosts allow'"
    nvme discover -d "$DCTRL" >"$STATE/d3.out" 2>&1
    grep -q "subnqn: *$DEFAULT_NQN\$" "$STATE/d3.out" && ok "default subsystem listed again once this host is allowed" || bad "default subsystem missing after 'hosts allow'"
    g3=$(disc_genctr "$DCTRL"); [ "$g3" -gt "$g1" ] 2>/dev/null && ok "genctr $g1 -> $g3" || bad "genctr did not move ($g1 -> $g3)"
    if connect_default; then ok "allowed host connects to the default subsystem"; fi

    host_req ctl main hosts any default >/dev/null; host_req ctl main referrals remove 10.0.2.99:18999 >/dev/null
    [ "$(ctrl_state "$DCTRL")" = live ] && ok "discovery controller still live" || bad "discovery controller is $(ctrl_state "$DCTRL")"
    kill "$UEVENT_PID" 2>/dev/null
    disconnect_all
    say "  kernel log:"; show_dmesg_new
    p=$(dmesg_nvme_problems); [ -z "$p" ] && ok "no nvme warnings/errors in the kernel log" || bad "kernel nvme warnings/errors: $p"
}
read_log_no_rae() { # ctrl: Get Log Page 70h with RAE=0, as a discovery host does on each AEN, so the next change is notified
    # (nvme-cli's discover reads the log with RAE=1, which keeps the event masked per the spec)
    nvme get-log "/dev/$1" --log-id=0x70 --log-len=4096 >/dev/null 2>&1 || note "get-log 70h on /dev/$1 failed"
}
disc_genctr() { # ctrl -> generation counter of its discovery log
    nvme discover -d "$1" 2>/dev/null | sed -n 's/.*Generation counter \([0-9]*\).*/\1/p' | head -1
}
wait_aen() { # ctrl count: wait up to 10 s until COUNT AEN uevents (0x70f002) were seen for ctrl
    _t=0
    while [ "$(grep -c "0x70f002.*$1" "$STATE/uevents")" -lt "$2" ]; do
        _t=$((_t + 1)); [ $_t -ge 50 ] && return 1; sleep 0.2
    done
}

# ---------------------------------------------------------------------------
case_10() { # protocol capture checked by tshark's NVMe/TCP dissector on the host
    r=$(host_req capture-start); say "  host: $r"
    case "$r" in ok*) ;; *) bad "capture could not start: $r"; return ;; esac
    nvme discover -t tcp -a "$TARGET_IP" -s "$DISC_PORT" >/dev/null 2>&1 || bad "discover failed"
    for dg in "" "--hdr-digest --data-digest"; do
        # shellcheck disable=SC2086
        connect_default $dg || continue
        nvme id-ctrl "/dev/$CTRL" >/dev/null 2>&1; nvme id-ns "/dev/$DEV" >/dev/null 2>&1
        dd if=/dev/urandom of="$STATE/cap" bs=128k count=4 2>/dev/null
        dd if="$STATE/cap" of="/dev/$DEV" bs=128k seek=8 oflag=direct 2>/dev/null || bad "write failed ($dg)"
        [ "$(md5_at "$DEV" $((MIB)) $((512 * 1024)))" = "$(md5sum <"$STATE/cap" | cut -d' ' -f1)" ] || bad "readback mismatch ($dg)"
        # 132 KiB write/read straddling 128 KiB, deallocate and write-zeroes PDUs for the dissector
        dd if=/dev/urandom of="/dev/$DEV" bs=4096 count=33 seek=$((2 * MIB / 4096 + 1)) oflag=direct 2>/dev/null || bad "132K write failed ($dg)"
        md5_at "$DEV" $((2 * MIB + 4096)) $((132 * 1024)) >/dev/null || bad "132K read failed ($dg)"
        /usr/sbin/blkdiscard -o $((3 * MIB)) -l 262144 "/dev/$DEV" 2>/dev/null || note "blkdiscard failed in the capture ($dg): see case 8"
        /usr/sbin/blkdiscard -z -o $((4 * MIB)) -l 135168 "/dev/$DEV" 2>/dev/null || note "blkdiscard -z failed in the capture ($dg): see case 8"
        disconnect_all
    done
    sleep 1
    r=$(host_req capture-stop); say "  host: $r"
    case "$r" in ok*) ok "tshark: ${r#ok }" ;; *) bad "tshark: ${r#err }" ;; esac
}

# ---------------------------------------------------------------------------
# Lightbits' discovery-client, unmodified: the host-side service the product's hosts run. Optional: its source
# cannot be fetched in CI and no prebuilt copy is committed, so the host copies a binary in only when told one.
DC_DIR=/tmp/dc
dc_start() { # [auxSuffix]: starts the client on the dc target's discovery service; sets DC_PID
    rm -rf "$DC_DIR"; mkdir -p "$DC_DIR/discovery.d" "$DC_DIR/internal"
    {
        echo "clientConfigDir: $DC_DIR/discovery.d/"
        echo "internalDir: $DC_DIR/internal/"
        echo "reconnectInterval: 5s"
        echo "logPagePaginationEnabled: false"
        echo "maxIOQueues: 2"
        echo "kato: 10"
        echo "ctrlLossTMO: 30"
        echo "nvmeHostIDPath: /etc/nvme/hostid"
        echo "auxSuffix: \"${1:-}\""
        echo "logging:"
        echo "  filename: \"$DC_DIR/dc.log\""
        echo "  level: debug"
        echo "debug:"
        echo "  metrics: false"
        echo "  enablepprof: false"
        echo "autoDetectEntries:"
        echo "  enabled: false"
    } >"$DC_DIR/discovery-client.yaml"
    echo "-t tcp -a $DC_ADDR -s $DC_DISC_PORT -q $HOSTNQN -n $DEFAULT_NQN" >"$DC_DIR/endpoints.tmp"
    mv "$DC_DIR/endpoints.tmp" "$DC_DIR/discovery.d/duroslight.conf"
    /share/bin/discovery-client serve --config "$DC_DIR/discovery-client.yaml" >"$DC_DIR/stdout" 2>&1 &
    DC_PID=$!
    say "  discovery-client pid $DC_PID, auxSuffix '${1:-}', discovery $DC_ADDR:$DC_DISC_PORT"
}
dc_stop() {
    [ -n "${DC_PID:-}" ] && kill "$DC_PID" 2>/dev/null && wait "$DC_PID" 2>/dev/null
    DC_PID=
    say "  discovery-client output and log (last 25 lines):"
    sed 's/^/    dc-out> /' "$DC_DIR/stdout" 2>/dev/null | tail -5
    tail -25 "$DC_DIR/dc.log" 2>/dev/null | sed 's/^/    dc> /'
    nvme disconnect-all >/dev/null 2>&1
}
wait_ctrl_of() { # nqn timeout_s -> controller name
    _t=0
    while [ $_t -lt "$2" ]; do
        c=$(ctrls_of "$1" "$HOSTNQN" | head -1); [ -n "$c" ] && { echo "$c"; return 0; }
        sleep 1; _t=$((_t + 1))
    done
    return 1
}
dc_aens() { n=$(grep -c "Got AEN" "$DC_DIR/dc.log" 2>/dev/null); echo "${n:-0}"; }
wait_aens() { # count timeout_s
    _t=0
    while [ "$(dc_aens)" -lt "$1" ]; do _t=$((_t + 1)); [ $_t -ge "$2" ] && return 1; sleep 1; done
}
case_11() { # discovery-client
    [ -x /share/bin/discovery-client ] || {
        skip_case "no discovery-client binary: build github.com/lightbitslabs/discovery-client (go build -mod=vendor) and run with DUROSLIGHT_DISCOVERY_CLIENT=PATH"
        return
    }
    [ -n "${DC_DISC_PORT:-}" ] || { bad "the harness started no target for the discovery-client"; return; }
    dc_start
    if c=$(wait_ctrl_of "$DEFAULT_NQN" 40); then
        ok "discovery-client connected $DEFAULT_NQN: $c, $(cat /sys/class/nvme/$c/address)"
        n=$(ls /sys/class/nvme 2>/dev/null | wc -l)
        [ "$n" -eq 1 ] && ok "exactly one I/O controller (aux subsystems not advertised)" || bad "$n controllers: $(ls /sys/class/nvme)"
        d=$(ns_dev_of "$DEFAULT_NQN" 15) && md5_at "$d" 0 $MIB >/dev/null && ok "read through /dev/$d" || bad "no readable namespace"
    else
        bad "discovery-client connected nothing within 40s"
        dc_stop; return
    fi
    # Two discovery log changes (host lists of aux-1; the connected default subsystem is untouched): the client's
    # persistent discovery controller must be told of both, although it reads the log on other connections.
    a0=$(dc_aens); say "  AENs so far: $a0"
    for round in 1 2; do
        if [ "$round" = 1 ]; then r=$(host_req ctl dc hosts set aux-1 "$HOSTNQN"); else r=$(host_req ctl dc hosts any aux-1); fi
        say "  ctl: $r"
        if wait_aens $((a0 + round)) 20; then ok "discovery log change $round: AEN received (total $(dc_aens))"
        else bad "discovery log change $round: no AEN within 20s (AENs: $(dc_aens))"; fi
    done
    [ -n "$(ctrls_of "$DEFAULT_NQN" "$HOSTNQN")" ] && ok "still connected to $DEFAULT_NQN" || bad "lost the $DEFAULT_NQN controller"
    dc_stop
    sleep 1
    # AuxSuffix aux-1: the client connects <nqn>.aux-1, and only that.
    dc_start aux-1
    if c=$(wait_ctrl_of "$DEFAULT_NQN.aux-1" 40); then
        ok "with auxSuffix aux-1 the client connected $DEFAULT_NQN.aux-1: $c"
        [ -z "$(ctrls_of "$DEFAULT_NQN" "$HOSTNQN")" ] && ok "and not $DEFAULT_NQN" || bad "it also connected $DEFAULT_NQN"
    else
        bad "with auxSuffix aux-1 the client connected nothing within 40s: $(ls /sys/class/nvme 2>/dev/null)"
    fi
    dc_stop
    p=$(dmesg_nvme_problems); [ -z "$p" ] || note "kernel nvme messages: $p"
}

# ---------------------------------------------------------------------------
# Reservations from two hosts: host A is this guest's identity (nvme connect), host B a second host NQN/ID on the
# same subsystem (the kernel API, as case 6). Commands go to each host's controller character device with
# --namespace-id, so they take that controller's queues (the namespace block device is shared by both paths).
# ctrl_has_ns CTRL WAIT_S: the controller attached a namespace (nvmeXnY, or nvmeXcYnZ under native multipath)
ctrl_has_ns() {
    _i=0
    while [ $_i -lt $(($2 * 5)) ]; do
        ls "/sys/class/nvme/$1/" 2>/dev/null | grep -qE '^nvme[0-9]+(c[0-9]+)?n[0-9]+$' && return 0
        sleep 0.2; _i=$((_i + 1))
    done
    return 1
}
# nv ARGS...: runs nvme ARGS, logs it and its output (in $STATE/nv.out); its exit status
nv() {
    say "  \$ nvme $*"
    nvme "$@" >"$STATE/nv.out" 2>&1
    _rc=$?
    sed 's/^/    > /' "$STATE/nv.out"
    [ $_rc -eq 0 ] || say "  (exit $_rc)"
    return $_rc
}
# resv_entries CTRL: the extended report as lines HOSTID|RCSTS|RKEY; sets RTYPE and REGCTL
resv_entries() {
    nv resv-report "/dev/$1" -n 1 --eds || { bad "resv-report on /dev/$1 failed"; RTYPE=; REGCTL=; return 1; }
    RTYPE=$(awk '$1 == "rtype" { print $3; exit }' "$STATE/nv.out")
    REGCTL=$(awk '$1 == "regctl" { print $3; exit }' "$STATE/nv.out")
    awk '$1 == "rcsts" { r = $3 } $1 == "rkey" { k = $3 } $1 == "hostid" { print $3 "|" r "|" k }' "$STATE/nv.out" >"$STATE/resv.entries"
}
# block_io CTRL read|write LBA: one 4 KiB block through CTRL's queues; the exit status is nvme's
block_io() {
    if [ "$2" = write ]; then nv io-passthru "/dev/$1" -n 1 --opcode=0x1 --write --data-len=4096 --cdw10="$3" --cdw12=0 -i "$STATE/block"
    else
        say "  \$ nvme io-passthru /dev/$1 -n 1 --opcode=0x2 --read --data-len=4096 --cdw10=$3 --cdw12=0 -b"
        nvme io-passthru "/dev/$1" -n 1 --opcode=0x2 --read --data-len=4096 --cdw10="$3" --cdw12=0 -b >"$STATE/read.bin" 2>"$STATE/nv.out"
        _rc=$?
        sed 's/^/    > /' "$STATE/nv.out"
        return $_rc
    fi
}
expect_conflict() { # what
    if [ $_rc -ne 0 ] && grep -qi 'conflict' "$STATE/nv.out"; then ok "$1 refused with Reservation Conflict"
    else bad "$1: expected Reservation Conflict, got exit $_rc: $(tr '\n' ' ' <"$STATE/nv.out")"; fi
}
case_12() { # reservations
    connect_default || return
    CA=$CTRL
    HB=$(new_hostnqn); HBID=$(new_uuid)
    fabrics_connect "$DEFAULT_NQN" "$IO_PORT" "$HB" "$HBID" || { bad "connect as the second host $HB failed"; return; }
    CB=$(ctrls_of "$DEFAULT_NQN" "$HB" | head -1)
    [ -n "$CB" ] || { bad "no controller of the second host after connect"; return; }
    ctrl_has_ns "$CA" 15 && ctrl_has_ns "$CB" 15 || { bad "a controller has no namespace: $(ls /sys/class/nvme/$CA /sys/class/nvme/$CB | tr '\n' ' ')"; return; }
    ok "host A $HOSTNQN on /dev/$CA (cntlid $(cat /sys/class/nvme/$CA/cntlid)), host B $HB on /dev/$CB (cntlid $(cat /sys/class/nvme/$CB/cntlid))"
    IDA=$(echo "$HOSTID" | tr -d '-' | tr 'A-F' 'a-f'); IDB=$(echo "$HBID" | tr -d '-' | tr 'A-F' 'a-f')
    dd if=/dev/urandom of="$STATE/block" bs=4096 count=1 2>/dev/null

    nv resv-register "/dev/$CA" -n 1 --nrkey=0xa1 --rrega=0 && ok "A registered key a1" || bad "A's resv-register failed"
    nv resv-register "/dev/$CB" -n 1 --nrkey=0xb2 --rrega=0 && ok "B registered key b2" || bad "B's resv-register failed"
    nv resv-register "/dev/$CB" -n 1 --nrkey=0xb3 --rrega=0; expect_conflict "B registering again with another key"
    nv resv-acquire "/dev/$CA" -n 1 --crkey=0xa1 --rtype=1 --racqa=0 && ok "A acquired Write Exclusive" || bad "A's resv-acquire failed"
    nv resv-acquire "/dev/$CB" -n 1 --crkey=0xb2 --rtype=1 --racqa=0; expect_conflict "B acquiring the held reservation"

    if resv_entries "$CB"; then
        [ "$RTYPE" = 1 ] && [ "$REGCTL" = 2 ] && ok "report (from B): Write Exclusive, 2 registrants" || bad "report: rtype '$RTYPE' regctl '$REGCTL', expected 1 and 2"
        grep -qx "$IDA|1|a1" "$STATE/resv.entries" && ok "A listed with its host ID, holding, key a1" || bad "A not listed as $IDA|1|a1: $(tr '\n' ' ' <"$STATE/resv.entries")"
        grep -qx "$IDB|0|b2" "$STATE/resv.entries" && ok "B listed with its host ID, not holding, key b2" || bad "B not listed as $IDB|0|b2: $(tr '\n' ' ' <"$STATE/resv.entries")"
    fi

    block_io "$CB" write 16; expect_conflict "B's write under A's Write Exclusive"
    block_io "$CB" read 16 && ok "B reads under Write Exclusive" || bad "B's read failed"
    block_io "$CA" write 16 && ok "A (holder) writes" || bad "A's write failed"

    nv resv-acquire "/dev/$CB" -n 1 --crkey=0xb2 --prkey=0xa1 --rtype=3 --racqa=2 && ok "B preempted A and aborted (Write Exclusive Registrants Only)" \
        || bad "B's preempt-and-abort failed"
    if resv_entries "$CA"; then
        [ "$RTYPE" = 3 ] && [ "$REGCTL" = 1 ] && grep -qx "$IDB|1|b2" "$STATE/resv.entries" && ok "report (from A): B holds type 3, A unregistered" \
            || bad "report after preempt: rtype '$RTYPE' regctl '$REGCTL' entries $(tr '\n' ' ' <"$STATE/resv.entries")"
    fi
    block_io "$CA" write 16; expect_conflict "A's write after being preempted"
    block_io "$CB" write 16 && ok "B (holder) writes" || bad "B's write failed"

    nv resv-release "/dev/$CB" -n 1 --crkey=0xb2 --rtype=3 --rrela=0 && ok "B released" || bad "B's resv-release failed"
    block_io "$CA" write 16 && ok "A writes once released" || bad "A's write after the release failed"
    resv_entries "$CA" && { [ "$RTYPE" = 0 ] && [ "$REGCTL" = 1 ] && ok "report: no reservation, B still registered" || bad "report after release: rtype '$RTYPE' regctl '$REGCTL'"; }
    nv resv-release "/dev/$CB" -n 1 --crkey=0xb2 --rrela=1 && ok "B cleared" || bad "B's clear failed"
    resv_entries "$CA" && { [ "$REGCTL" = 0 ] && ok "report: no registrants after clear" || bad "report after clear: regctl '$REGCTL'"; }
    say "  kernel log:"; show_dmesg_new
}

# ---------------------------------------------------------------------------
# node index of a controller of the cluster (from its trsvcid: node i listens on CLUSTER_IO_PORT + i)
cluster_node_of() { echo $(($(sed -n 's/.*trsvcid=\([0-9]*\).*/\1/p' "/sys/class/nvme/$1/address") - CLUSTER_IO_PORT)); }

case_13() { # native multipath over the three nodes of a cluster
    [ "$CLUSTER_STARTED" = 1 ] || { bad "the host could not start the cluster (etcd + 3 nodes, see run.sh output)"; return; }
    i=0
    while [ $i -lt 3 ]; do
        nvme_connect "$CLUSTER_NQN" $((CLUSTER_IO_PORT + i)) || bad "nvme connect to node $i (port $((CLUSTER_IO_PORT + i))) failed"
        i=$((i + 1))
    done
    ctrls=$(ctrls_of "$CLUSTER_NQN")
    n=$(echo "$ctrls" | grep -c nvme)
    [ "$n" -eq 3 ] && ok "3 controllers: $(echo $ctrls)" || bad "$n controllers of $CLUSTER_NQN instead of 3"
    for c in $ctrls; do wait_state "$c" live 10 || bad "$c is $(ctrl_state "$c"), not live"; done
    subs=0; heads=0
    for s in /sys/class/nvme-subsystem/nvme-subsys*; do
        [ "$(cat "$s/subsysnqn" 2>/dev/null)" = "$CLUSTER_NQN" ] || continue
        subs=$((subs + 1))
        for h in "$s"/nvme*n*; do [ -e "$h" ] && heads=$((heads + 1)); done
    done
    [ "$subs" -eq 1 ] && ok "one subsystem $CLUSTER_NQN" || bad "$subs subsystems with NQN $CLUSTER_NQN, expected 1"
    [ "$heads" -eq 1 ] && ok "one multipath namespace" || bad "$heads namespaces in the subsystem, expected 1"
    DEV=$(ns_dev_of "$CLUSTER_NQN" 15) || { bad "no multipath block device for $CLUSTER_NQN"; return; }
    say "  \$ nvme list-subsys"; nvme list-subsys >"$STATE/ls.out" 2>&1; sed 's/^/    > /' "$STATE/ls.out"
    n=$(grep -c " live" "$STATE/ls.out")
    [ "$n" -eq 3 ] && ok "nvme list-subsys: 3 live paths" || bad "nvme list-subsys shows $n live paths, expected 3"
    say "  \$ nvme list-subsys /dev/$DEV"; nvme list-subsys "/dev/$DEV" >"$STATE/lsn.out" 2>&1; sed 's/^/    > /' "$STATE/lsn.out"
    # with a namespace, nvme-cli adds each path's ANA state: the primary's port optimized, the other two inaccessible
    o=$(grep " live optimized" "$STATE/lsn.out"); n=$(grep -c " live inaccessible" "$STATE/lsn.out")
    case "$o" in *"trsvcid=$((CLUSTER_IO_PORT + CLUSTER_PRIMARY)),"*) ok "list-subsys: the primary's path live optimized" ;;
        *) bad "list-subsys: no 'live optimized' path on the primary's port $((CLUSTER_IO_PORT + CLUSTER_PRIMARY)) (got '$o')" ;; esac
    [ "$(echo "$o" | grep -c optimized)" -eq 1 ] && [ "$n" -eq 2 ] && ok "list-subsys: 1 optimized, 2 inaccessible paths" \
        || bad "list-subsys: $(echo "$o" | grep -c optimized) optimized and $n inaccessible paths, expected 1 and 2"

    # One path per controller; the primary's optimized, the others inaccessible (sysfs, as the kernel's multipath sees them).
    paths=0
    for c in $ctrls; do
        node=$(cluster_node_of "$c")
        for p in /sys/class/nvme/"$c"/nvme*c*n*; do
            [ -e "$p/ana_state" ] || continue
            paths=$((paths + 1))
            st=$(cat "$p/ana_state"); exp=inaccessible
            [ "$node" = "$CLUSTER_PRIMARY" ] && exp=optimized
            [ "$st" = "$exp" ] && ok "node $node ($c, $(basename "$p")): ana_state $st" \
                || bad "node $node ($c, $(basename "$p")): ana_state '$st', expected $exp (primary is node $CLUSTER_PRIMARY)"
        done
    done
    [ "$paths" -eq 3 ] && ok "3 paths to the namespace" || bad "$paths paths with an ana_state, expected 3"

    # fio through the multipath device; the primary forwards every write to both secondaries.
    before=$(host_req metric "c$CLUSTER_PRIMARY" duroslight_replication_bytes_total) || bad "primary's metrics: $before"
    run_fio mpath "$DEV" --rw=randwrite --bs=4k --iodepth=16 --size=16m || bad "fio randwrite+verify through /dev/$DEV failed"
    after=$(host_req metric "c$CLUSTER_PRIMARY" duroslight_replication_bytes_total) || bad "primary's metrics: $after"
    grew=-1
    case "$before $after" in "ok "[0-9]*" ok "[0-9]*) grew=$((${after#ok } - ${before#ok })) ;; esac
    [ "$grew" -ge $((2 * 16 * MIB)) ] && ok "the primary forwarded $grew bytes to its secondaries (16 MiB written)" \
        || bad "the primary's duroslight_replication_bytes_total grew by $grew bytes, expected >= $((2 * 16 * MIB)) (16 MiB to each of 2 secondaries)"

    say "  \$ nvme disconnect -n $CLUSTER_NQN"; nvme disconnect -n "$CLUSTER_NQN" 2>&1 | sed 's/^/    > /'
    [ -z "$(ctrls_of "$CLUSTER_NQN")" ] && ok "disconnected all three paths" || bad "controllers left: $(ctrls_of "$CLUSTER_NQN")"
    say "  kernel log:"; show_dmesg_new
    p=$(dmesg_nvme_problems); [ -z "$p" ] && ok "no nvme warnings/errors in the kernel log" || bad "kernel nvme warnings/errors: $p"
}

# ---------------------------------------------------------------------------
# field KEY of a `ctl volumes show` answer (key=value words)
ctl_field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1; }
# the volume's record as node NAME sees it (`ok <line>` from the host)
volume_show() { host_req ctl "$1" volumes show "$CLUSTER_VOLUME"; }
# largest completion latency in ms over fio's "lat (usec|msec|nsec)" lines of file $1 (values may end in k or M)
fio_max_lat_ms() {
    awk '/^ *lat \((n|u|m)sec\)/ { f = 1; if ($2 ~ /nsec/) f = 0.000001; else if ($2 ~ /usec/) f = 0.001
        for (i = 3; i <= NF; i++) if ($i ~ /^max=/) { v = $i; sub(/^max=/, "", v); sub(/,$/, "", v); k = 1
            if (v ~ /k$/) k = 1000; else if (v ~ /M$/) k = 1000000; sub(/[kM]$/, "", v); v *= f * k; if (v > m) m = v } }
        END { printf "%d\n", m }' "$1"
}
# the node (index) whose path to the cluster's namespace is optimized, or nothing
optimized_node() {
    for c in $(ctrls_of "$CLUSTER_NQN"); do
        for p in /sys/class/nvme/"$c"/nvme*c*n*; do
            [ "$(cat "$p/ana_state" 2>/dev/null)" = optimized ] && [ "$(ctrl_state "$c")" = live ] && { cluster_node_of "$c"; return 0; }
        done
    done
    return 1
}
uptime_ms() { awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime; }

case_14() { # failover: SIGKILL of the primary node while fio writes and verifies through the multipath device
    [ "$CLUSTER_STARTED" = 1 ] || { bad "the host could not start the cluster (etcd + 3 nodes, see run.sh output)"; return; }
    r=$(volume_show c0) || { bad "volumes show: $r"; return; }
    P=$(ctl_field "$r" primary); gen0=$(ctl_field "$r" generation)
    say "  volume: $r"
    # reconnect every 2 s, give a path up only after 60 s: the killed node's controller stays `connecting` and, with
    # the other two live (inaccessible), the kernel queues the I/O until a path turns optimized
    i=0
    while [ $i -lt 3 ]; do
        nvme_connect "$CLUSTER_NQN" $((CLUSTER_IO_PORT + i)) --reconnect-delay=2 --ctrl-loss-tmo=60 \
            || bad "nvme connect to node $i (port $((CLUSTER_IO_PORT + i))) failed"
        i=$((i + 1))
    done
    DEV=$(ns_dev_of "$CLUSTER_NQN" 15) || { bad "no multipath block device for $CLUSTER_NQN"; return; }
    for c in $(ctrls_of "$CLUSTER_NQN"); do wait_state "$c" live 10 || bad "$c is $(ctrl_state "$c"), not live"; done
    o=$(optimized_node); [ "$o" = "$P" ] && ok "the primary's path (node $P) is optimized" || { bad "optimized path on node '$o', the primary is node $P"; return; }
    for c in $(ctrls_of "$CLUSTER_NQN"); do [ "$(cluster_node_of "$c")" = "$P" ] && KC=$c; done

    # write then verify (crc32c) 8 MiB at a bounded rate, so the primary dies while fio writes
    say "  \$ fio --name=failover --filename=/dev/$DEV --rw=randwrite --bs=4k --iodepth=8 --size=8m --rate_iops=200 --verify=crc32c --do_verify=1 (background)"
    fio --name=failover --filename="/dev/$DEV" --ioengine=libaio --direct=1 --rw=randwrite --bs=4k --iodepth=8 --size=8m \
        --rate_iops=200 --verify=crc32c --do_verify=1 --verify_fatal=1 --group_reporting >"$STATE/failover.out" 2>&1 &
    fpid=$!
    sleep 3
    kill -0 "$fpid" 2>/dev/null || { bad "fio ended before the kill"; sed 's/^/    >> /' "$STATE/failover.out" | tail -20; return; }
    t0=$(uptime_ms)
    r=$(host_req kill-node "c$P"); say "  host: $r"
    case "$r" in ok*) ok "primary node $P SIGKILLed under I/O ($r)" ;; *) bad "kill-node c$P: $r"; return ;; esac

    # another path turns optimized (the ANA change AEN from the promoted primary); 60 s at most
    i=0; n=""
    while [ $i -lt 300 ]; do n=$(optimized_node) && [ "$n" != "$P" ] && break; n=""; sleep 0.2; i=$((i + 1)); done
    t1=$(uptime_ms)
    if [ -n "$n" ]; then
        ok "node $n's path turned optimized $((t1 - t0)) ms after the kill request"
        record "failover: a new optimized path (node $n) $((t1 - t0)) ms after the request to SIGKILL primary node $P (guest clock, lease TTL $CLUSTER_LEASE_TTL s)"
    else
        bad "no other path turned optimized within 60 s of the kill"
        say "  \$ nvme disconnect -n $CLUSTER_NQN (fails the queued I/O so fio ends)"; nvme disconnect -n "$CLUSTER_NQN" >/dev/null 2>&1
    fi
    i=0; while kill -0 "$fpid" 2>/dev/null && [ $i -lt 600 ]; do sleep 0.2; i=$((i + 1)); done
    if kill -0 "$fpid" 2>/dev/null; then
        bad "fio still running 120 s after the failover"; nvme disconnect -n "$CLUSTER_NQN" >/dev/null 2>&1
    fi
    wait "$fpid"; frc=$?
    grep -E 'err=|IOPS=|lat \(|verify|error|bad' "$STATE/failover.out" | sed 's/^/    > /'
    [ $frc -eq 0 ] && grep -q 'err= 0' "$STATE/failover.out" && ! grep -q 'err= *[1-9]' "$STATE/failover.out" \
        && ok "fio wrote and verified (crc32c) across the failover with zero errors" \
        || { bad "fio across the failover failed (exit $frc)"; sed 's/^/    >> /' "$STATE/failover.out" | tail -30; }
    [ -n "$n" ] || return
    pause=$(fio_max_lat_ms "$STATE/failover.out")
    record "failover: fio's largest completion latency (the host's I/O pause) $pause ms"

    # the cluster agrees: the promoted node is the volume's primary, in a newer generation
    r=$(volume_show "c$n") && say "  volume: $r" || bad "volumes show on node $n: $r"
    [ "$(ctl_field "$r" primary)" = "$n" ] && ok "node $n is the volume's primary" || bad "the volume's primary is '$(ctl_field "$r" primary)', the optimized path is node $n"
    [ "$(ctl_field "$r" generation)" -gt "$gen0" ] 2>/dev/null && ok "generation $gen0 -> $(ctl_field "$r" generation)" \
        || bad "generation did not move: $gen0 -> '$(ctl_field "$r" generation)'"
    s=$(ctrl_state "$KC")
    case "$s" in connecting|resetting) ok "the killed node's path ($KC) is $s (reconnecting)" ;; *) bad "the killed node's path $KC is '$s'" ;; esac
    for c in $(ctrls_of "$CLUSTER_NQN"); do
        node=$(cluster_node_of "$c"); [ "$node" = "$P" ] && continue
        for p in /sys/class/nvme/"$c"/nvme*c*n*; do
            st=$(cat "$p/ana_state" 2>/dev/null); exp=inaccessible; [ "$node" = "$n" ] && exp=optimized
            [ "$st" = "$exp" ] && ok "node $node ($c): ana_state $st" || bad "node $node ($c): ana_state '$st', expected $exp"
        done
    done
    say "  kernel log:"; show_dmesg_new
    e=$(dmesg_new | grep -i 'I/O error'); [ -z "$e" ] && ok "no I/O error reached the block layer" || bad "I/O errors in the kernel log: $e"

    # the killed node restarts (empty memory store): its path comes back live and not optimized
    r=$(host_req start-node "c$P"); say "  host: $r"
    case "$r" in ok*) ;; *) bad "start-node c$P: $r"; return ;; esac
    wait_state "$KC" live 30 && ok "the restarted node's path $KC is live again" || { bad "$KC is '$(ctrl_state "$KC")' 30 s after the restart"; return; }
    sleep 1
    for p in /sys/class/nvme/"$KC"/nvme*c*n*; do
        st=$(cat "$p/ana_state" 2>/dev/null)
        [ "$st" != optimized ] && ok "the restarted node's path is $st (not the primary)" || bad "the restarted node's path is optimized"
    done
    r=$(volume_show "c$n") && say "  volume after the restart: $r"
    [ "$(ctl_field "$r" primary)" = "$n" ] && ok "node $n stays primary" || bad "the volume's primary is '$(ctl_field "$r" primary)' after the restart, expected $n"
}

# the node (index) whose path to namespace NSID $1 is optimized and live, or nothing (ANAGRPID = NSID on the target)
optimized_node_of() {
    for c in $(ctrls_of "$CLUSTER_NQN"); do
        for p in /sys/class/nvme/"$c"/nvme*c*n*; do
            [ "$(cat "$p/ana_grpid" 2>/dev/null)" = "$1" ] && [ "$(cat "$p/ana_state" 2>/dev/null)" = optimized ] \
                && [ "$(ctrl_state "$c")" = live ] && { cluster_node_of "$c"; return 0; }
        done
    done
    return 1
}
# the number of paths (controllers) that expose namespace NSID $1
paths_of() {
    _n=0
    for c in $(ctrls_of "$CLUSTER_NQN"); do
        for p in /sys/class/nvme/"$c"/nvme*c*n*; do [ "$(cat "$p/ana_grpid" 2>/dev/null)" = "$1" ] && _n=$((_n + 1)); done
    done
    echo "$_n"
}
# the multipath block device of namespace NSID $1 of the cluster's subsystem, waiting up to 15 s
ns_dev_nsid() {
    _i=0
    while [ $_i -lt 75 ]; do
        for n in /sys/class/nvme-subsystem/nvme-subsys*/nvme*n*; do
            [ -e "$n/nsid" ] && [ "$(cat "$n/nsid")" = "$1" ] && [ "$(cat "$(dirname "$n")/subsysnqn")" = "$CLUSTER_NQN" ] \
                && [ -b "/dev/$(basename "$n")" ] && { basename "$n"; return 0; }
        done
        sleep 0.2; _i=$((_i + 1))
    done
    return 1
}
# a node of the cluster that answers `ctl` (case 14 may have killed and restarted one)
live_node() { for _ln in 0 1 2; do _r=$(host_req ctl "c$_ln" state) && { echo "$_ln"; return 0; }; done; return 1; }

case_15() { # move: a 2-replica volume's primary moved to the node without a replica while fio writes and verifies
    [ "$CLUSTER_STARTED" = 1 ] || { bad "the host could not start the cluster (etcd + 3 nodes, see run.sh output)"; return; }
    L=$(live_node) || { bad "no cluster node answers ctl"; return; }
    r=$(host_req ctl "c$L" volumes create mv 32M --replicas 2); say "  $r"
    case "$r" in ok*) ;; *) bad "volumes create mv: $r"; return ;; esac
    P=$(ctl_field "$r" primary); NS=$(ctl_field "$r" nsid); placement=$(ctl_field "$r" placement)
    S=$((3 - ($(echo "$placement" | tr -d '[]' | tr ',' '+')))) # the node without a replica (nodes 0, 1, 2)
    say "  volume mv: nsid $NS, primary $P, placement $placement, moving the primary to node $S"
    nvme disconnect -n "$CLUSTER_NQN" >/dev/null 2>&1
    i=0
    while [ $i -lt 3 ]; do
        nvme_connect "$CLUSTER_NQN" $((CLUSTER_IO_PORT + i)) --reconnect-delay=2 --ctrl-loss-tmo=60 \
            || bad "nvme connect to node $i (port $((CLUSTER_IO_PORT + i))) failed"
        i=$((i + 1))
    done
    DEV=$(ns_dev_nsid "$NS") || { bad "no multipath block device for nsid $NS"; return; }
    i=0; while [ "$(optimized_node_of "$NS")" != "$P" ] && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
    o=$(optimized_node_of "$NS"); [ "$o" = "$P" ] && ok "/dev/$DEV: the primary's path (node $P) is optimized" || { bad "optimized path on node '$o', the primary is node $P"; return; }
    [ "$(paths_of "$NS")" -eq 2 ] && ok "2 paths to nsid $NS (its two replicas)" || bad "$(paths_of "$NS") paths to nsid $NS, expected 2"

    say "  \$ fio --name=move --filename=/dev/$DEV --rw=randwrite --bs=4k --iodepth=8 --size=16m --rate_iops=200 --verify=crc32c --do_verify=1 (background)"
    fio --name=move --filename="/dev/$DEV" --ioengine=libaio --direct=1 --rw=randwrite --bs=4k --iodepth=8 --size=16m \
        --rate_iops=200 --verify=crc32c --do_verify=1 --verify_fatal=1 --group_reporting >"$STATE/move.out" 2>&1 &
    fpid=$!
    sleep 3
    kill -0 "$fpid" 2>/dev/null || { bad "fio ended before the move"; sed 's/^/    >> /' "$STATE/move.out" | tail -20; return; }
    t0=$(uptime_ms)
    r=$(host_req ctl "c$L" volumes move mv --to "$S"); say "  $r"
    case "$r" in ok*"phase=copying"*) ok "move of mv to node $S started (the primary, node $P, by default)" ;; *) bad "volumes move: $r"; return ;; esac

    # the move ends done; another path turns optimized (the ANA change AEN after the handover); 60 s at most
    i=0; phase=""
    while [ $i -lt 300 ]; do
        r=$(host_req ctl "c$L" volumes move-status mv) && phase=$(ctl_field "$r" phase)
        case "$phase" in done|failed|cancelled) break ;; esac
        sleep 0.2; i=$((i + 1))
    done
    t1=$(uptime_ms)
    say "  move-status: $r"
    [ "$phase" = done ] && ok "the move is done $((t1 - t0)) ms after the request" || bad "the move ended '$phase' (or not within 60 s)"
    record "move: done $((t1 - t0)) ms after the request (guest clock; 32 MiB volume, $(ctl_field "$r" bytes_copied) bytes copied)"
    i=0; n=""
    while [ $i -lt 150 ]; do n=$(optimized_node_of "$NS") && [ "$n" != "$P" ] && break; n=""; sleep 0.2; i=$((i + 1)); done
    [ -n "$n" ] && ok "node $n's path to nsid $NS is optimized" || bad "no other path to nsid $NS turned optimized"

    i=0; while kill -0 "$fpid" 2>/dev/null && [ $i -lt 600 ]; do sleep 0.2; i=$((i + 1)); done
    kill -0 "$fpid" 2>/dev/null && { bad "fio still running 120 s after the move"; nvme disconnect -n "$CLUSTER_NQN" >/dev/null 2>&1; }
    wait "$fpid"; frc=$?
    grep -E 'err=|IOPS=|lat \(|verify|error|bad' "$STATE/move.out" | sed 's/^/    > /'
    [ $frc -eq 0 ] && grep -q 'err= 0' "$STATE/move.out" && ! grep -q 'err= *[1-9]' "$STATE/move.out" \
        && ok "fio wrote and verified (crc32c) across the move with zero errors" \
        || { bad "fio across the move failed (exit $frc)"; sed 's/^/    >> /' "$STATE/move.out" | tail -30; }
    record "move: fio's largest completion latency (the host's I/O pause at the cut-over) $(fio_max_lat_ms "$STATE/move.out") ms"

    r=$(host_req ctl "c$L" volumes show mv); say "  volume: $r"
    placement=$(ctl_field "$r" placement)
    case ",$(echo "$placement" | tr -d '[]')," in *",$P,"*) bad "node $P is still in the placement $placement" ;; *",$S,"*) ok "placement $placement: node $S in, node $P out" ;;
        *) bad "node $S is not in the placement $placement" ;; esac
    [ "$(ctl_field "$r" primary)" != "$P" ] && ok "primary $(ctl_field "$r" primary)" || bad "node $P is still the primary"
    i=0; while [ "$(paths_of "$NS")" -ne 2 ] && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
    [ "$(paths_of "$NS")" -eq 2 ] && ok "2 paths to nsid $NS (the old node's gone, the new node's added)" || bad "$(paths_of "$NS") paths to nsid $NS after the move, expected 2"
    say "  kernel log:"; show_dmesg_new
    e=$(dmesg_new | grep -i 'I/O error'); [ -z "$e" ] && ok "no I/O error reached the block layer" || bad "I/O errors in the kernel log: $e"
    nvme disconnect -n "$CLUSTER_NQN" >/dev/null 2>&1
}

say "case $CASE_NO (hostnqn $HOSTNQN)"
"case_$CASE_NO"
finish_case

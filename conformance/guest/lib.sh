# Guest-side helpers (busybox ash). Sourced by main.sh and case.sh.
# shellcheck shell=sh
. /share/config.env
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

RES_DIR=/share/results
REQ_DIR=/share/req
STATE=/tmp/conformance-state     # survives between cases (guest tmpfs)
mkdir -p "$STATE"

say() { echo "[$(cut -d' ' -f1 /proc/uptime)] $*"; }

# --- results ---------------------------------------------------------------
CASE_FAILS=0
ok()  { say "  ok:   $*"; }
bad() { say "  FAIL: $*"; CASE_FAILS=$((CASE_FAILS + 1)); echo "$*" >>"$STATE/fails.$CASE_NO"; }
note() { say "  note: $*"; }
# record: a measurement for the run summary (printed under the case's result line) and the case log
record() { say "  record: $*"; echo "record: $*" >>"$STATE/records.$CASE_NO"; }
# finish_case: writes the result file for $CASE_NO
finish_case() {
    if [ "$CASE_FAILS" -eq 0 ]; then
        echo "PASS" >"$RES_DIR/$CASE_NO.tmp"
    else
        { echo "FAIL"; head -5 "$STATE/fails.$CASE_NO"; } >"$RES_DIR/$CASE_NO.tmp"
    fi
    cat "$STATE/records.$CASE_NO" >>"$RES_DIR/$CASE_NO.tmp" 2>/dev/null
    mv "$RES_DIR/$CASE_NO.tmp" "$RES_DIR/$CASE_NO.result"
}
skip_case() { # reason; ends the case (its own shell), so finish_case does not overwrite the result
    say "  SKIP: $*"
    { echo "SKIP"; echo "$*"; } >"$RES_DIR/$CASE_NO.tmp"
    mv "$RES_DIR/$CASE_NO.tmp" "$RES_DIR/$CASE_NO.result"
    exit 0
}

# --- requests to the host (through the 9p share) ---------------------------
# host_req ACTION [ARGS...]: prints the host's answer; status 0 if it starts with "ok"
host_req() {
    n=$(cat "$STATE/reqseq" 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" >"$STATE/reqseq"
    id="$CASE_NO-$n"
    echo "$*" >"$REQ_DIR/$id.tmp"; mv "$REQ_DIR/$id.tmp" "$REQ_DIR/$id.req"
    i=0
    while [ ! -f "$REQ_DIR/$id.resp" ]; do
        sleep 0.2; i=$((i + 1))
        [ $i -gt 900 ] && { echo "err host did not answer '$*' in 180s"; return 1; }
    done
    r=$(cat "$REQ_DIR/$id.resp")
    echo "$r"
    case "$r" in ok*) return 0 ;; *) return 1 ;; esac
}

# --- identities --------------------------------------------------------------
new_uuid() { cat /proc/sys/kernel/random/uuid; }
new_hostnqn() { echo "nqn.2014-08.org.nvmexpress:uuid:$(new_uuid)"; }
# QEMU's all-zero machine UUID makes `nvme gen-hostnqn` constant: use a random one.
init_host_identity() {
    mkdir -p /etc/nvme
    if [ ! -s /etc/nvme/hostnqn ]; then
        new_hostnqn >/etc/nvme/hostnqn
        new_uuid >/etc/nvme/hostid
    fi
    HOSTNQN=$(cat /etc/nvme/hostnqn)
    HOSTID=$(cat /etc/nvme/hostid)
}

# --- NVMe helpers ------------------------------------------------------------
# nvme_connect SUBNQN [PORT] [extra nvme connect args...]: logs the command and its output
nvme_connect() {
    _nqn=$1; _port=${2:-$IO_PORT}; shift; [ $# -gt 0 ] && shift
    say "  \$ nvme connect -t tcp -a $TARGET_IP -s $_port -n $_nqn $*"
    nvme connect -t tcp -a "$TARGET_IP" -s "$_port" -n "$_nqn" "$@" >"$STATE/connect.out" 2>&1
    _rc=$?
    sed 's/^/    > /' "$STATE/connect.out"
    say "  (exit $_rc)"
    return $_rc
}

# fabrics_connect SUBNQN PORT HOSTNQN HOSTID: connect through the kernel's /dev/nvme-fabrics
# directly. Used for extra controllers to the same subsystem from other host NQNs:
# nvme-cli 2.3 answers "already connected" to those even with --duplicate-connect.
fabrics_connect() {
    _opts="transport=tcp,traddr=$TARGET_IP,trsvcid=$2,nqn=$1,hostnqn=$3,hostid=$4"
    say "  \$ echo $_opts > /dev/nvme-fabrics"
    exec 3<>/dev/nvme-fabrics || return 1
    if echo "$_opts" >&3; then
        read -r _r <&3; exec 3>&-
        say "    > $_r"
        return 0
    fi
    _rc=$?; exec 3>&-
    say "    > write failed (exit $_rc)"
    return 1
}

# Controllers (nvmeX) of subsystem NQN, optionally only for host HOSTNQN
ctrls_of() {
    for c in /sys/class/nvme/nvme*; do
        [ -e "$c/subsysnqn" ] || continue
        [ "$(cat "$c/subsysnqn")" = "$1" ] || continue
        if [ -n "${2:-}" ] && [ "$(cat "$c/hostnqn" 2>/dev/null)" != "$2" ]; then continue; fi
        basename "$c"
    done
}

# First namespace block device (nvmeXnY) of subsystem NQN, waiting up to $2 s
ns_dev_of() {
    _w=${2:-15}; _i=0
    while [ $_i -lt $((_w * 5)) ]; do
        for s in /sys/class/nvme-subsystem/nvme-subsys*; do
            [ -e "$s/subsysnqn" ] || continue
            [ "$(cat "$s/subsysnqn")" = "$1" ] || continue
            for n in "$s"/nvme*n*; do
                [ -e "$n" ] || continue
                d=$(basename "$n")
                [ -b "/dev/$d" ] && { echo "$d"; return 0; }
            done
        done
        sleep 0.2; _i=$((_i + 1))
    done
    return 1
}

ctrl_state() { cat "/sys/class/nvme/$1/state" 2>/dev/null || echo gone; }

# wait_state CTRL STATE TIMEOUT_S
wait_state() {
    _i=0
    while [ $_i -lt $(($3 * 5)) ]; do
        [ "$(ctrl_state "$1")" = "$2" ] && return 0
        sleep 0.2; _i=$((_i + 1))
    done
    return 1
}

disconnect_all() {
    nvme disconnect-all >/dev/null 2>&1
    _i=0
    while [ -n "$(ls /sys/class/nvme 2>/dev/null)" ] && [ $_i -lt 50 ]; do sleep 0.2; _i=$((_i + 1)); done
}

# field of `nvme id-ctrl` / `nvme id-ns` normal output: idfield FILE NAME
idfield() { awk -F: -v k="$2" '{ f=$1; gsub(/[ \t]+$/, "", f) } f == k { v=$0; sub(/^[^:]*:[ \t]*/, "", v); sub(/[ \t]+$/, "", v); print v; exit }' "$1"; }

# --- kernel log --------------------------------------------------------------
dmesg_mark() { dmesg -r | wc -l >"$STATE/dmesg.mark"; }
dmesg_new() { dmesg -r | tail -n +$(($(cat "$STATE/dmesg.mark" 2>/dev/null || echo 0) + 1)); }
# new kernel lines at warning level or worse (<0>..<4>) mentioning nvme
dmesg_nvme_problems() { dmesg_new | grep -E '^<[0-4]>' | grep -i nvme; }
show_dmesg_new() { dmesg_new | sed 's/^/    dmesg: /'; }

# --- data helpers ------------------------------------------------------------
# md5 of LEN bytes at byte offset OFF (both multiples of 4096) read with O_DIRECT
md5_at() { dd if="/dev/$1" bs=4096 skip=$(($2 / 4096)) count=$(($3 / 4096)) iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1; }
md5_zero() { dd if=/dev/zero bs=4096 count=$(($1 / 4096)) 2>/dev/null | md5sum | cut -d' ' -f1; }

# run_fio NAME DEV [fio args...]: fio with O_DIRECT libaio and crc32c verify; logs output
run_fio() {
    _n=$1; _d=$2; shift 2
    say "  \$ fio --name=$_n --filename=/dev/$_d $*"
    fio --name="$_n" --filename="/dev/$_d" --ioengine=libaio --direct=1 \
        --verify=crc32c --verify_fatal=1 --group_reporting --output-format=normal "$@" \
        >"$STATE/fio.out" 2>&1
    _rc=$?
    grep -E 'err=|IOPS=|verify|error|Error|bad' "$STATE/fio.out" | sed 's/^/    > /'
    [ $_rc -ne 0 ] && sed 's/^/    >> /' "$STATE/fio.out" | tail -30
    say "  (fio exit $_rc)"
    return $_rc
}

# Guest driver: runs the selected cases one by one, each under a time limit, each in its
# own shell, with a clean slate (all controllers disconnected) between cases.
# shellcheck shell=sh
CASE_NO=main
. /share/guest/lib.sh
init_host_identity
mkdir -p /share/logs "$RES_DIR" "$REQ_DIR"
say "guest ready: kernel $(uname -r), hostnqn $HOSTNQN, cases: $CASES"
{
    echo "kernel=$(uname -r)"
    echo "nvme-cli=$(nvme version | head -1)"
    echo "fio=$(fio --version)"
    echo "hostnqn=$HOSTNQN"
    echo "uptime_at_start=$(cut -d' ' -f1 /proc/uptime)"
} >/share/logs/guest-info.txt
for c in $CASES; do
    say "=== case $c"
    host_req case-begin "$c" >/dev/null
    timeout -s KILL "$CASE_TIMEOUT" sh /share/guest/case.sh "$c" >"/share/logs/case$c.log" 2>&1
    rc=$?
    if [ ! -f "$RES_DIR/$c.result" ]; then
        { echo "FAIL"; echo "case did not finish (exit $rc; killed after ${CASE_TIMEOUT}s?)"; } >"$RES_DIR/$c.result"
    fi
    disconnect_all
    host_req case-end "$c" >/dev/null
    say "=== case $c: $(head -1 "$RES_DIR/$c.result")"
done
dmesg -r >/share/logs/dmesg.txt
say "all cases done"
echo done >/share/results/ALL_DONE

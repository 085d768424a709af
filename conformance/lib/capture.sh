# shellcheck shell=bash
# Protocol capture on the loopback test ports, checked with tshark's NVMe/TCP dissector.

CAPTURE_PID=
capture_start() {
    local f=$WORK_DIR/capture.pcapng i=0
    have tshark || { echo "err tshark not installed (apt-get install tshark)"; return; }
    rm -f "$f"
    tshark -i lo -f "tcp port $IO_PORT or tcp port $DISC_PORT" -w "$f" -q >"$WORK_DIR/tshark-capture.log" 2>&1 &
    CAPTURE_PID=$!
    while [ $i -lt 75 ]; do
        grep -q "Capturing on" "$WORK_DIR/tshark-capture.log" 2>/dev/null && { echo "ok capturing on lo"; return; }
        kill -0 "$CAPTURE_PID" 2>/dev/null || break
        sleep 0.2; i=$((i + 1))
    done
    echo "err tshark did not start capturing: $(tr '\n' ' ' <"$WORK_DIR/tshark-capture.log")"
}

_tshark_read() { # display-filter, extra args
    local filter=$1; shift
    tshark -r "$WORK_DIR/capture.pcapng" \
        -o nvme-tcp.check_hdgst:TRUE -o nvme-tcp.check_ddgst:TRUE \
        -d "tcp.port==$IO_PORT,nvme-tcp" -d "tcp.port==$DISC_PORT,nvme-tcp" \
        ${filter:+-Y "$filter"} "$@" 2>>"$WORK_DIR/tshark-read.log"
}

capture_stop() {
    local pdus frames bad
    [ -n "$CAPTURE_PID" ] || { echo "err no capture running"; return; }
    kill -INT "$CAPTURE_PID" 2>/dev/null; wait "$CAPTURE_PID" 2>/dev/null; CAPTURE_PID=
    [ -s "$WORK_DIR/capture.pcapng" ] || { echo "err empty capture"; return; }
    frames=$(_tshark_read "" | wc -l)
    pdus=$(_tshark_read "nvme-tcp" -T fields -e nvme-tcp.type | tr ',' '\n' | grep -c .)
    _tshark_read "nvme-tcp" -T fields -e nvme-tcp.type | tr ',' '\n' | sort | uniq -c >"$WORK_DIR/capture-pdu-types.txt"
    _tshark_read "" -q -z expert,error >"$WORK_DIR/capture-expert.txt"
    _tshark_read '_ws.malformed || _ws.expert.severity == error' >"$WORK_DIR/capture-bad.txt"
    bad=$(wc -l <"$WORK_DIR/capture-bad.txt")
    _tshark_read "nvme-tcp" -V >"$WORK_DIR/capture-decoded.txt"
    if [ "$pdus" -eq 0 ]; then
        echo "err no NVMe/TCP PDU decoded in $frames frames (see capture.pcapng)"
    elif [ "$bad" -gt 0 ]; then
        echo "err $bad malformed/error-level frames of $frames (pdus=$pdus): $(head -3 "$WORK_DIR/capture-bad.txt" | tr '\n' ';')"
    else
        echo "ok $frames frames, $pdus NVMe/TCP PDUs (types: $(awk '{printf "%s:%s ", $2, $1}' "$WORK_DIR/capture-pdu-types.txt")), 0 malformed, 0 error-level expert infos"
    fi
}

# shellcheck shell=bash
# Protocol capture on the loopback test ports, checked with tshark's NVMe/TCP dissector.
# capture_start / capture_stop set CAPTURE_RESULT ("ok ..." / "err ..."); call them
# directly (not in $(...)): they keep the capture's pid in this shell.

CAPTURE_PID=
CAPTURE_RESULT=
capture_start() {
    local f=$WORK_DIR/capture.pcapng i=0
    if ! have tshark; then CAPTURE_RESULT="err tshark not installed (apt-get install tshark)"; return; fi
    rm -f "$f"
    tshark -i lo -f "tcp port $IO_PORT or tcp port $DISC_PORT" -w "$f" -q >"$WORK_DIR/tshark-capture.log" 2>&1 &
    CAPTURE_PID=$!
    while [ $i -lt 75 ]; do
        if grep -q "Capturing on" "$WORK_DIR/tshark-capture.log" 2>/dev/null; then
            CAPTURE_RESULT="ok capturing on lo, tcp ports $IO_PORT and $DISC_PORT"; return
        fi
        kill -0 "$CAPTURE_PID" 2>/dev/null || break
        sleep 0.2; i=$((i + 1))
    done
    CAPTURE_RESULT="err tshark did not start capturing: $(tr '\n' ' ' <"$WORK_DIR/tshark-capture.log")"
}

_tshark_read() { # display-filter, extra args
    local filter=$1; shift
    tshark -r "$WORK_DIR/capture.pcapng" \
        -o nvme-tcp.check_hdgst:TRUE -o nvme-tcp.check_ddgst:TRUE \
        -d "tcp.port==$IO_PORT,nvme-tcp" -d "tcp.port==$DISC_PORT,nvme-tcp" \
        ${filter:+-Y "$filter"} "$@" 2>>"$WORK_DIR/tshark-read.log"
}

capture_stop() {
    local i=0 pdus frames bad
    if [ -z "$CAPTURE_PID" ]; then CAPTURE_RESULT="err no capture running"; return; fi
    kill -INT "$CAPTURE_PID" 2>/dev/null
    while kill -0 "$CAPTURE_PID" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.2; i=$((i + 1)); done
    kill -KILL "$CAPTURE_PID" 2>/dev/null; wait "$CAPTURE_PID" 2>/dev/null; CAPTURE_PID=
    if [ ! -s "$WORK_DIR/capture.pcapng" ]; then CAPTURE_RESULT="err empty capture"; return; fi
    frames=$(_tshark_read "" | wc -l)
    _tshark_read "nvme-tcp" -T fields -e nvme-tcp.type | tr ',' '\n' | grep . | sort | uniq -c >"$WORK_DIR/capture-pdu-types.txt"
    pdus=$(awk '{s += $1} END {print s + 0}' "$WORK_DIR/capture-pdu-types.txt")
    _tshark_read "" -q -z expert,error >"$WORK_DIR/capture-expert.txt"
    _tshark_read '_ws.malformed || _ws.expert.severity == error' >"$WORK_DIR/capture-bad.txt"
    bad=$(grep -c . "$WORK_DIR/capture-bad.txt")
    # digest verification results (1 = good) and NVMe completions with a non-success status
    digests=$(_tshark_read "nvme-tcp.hdgst.status || nvme-tcp.ddgst.status" | wc -l)
    _tshark_read "nvme.cqe.status.sc != 0 || nvme.cqe.status.sct != 0" -T fields \
        -e frame.number -e tcp.srcport -e nvme.cqe.status -e _ws.col.Info >"$WORK_DIR/capture-error-cqes.txt"
    errcqe=$(grep -c . "$WORK_DIR/capture-error-cqes.txt")
    _tshark_read "nvme-tcp" -V >"$WORK_DIR/capture-decoded.txt"
    if [ "$pdus" -eq 0 ]; then
        CAPTURE_RESULT="err no NVMe/TCP PDU decoded in $frames frames (see $WORK_DIR/capture.pcapng)"
    elif [ "$bad" -gt 0 ]; then
        CAPTURE_RESULT="err $bad malformed/error-level frames of $frames (pdus=$pdus), see $WORK_DIR/capture-bad.txt: $(head -3 "$WORK_DIR/capture-bad.txt" | tr '\n' ';')"
    else
        CAPTURE_RESULT="ok $frames frames, $pdus NVMe/TCP PDUs (types: $(awk '{printf "%s:%s ", $2, $1}' "$WORK_DIR/capture-pdu-types.txt")), $digests frames with verified digests, 0 malformed, 0 error-level expert infos; $errcqe completions with non-success status${errcqe:+ (capture-error-cqes.txt: $(head -3 "$WORK_DIR/capture-error-cqes.txt" | tr '\t\n' ' ;'))}"
    fi
}

# shellcheck shell=bash
# The Duroslight target on the host, from the repo's own build, on test ports with a
# fresh data directory.

declare -A TARGET_PID=() TARGET_IO=() TARGET_ARGS=() TARGET_LOG=() TARGET_METRICS=() TARGET_SOCKET=()
TARGET_CMD=()

target_build() { # $1 = 1 to build, 0 to use what is there
    local build=$1 proj=$REPO_ROOT/src/Duroslight.Server out
    if [ -n "${DUROSLIGHT_SERVER:-}" ]; then
        read -r -a TARGET_CMD <<<"$DUROSLIGHT_SERVER"
        log "target: using DUROSLIGHT_SERVER=$DUROSLIGHT_SERVER"; return 0
    fi
    [ -d "$proj" ] || die "no $proj"
    if [ "$build" = 1 ]; then
        have dotnet || die "dotnet not found (needed to build the target)"
        log "building the target: dotnet build src/Duroslight.Server -c Release"
        if ! (cd "$REPO_ROOT" && timeout 900 dotnet build src/Duroslight.Server -c Release -nologo -v q) >"$WORK_DIR/target-build.log" 2>&1; then
            tail -30 "$WORK_DIR/target-build.log" | indent >&2
            die "target build failed (full log: $WORK_DIR/target-build.log)"
        fi
    fi
    out=$proj/bin/Release/net10.0
    if [ -x "$out/duroslight" ]; then
        TARGET_CMD=("$out/duroslight")
    elif [ -f "$out/duroslight.dll" ]; then
        TARGET_CMD=(dotnet "$out/duroslight.dll")
    elif [ -f "$out/Duroslight.Server.dll" ]; then
        TARGET_CMD=(dotnet "$out/Duroslight.Server.dll")
    else
        die "no built server in $out (run without --no-build)"
    fi
    log "target binary: ${TARGET_CMD[*]}"
}

# target_start NAME IO_PORT DISC_PORT METRICS_PORT DATA_DIR [extra serve args...]
target_start() {
    local name=$1 io=$2 disc=$3 met=$4 data=$5; shift 5
    local p args
    for p in "$io" "$disc" "$met"; do
        port_busy "$p" && die "port 127.0.0.1:$p is already in use (another conformance run or target?)"
    done
    mkdir -p "$data"
    TARGET_SOCKET[$name]=$data/control.sock
    args="serve --listen 127.0.0.1:$io --discovery 127.0.0.1:$disc --metrics 127.0.0.1:$met --data-dir $data --control-socket $data/control.sock $*"
    TARGET_ARGS[$name]=$args
    TARGET_METRICS[$name]=$met
    TARGET_IO[$name]=$io
    TARGET_LOG[$name]=$WORK_DIR/target-$name.log
    _target_launch "$name" "$io" "$met"
}

_target_launch() { # name io_port metrics_port
    local name=$1 io=$2 met=$3 pid
    # shellcheck disable=SC2086
    echo "=== $(date '+%F %T') start: ${TARGET_CMD[*]} ${TARGET_ARGS[$name]}" >>"${TARGET_LOG[$name]}"
    # shellcheck disable=SC2086
    "${TARGET_CMD[@]}" ${TARGET_ARGS[$name]} >>"${TARGET_LOG[$name]}" 2>&1 &
    pid=$!
    TARGET_PID[$name]=$pid
    local i=0
    while [ $i -lt 300 ]; do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid"; echo "=== exited with status $? during startup" >>"${TARGET_LOG[$name]}"
            tail -30 "${TARGET_LOG[$name]}" | indent >&2
            TARGET_PID[$name]=
            return 1
        fi
        if port_busy "$io" && port_busy "$met"; then
            log "target '$name' up (pid $pid): ${TARGET_ARGS[$name]}"
            return 0
        fi
        sleep 0.2; i=$((i + 1))
    done
    warn "target '$name' did not listen on $io/$met within 60s"
    return 1
}

# target_stop NAME: SIGTERM, wait up to 20s, else SIGKILL. Sets TARGET_STOP_RESULT
# ("exit=<status> after=<s>s"); non-zero if SIGKILL was needed. Not for $(...): it must
# run in the shell that started the target.
TARGET_STOP_RESULT=
target_stop() {
    local name=$1 pid=${TARGET_PID[$1]:-} t0=$SECONDS st i=0
    [ -n "$pid" ] || { TARGET_STOP_RESULT="exit=not-running"; return 0; }
    kill -TERM "$pid" 2>/dev/null
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.2; i=$((i + 1)); done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
        echo "=== did not exit within 20s of SIGTERM: killed" >>"${TARGET_LOG[$name]}"
        TARGET_PID[$name]=
        TARGET_STOP_RESULT="exit=KILLED(still running 20s after SIGTERM)"; return 1
    fi
    wait "$pid"; st=$?
    echo "=== exited with status $st after SIGTERM ($((SECONDS - t0))s)" >>"${TARGET_LOG[$name]}"
    TARGET_PID[$name]=
    TARGET_STOP_RESULT="exit=$st after=$((SECONDS - t0))s"
}

# target_restart NAME IO_PORT: sets TARGET_RESTART_RESULT
TARGET_RESTART_RESULT=
target_restart() {
    local name=$1 io=$2
    target_stop "$name"
    if ! _target_launch "$name" "$io" "${TARGET_METRICS[$name]}"; then
        TARGET_RESTART_RESULT="stop:$TARGET_STOP_RESULT start:FAILED"; return 1
    fi
    TARGET_RESTART_RESULT="stop:$TARGET_STOP_RESULT start:ok"
}

# target_kill NAME: SIGKILL (a crash), reaped here. Sets TARGET_KILL_RESULT.
TARGET_KILL_RESULT=
target_kill() {
    local name=$1 pid=${TARGET_PID[$1]:-}
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || { TARGET_KILL_RESULT="target '$name' is not running"; return 1; }
    kill -KILL "$pid"; wait "$pid" 2>/dev/null
    echo "=== $(date '+%F %T') killed (SIGKILL) on the guest's request" >>"${TARGET_LOG[$name]}"
    TARGET_PID[$name]=
    TARGET_KILL_RESULT="pid $pid killed at $(date '+%T.%N' | cut -c1-12)"
}

# target_relaunch NAME: start a stopped or killed target again with the same arguments (and ports)
target_relaunch() {
    local name=$1
    target_alive "$name" && return 0
    _target_launch "$name" "${TARGET_IO[$name]}" "${TARGET_METRICS[$name]}"
}

target_alive() { local pid=${TARGET_PID[$1]:-}; [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; }

# target_ctl NAME ARGS...: `duroslight ctl` against the target's control socket; prints its output (one line)
target_ctl() {
    local name=$1 out rc; shift
    out=$("${TARGET_CMD[@]}" ctl --socket "${TARGET_SOCKET[$name]}" "$@" 2>&1); rc=$?
    printf '%s' "$out" | tr '\n' ' '
    return $rc
}

# Sum of lightbox_fe_ctrl_id_used over all pools/shards (controller IDs in use).
target_ctrl_count() { target_metric_sum "$1" lightbox_fe_ctrl_id_used; }

# target_metric_sum NAME METRIC: the sum of METRIC over all its series (labels) on target NAME's /metrics
target_metric_sum() {
    local name=$1 metric=$2 body
    body=$(http_get "${TARGET_METRICS[$name]}" /metrics) || { echo "metrics-unreachable"; return 1; }
    printf '%s\n' "$body" >"$WORK_DIR/metrics-$name-last.txt"
    printf '%s\n' "$body" | awk -v m="$metric" '$1 == m || index($1, m "{") == 1 {s += $NF; n++} END { if (n == 0) print "no-metric"; else printf "%d\n", s }'
}

target_stop_all() {
    local n
    for n in "${!TARGET_PID[@]}"; do
        [ -n "${TARGET_PID[$n]}" ] && target_stop "$n"
    done
}

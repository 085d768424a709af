#!/usr/bin/env bash
# Time-boxed AFL++ run on one fuzz target (README.md beside this script).
#   bench/fuzz/run.sh [SECONDS] [receive|gftl]   default 150 s of the NVMe/TCP receive path; gftl: the GFTL's
#                                                 on-device state. Fails on any crash or hang, prints execs/s and edges.
# Needs afl-fuzz (Debian's afl++) and the dotnet tool SharpFuzz.CommandLine; .ci/run installs both.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-150}
target=${2:-receive}
case $target in
    receive) dll=Duroslight.Protocol.dll corpus=corpus args=() ;;
    gftl) dll=Duroslight.Storage.dll corpus=corpus-gftl args=(gftl) ;;
    *) echo "unknown target '$target' (receive or gftl)" >&2; exit 2 ;;
esac
work=${FUZZ_WORK:-$(mktemp -d /tmp/duroslight-fuzz.XXXXXX)}
out=$work/publish
afl=$work/instrumented
export PATH="$PATH:$HOME/.dotnet/tools"

echo "== publish and instrument (work folder $work)"
# Two copies: the instrumented one only works under afl-fuzz (it writes AFL's shared-memory bitmap); seeds and
# replays run on the plain one.
dotnet publish Duroslight.Fuzz -c Release -o "$out" --nologo -v q >/dev/null
rm -rf "$afl"
cp -r "$out" "$afl"
sharpfuzz "$afl/$dll"

if [ "$target" = receive ]; then
    echo "== seed corpus: committed copy must equal what the host library records now"
    dotnet "$out/duroslight-fuzz.dll" seeds "$work/seeds" >/dev/null
    if ! diff -r "$work/seeds" corpus >/dev/null; then
        echo "bench/fuzz/corpus is stale: regenerate it with 'dotnet $out/duroslight-fuzz.dll seeds bench/fuzz/corpus'" >&2
        exit 1
    fi
else
    echo "== seed corpus: every seed runs clean"
    dotnet "$out/duroslight-fuzz.dll" replay gftl "$corpus"
fi

echo "== afl-fuzz on the $target target for ${seconds}s"
# .NET is not compiled with afl-cc (SharpFuzz instruments the IL), and the run is unattended.
export AFL_SKIP_BIN_CHECK=1 AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1
export AFL_FORKSRV_INIT_TMOUT=60000 DOTNET_TieredPGO=0
rc=0
timeout --signal=INT $((seconds + 120)) afl-fuzz -V "$seconds" -i "$corpus" -o "$work/findings" -t 5000 -m none \
    -- dotnet "$afl/duroslight-fuzz.dll" "${args[@]}" > "$work/afl.log" 2>&1 || rc=$?
stats=$work/findings/default/fuzzer_stats
if [ ! -f "$stats" ]; then
    tail -40 "$work/afl.log" >&2
    echo "afl-fuzz did not start (exit $rc)" >&2
    exit 1
fi
field() { sed -n "s/^$1 *: *//p" "$stats"; }
echo "execs_done $(field execs_done), execs_per_sec $(field execs_per_sec), corpus_count $(field corpus_count)," \
     "edges_found $(field edges_found) (bitmap_cvg $(field bitmap_cvg) of the 64 Ki map), saved_crashes $(field saved_crashes), saved_hangs $(field saved_hangs)"
findings=$(find "$work/findings/default/crashes" "$work/findings/default/hangs" -type f -name 'id:*' 2>/dev/null | wc -l)
if [ "$findings" -ne 0 ]; then
    echo "afl-fuzz found $findings crash/hang input(s); replaying them:" >&2
    for f in "$work"/findings/default/crashes/id:* "$work"/findings/default/hangs/id:*; do
        [ -f "$f" ] || continue
        echo "-- $f ($(od -An -tx1 -N64 "$f" | tr -d " \n")...)" >&2
        timeout 30 dotnet "$out/duroslight-fuzz.dll" replay "${args[@]}" "$f" >&2 || true
    done
    exit 1
fi
echo "no crash, no hang"

#!/usr/bin/env bash
# The soak on the real process, longer than CI's 45 s (bench/README.md "Soak"). Usage:
#   bench/run-soak.sh [seconds] [workers] [extra serve args...]     (default 600 s, 4 workers, the GFTL store)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600} workers=${2:-4}
shift $(( $# < 2 ? $# : 2 ))
dotnet build src/Duroslight.Server -c Release -v q -nologo >/dev/null
dotnet build bench/Duroslight.Soak -c Release -v q -nologo >/dev/null
data=$(mktemp -d /var/tmp/dsl-soak.XXXXXX)
src/Duroslight.Server/bin/Release/net10.0/duroslight serve --data-dir "$data" --listen 127.0.0.1:24520 \
    --discovery 127.0.0.1:24521 --metrics off --log-level warning "$@" & pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do [ -S "$data/control.sock" ] && (exec 3<>/dev/tcp/127.0.0.1/24520) 2>/dev/null && break; sleep 0.2; done
dotnet bench/Duroslight.Soak/bin/Release/net10.0/duroslight-soak.dll run --port 24520 --control "$data/control.sock" \
    --pid "$pid" --seconds "$seconds" --workers "$workers"

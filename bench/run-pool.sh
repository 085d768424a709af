#!/usr/bin/env bash
# A full controller pool on the real process (bench/README.md): memory per idle connection and per idle controller,
# CONTROLLERS controllers with one I/O queue each doing verified I/O, and the next one refused. Usage:
#   bench/run-pool.sh [connections] [controllers]      (default 2000 2030)
set -euo pipefail
cd "$(dirname "$0")/.."
connections=${1:-2000} controllers=${2:-2030}
ulimit -n "$(ulimit -Hn)"   # the target and this tool each hold one descriptor per connection
dotnet build src/Duroslight.Server -c Release -v q -nologo >/dev/null
dotnet build bench/Duroslight.Pool -c Release -v q -nologo >/dev/null
data=$(mktemp -d /var/tmp/dsl-pool.XXXXXX)
src/Duroslight.Server/bin/Release/net10.0/duroslight serve --cores 0 --memory --volume-size 256M --log-level warning \
    --listen 127.0.0.1:24421 --discovery 127.0.0.1:28010 --metrics off --data-dir "$data" & pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/24421) 2>/dev/null && break; sleep 0.2; done
bench/Duroslight.Pool/bin/Release/net10.0/duroslight-pool 24421 "$pid" "$connections" "$controllers"

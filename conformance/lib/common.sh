# shellcheck shell=bash
# Shared helpers for the Duroslight conformance harness (sourced by run.sh).

CONF_DIR=${CONF_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
REPO_ROOT=${REPO_ROOT:-$(cd "$CONF_DIR/.." && pwd)}
CACHE_DIR=${DUROSLIGHT_CONFORMANCE_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/duroslight-conformance}

_ts() { date +%H:%M:%S; }
log()  { printf '[%s] %s\n' "$(_ts)" "$*" >&2; }
warn() { printf '[%s] WARNING: %s\n' "$(_ts)" "$*" >&2; }
die()  { printf '[%s] ERROR: %s\n' "$(_ts)" "$*" >&2; exit 2; }

have() { command -v "$1" >/dev/null 2>&1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

# sha256 of stdin, short form
short_hash() { sha256sum | cut -c1-16; }

# Version of an installed Debian package, or "none".
pkg_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo none; }

# Indent a file/stdin for readable failure reports.
indent() { sed 's/^/    | /'; }

# Wait until a TCP port on 127.0.0.1 accepts connections. $1=port $2=timeout seconds
wait_port() {
    local port=$1 t=${2:-30} i=0
    while [ "$i" -lt $((t * 5)) ]; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.2; i=$((i + 1))
    done
    return 1
}

# True if something listens on 127.0.0.1:$1
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Minimal HTTP GET against 127.0.0.1 (no curl dependency). $1=port $2=path
http_get() {
    local port=$1 path=$2
    if have curl; then
        curl -fsS --max-time 5 "http://127.0.0.1:$port$path"
        return
    fi
    (
        exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
        printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$path" >&3
        timeout 5 cat <&3 | tr -d '\r' | sed '1,/^$/d'
    )
}

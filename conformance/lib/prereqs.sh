# shellcheck shell=bash
# Host prerequisites: commands the harness needs and the Debian packages providing them.

# "command package" pairs. busybox must be the static build (it is copied into the guest).
PREREQS=(
    "qemu-system-x86_64 qemu-system-x86"
    "nvme nvme-cli"
    "fio fio"
    "blkdiscard util-linux"
    "cpio cpio"
    "depmod kmod"
    "dpkg-deb dpkg"
    "zstd zstd"
    "ldd libc-bin"
)
PREREQ_CAPTURE=("tshark tshark")
PREREQ_CLUSTER=("etcd etcd-server")

_busybox_static_ok() {
    [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1
}

# Missing packages for the given "cmd pkg" list -> stdout
_missing_pkgs() {
    local entry cmd pkg
    for entry in "$@"; do
        cmd=${entry%% *}; pkg=${entry#* }
        have "$cmd" || echo "$pkg"
    done
}

APT_UPDATED=${APT_UPDATED:-0}
apt_update_once() {
    [ "$APT_UPDATED" = 1 ] && return 0
    log "apt-get update"
    timeout 600 apt-get update -qq >/dev/null 2>&1 || warn "apt-get update failed"
    APT_UPDATED=1
}

apt_install() {
    apt_update_once
    log "apt-get install $*"
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
    DEBIAN_FRONTEND=noninteractive timeout 1200 apt-get install -y -q --no-install-recommends "$@" >"${WORK_DIR:-/tmp}/apt-install.log" 2>&1 \
        || { tail -20 "${WORK_DIR:-/tmp}/apt-install.log" >&2; return 1; }
}

# ensure_prereqs <want_capture:0|1> <may_install:0|1> [want_cluster:0|1]
ensure_prereqs() {
    local want_capture=$1 may_install=$2 want_cluster=${3:-0} missing=()
    mapfile -t missing < <(_missing_pkgs "${PREREQS[@]}")
    _busybox_static_ok || missing+=(busybox-static)
    if [ "$want_capture" = 1 ]; then
        mapfile -t -O "${#missing[@]}" missing < <(_missing_pkgs "${PREREQ_CAPTURE[@]}")
    fi
    if [ "$want_cluster" = 1 ]; then
        mapfile -t -O "${#missing[@]}" missing < <(_missing_pkgs "${PREREQ_CLUSTER[@]}")
    fi
    [ "${#missing[@]}" -eq 0 ] && return 0
    if [ "$may_install" = 1 ] && is_root && have apt-get; then
        apt_install "${missing[@]}" || die "could not install: ${missing[*]}"
        return 0
    fi
    die "missing host packages: ${missing[*]}
  install them with:  apt-get install -y --no-install-recommends ${missing[*]}
  (or run this script as root, it installs them itself)"
}

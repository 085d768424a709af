# shellcheck shell=bash
# Debian's stock kernel for the guest, fetched with `apt-get download` and unpacked
# with `dpkg -x` into the cache (never installed on the host).
#
# Sets: KERNEL_DIR (unpacked root), KERNEL_VERSION (uname -r), KERNEL_IMAGE (vmlinuz), KERNEL_ID

_kernel_resolve_pkg() {
    apt-cache depends linux-image-amd64 2>/dev/null \
        | awk '/Depends: linux-image-[0-9]/{print $2; exit}'
}

_kernel_use_dir() {
    KERNEL_DIR=$1
    KERNEL_VERSION=$(ls "$KERNEL_DIR/lib/modules" | head -1)
    KERNEL_IMAGE=$KERNEL_DIR/boot/vmlinuz-$KERNEL_VERSION
    KERNEL_ID=$(basename "$KERNEL_DIR")
    [ -f "$KERNEL_IMAGE" ] || die "no kernel image in $KERNEL_DIR"
    [ -s "$KERNEL_DIR/lib/modules/$KERNEL_VERSION/modules.dep" ] || die "no modules.dep in $KERNEL_DIR"
}

_kernel_unpack() { # $1=deb $2=dest
    local deb=$1 dest=$2 kv
    rm -rf "$dest.tmp"; mkdir -p "$dest.tmp"
    dpkg -x "$deb" "$dest.tmp" || die "dpkg -x $deb failed"
    kv=$(ls "$dest.tmp/lib/modules" | head -1)
    [ -n "$kv" ] || die "$deb has no /lib/modules"
    # The package ships no modules.dep (its postinst runs depmod): generate it.
    depmod -b "$dest.tmp" "$kv" || die "depmod failed for $kv"
    rm -rf "$dest"; mv "$dest.tmp" "$dest"
    touch "$dest/.complete"
}

kernel_fetch() {
    local pkg ver dest dl
    mkdir -p "$CACHE_DIR/kernel"
    if [ -n "${DUROSLIGHT_KERNEL_DEB:-}" ]; then
        dest=$CACHE_DIR/kernel/$(basename "$DUROSLIGHT_KERNEL_DEB" .deb)
        [ -f "$dest/.complete" ] || _kernel_unpack "$DUROSLIGHT_KERNEL_DEB" "$dest"
        _kernel_use_dir "$dest"; return
    fi
    pkg=$(_kernel_resolve_pkg)
    if [ -z "$pkg" ] && is_root && have apt-get; then
        apt_update_once; pkg=$(_kernel_resolve_pkg)
    fi
    if [ -z "$pkg" ]; then
        # Offline: reuse the newest cached kernel.
        dest=$(ls -d "$CACHE_DIR"/kernel/*/.complete 2>/dev/null | sort -V | tail -1)
        [ -n "$dest" ] || die "cannot resolve linux-image-amd64 (run apt-get update) and no cached kernel in $CACHE_DIR/kernel"
        warn "cannot resolve linux-image-amd64; using cached $(dirname "$dest")"
        _kernel_use_dir "$(dirname "$dest")"; return
    fi
    ver=$(apt-cache policy "$pkg" | awk '/Candidate:/{print $2; exit}')
    dest=$CACHE_DIR/kernel/${pkg}_${ver//:/%}
    if [ ! -f "$dest/.complete" ]; then
        log "fetching guest kernel $pkg $ver (apt-get download, not installed on the host)"
        dl=$(mktemp -d "$CACHE_DIR/kernel/dl.XXXXXX")
        chmod 0755 "$dl"; id _apt >/dev/null 2>&1 && chown _apt "$dl"
        (cd "$dl" && timeout 600 apt-get download -q "$pkg=$ver" >/dev/null 2>"$dl/err") \
            || { cat "$dl/err" >&2; rm -rf "$dl"; die "apt-get download $pkg failed"; }
        _kernel_unpack "$(ls "$dl"/*.deb | head -1)" "$dest"
        rm -rf "$dl"
        # keep only the newest two kernels in the cache
        ls -d "$CACHE_DIR"/kernel/linux-image-* 2>/dev/null | sort -V | head -n -2 | xargs -r rm -rf
    fi
    _kernel_use_dir "$dest"
}

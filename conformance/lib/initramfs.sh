# shellcheck shell=bash
# Builds the guest initramfs: static busybox, nvme-cli, fio, util-linux blkdiscard with
# their shared libraries (found with ldd), the kernel modules for nvme-tcp / virtio-net /
# 9p (dependencies resolved from modules.dep) and guest/init.
# Cached in $CACHE_DIR/initramfs, keyed by every input; rebuilt when one changes.
#
# Sets: INITRAMFS

# Modules the guest loads; dependencies are added from modules.dep.
GUEST_MODULES=(virtio_pci virtio_net 9pnet_virtio 9p crc32c_generic crc32c-intel nvme-tcp)
# Shipped but not loaded at boot: Linux's own target, for the reference-target VM
# (conformance/dev/nvmet-target.sh). Listed in /etc/modules-extra.order.
GUEST_EXTRA_MODULES=(virtio_blk nvmet-tcp)
GUEST_BINARIES=(/usr/sbin/nvme /usr/bin/fio /usr/sbin/blkdiscard)
INITRAMFS_FORMAT_VERSION=3

# Print module paths (relative to lib/modules/KV) in load order.
_modules_in_order() {
    local moddir=$1; shift
    declare -A deps=() byname=() done_=()
    local line path rest name
    while IFS= read -r line; do
        path=${line%%:*}; rest=${line#*:}
        deps[$path]=$rest
        name=$(basename "$path"); name=${name%%.ko*}
        byname[$name]=$path
        byname[${name//-/_}]=$path
    done <"$moddir/modules.dep"
    _visit() {
        local p=$1 d
        [ -n "${done_[$p]:-}" ] && return
        done_[$p]=1
        for d in ${deps[$p]}; do _visit "$d"; done
        echo "$p"
    }
    local m
    for m in "$@"; do
        path=${byname[$m]:-${byname[${m//-/_}]:-}}
        [ -n "$path" ] || die "module $m not found in $moddir/modules.dep"
        _visit "$path"
    done
}

_initramfs_key() {
    {
        echo "format=$INITRAMFS_FORMAT_VERSION kernel=$KERNEL_ID"
        echo "modules=${GUEST_MODULES[*]} extra=${GUEST_EXTRA_MODULES[*]}"
        local p
        for p in busybox-static busybox nvme-cli fio util-linux libc6; do echo "$p=$(pkg_version "$p")"; done
        sha256sum /bin/busybox "${GUEST_BINARIES[@]}" | cut -c1-64
        cat "$CONF_DIR/guest/init" "$CONF_DIR/lib/initramfs.sh"
    } | short_hash
}

initramfs_build() {
    local key out root moddir kv=$KERNEL_VERSION lib bin m
    key=$(_initramfs_key)
    out=$CACHE_DIR/initramfs/initramfs-$key.cpio.zst
    INITRAMFS=$out
    if [ -s "$out" ]; then log "initramfs cached: $out"; return 0; fi
    log "building initramfs ($key)"
    mkdir -p "$CACHE_DIR/initramfs"
    root=$(mktemp -d "$CACHE_DIR/initramfs/root.XXXXXX")
    mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,lib,lib64,etc/nvme,proc,sys,dev,tmp,run,share,root,mnt}
    cp /bin/busybox "$root/bin/busybox"
    for bin in "${GUEST_BINARIES[@]}"; do
        mkdir -p "$root$(dirname "$bin")"; cp -L "$bin" "$root$bin"
        for lib in $(ldd "$bin" | awk '/=> \//{print $3} /^\t\/lib/{print $1}'); do
            [ -e "$root$lib" ] && continue
            mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"
        done
    done
    # the dynamic loader at its canonical path
    [ -e "$root/lib64/ld-linux-x86-64.so.2" ] || cp -L /lib64/ld-linux-x86-64.so.2 "$root/lib64/"
    moddir=$KERNEL_DIR/lib/modules/$kv
    mkdir -p "$root/lib/modules/$kv"
    : >"$root/etc/modules.order"
    while read -r m; do
        mkdir -p "$root/lib/modules/$kv/$(dirname "$m")"
        cp "$moddir/$m" "$root/lib/modules/$kv/$m"
        echo "/lib/modules/$kv/$m" >>"$root/etc/modules.order"
    done < <(_modules_in_order "$moddir" "${GUEST_MODULES[@]}")
    : >"$root/etc/modules-extra.order"
    while read -r m; do
        grep -qx "/lib/modules/$kv/$m" "$root/etc/modules.order" && continue
        mkdir -p "$root/lib/modules/$kv/$(dirname "$m")"
        cp "$moddir/$m" "$root/lib/modules/$kv/$m"
        echo "/lib/modules/$kv/$m" >>"$root/etc/modules-extra.order"
    done < <(_modules_in_order "$moddir" "${GUEST_EXTRA_MODULES[@]}")
    cp "$CONF_DIR/guest/init" "$root/init"; chmod 0755 "$root/init"
    echo "root:x:0:0:root:/root:/bin/sh" >"$root/etc/passwd"
    echo "root:x:0:" >"$root/etc/group"
    (cd "$root" && find . -print0 | cpio --null -o -H newc --quiet) | zstd -q -T0 -6 -o "$out.tmp" \
        || die "cpio/zstd failed"
    mv "$out.tmp" "$out"
    rm -rf "$root"
    # drop stale images
    find "$CACHE_DIR/initramfs" -name 'initramfs-*.cpio.zst' ! -name "$(basename "$out")" -delete
    log "initramfs: $out ($(du -h "$out" | cut -f1))"
}

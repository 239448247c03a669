# vmtest: the host tools it needs, and the initramfs (static busybox, stage 1
# of vmtest-init, the modules for a 9p root). Sourced by scripts/vmtest (its
# variables and log/die).
# shellcheck shell=bash

BUSYBOX=""
# True if the 64-bit ELF file has no PT_INTERP program header.
elf_is_static() {
    local f=$1 phoff phentsize phnum i type
    [ "$(od -An -c -N4 "$f" | tr -d ' ')" = '177ELF' ] || return 1
    phoff=$(od -An -tu8 -j 32 -N8 "$f" | tr -d ' ')
    phentsize=$(od -An -tu2 -j 54 -N2 "$f" | tr -d ' ')
    phnum=$(od -An -tu2 -j 56 -N2 "$f" | tr -d ' ')
    for ((i = 0; i < phnum; i++)); do
        type=$(od -An -tu4 -j $((phoff + i * phentsize)) -N4 "$f" | tr -d ' ')
        [ "$type" = 3 ] && return 1
    done
    return 0
}
find_busybox() {
    local b
    for b in /bin/busybox /usr/bin/busybox "$(command -v busybox 2>/dev/null)"; do
        [ -n "$b" ] && [ -x "$b" ] || continue
        # A dynamically linked busybox cannot run in the initramfs.
        elf_is_static "$b" || continue
        BUSYBOX=$b
        return 0
    done
    return 1
}

ensure_deps() {
    local missing=()
    command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
    find_busybox || missing+=(busybox-static)
    command -v depmod >/dev/null && command -v modprobe >/dev/null || missing+=(kmod)
    command -v xz >/dev/null || missing+=(xz-utils)
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "${VMTEST_NO_INSTALL:-0}" != 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        log "installing missing Debian packages: ${missing[*]}"
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
            apt-get update -qq >/dev/null 2>&1
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
                die "could not install ${missing[*]}"
        fi
        find_busybox || die "busybox-static is installed but no static busybox was found"
        return 0
    fi
    die "missing host packages: ${missing[*]} (apt-get install ${missing[*]})"
}


build_initramfs() {
    local modlist="" lines path name n=0 key dir
    if [ -n "$K_MODBASE" ]; then
        # "insmod /path/x.ko[.xz]" per module, dependencies first; "builtin x" skipped.
        lines=$(for m in $STAGE1_MODULES; do
            modprobe -d "$K_MODBASE" -S "$K_RELEASE" --show-depends "$m" 2>/dev/null
        done | awk '$1 == "insmod" && !seen[$2]++ {print $2}')
        modlist=$lines
    fi
    key=$( { cat "$INIT_SCRIPT"; echo "$BUSYBOX"; stat -c %s "$BUSYBOX"; echo "$modlist"; } | sha256sum | cut -c1-16)
    mkdir -p "$CACHE/initramfs" || die "cannot create $CACHE/initramfs"
    INITRAMFS=$CACHE/initramfs/$K_RELEASE-$key.cpio
    [ -f "$INITRAMFS" ] && return 0

    dir=$(mktemp -d "$CACHE/initramfs/.build.XXXXXX") || die "mktemp failed"
    TMP_CACHE_DIR=$dir
    mkdir -p "$dir"/{bin,dev,proc,sys,modules}
    cp "$BUSYBOX" "$dir/bin/busybox"
    ln -s busybox "$dir/bin/sh"
    cp "$INIT_SCRIPT" "$dir/init"
    chmod 755 "$dir/init"
    mknod -m 600 "$dir/dev/console" c 5 1 2>/dev/null
    mknod -m 666 "$dir/dev/null" c 1 3 2>/dev/null
    : >"$dir/modules/order"
    for path in $modlist; do
        n=$((n + 1))
        name=$(printf '%02d-%s' "$n" "$(basename "$path")")
        case "$path" in
        *.ko.xz) name=${name%.xz}; xz -dc "$path" >"$dir/modules/$name" ;;
        *.ko.zst) name=${name%.zst}; zstd -qdc "$path" >"$dir/modules/$name" ;;
        *.ko.gz) name=${name%.gz}; gzip -dc "$path" >"$dir/modules/$name" ;;
        *) cp "$path" "$dir/modules/$name" ;;
        esac || die "cannot copy module $path"
        echo "$name" >>"$dir/modules/order"
    done
    (cd "$dir" && find . -mindepth 1 | LC_ALL=C sort | "$BUSYBOX" cpio -o -H newc 2>/dev/null) >"$dir.cpio" ||
        die "cannot build the initramfs"
    rm -f "$CACHE/initramfs/$K_RELEASE"-*.cpio
    mv "$dir.cpio" "$INITRAMFS"
    rm -rf "$dir"
    TMP_CACHE_DIR=""
}

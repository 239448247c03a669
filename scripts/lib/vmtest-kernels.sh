# vmtest: the guest kernel (a Debian image, the host's, a path) and where its
# modules are. Sourced by scripts/vmtest (its variables and log/die).
#
# Debian's kernels come from the suite that ships the series, through a
# private sources list and package lists under $CACHE/apt/<suite>: the
# system's apt configuration is neither read nor changed.
# shellcheck shell=bash

APT_PRIVATE_ROOT=$CACHE/apt
APT_MIRROR=${VMTEST_MIRROR:-http://deb.debian.org/debian}
APT_SECURITY_MIRROR=${VMTEST_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
# shellcheck source=scripts/lib/apt-private.sh
. "$SCRIPT_DIR/lib/apt-private.sh"

suite_of() { # suite_of SERIES -> the Debian suite whose generic amd64 image we take
    case "$1" in
    5.10) echo bullseye ;;
    sid) echo sid ;;
    *) echo bookworm ;;
    esac
}

series_re() { # series_re SERIES -> regex of its generic image package names
    if [ "$1" = sid ]; then
        echo '^linux-image-[0-9]+\.[0-9]+\.[0-9]+(-[0-9]+)?(\+deb[0-9]+)?-amd64$'
    else
        echo "^linux-image-${1//./\\.}\\.[0-9]+(-[0-9]+)?(\\+deb[0-9]+)?-amd64\$"
    fi
}

newest_cached() { # newest_cached SERIES -> release already extracted in $CACHE
    local re d names=""
    re=$(series_re "$1")
    for d in "$CACHE"/*/.complete; do
        d=${d%/.complete}
        d=${d##*/}
        [[ linux-image-$d =~ $re ]] && names+=" $d"
    done
    [ -n "$names" ] || return 1
    # shellcheck disable=SC2086 # a list of words
    printf '%s\n' $names | sort -V | tail -n 1
}

# Highest generic (non-cloud, non-rt) amd64 image of a series in its suite,
# e.g. 5.10 -> 5.10.0-32-amd64, 6.12 -> 6.12.117+deb12-amd64, sid -> the newest.
resolve_series() {
    local series=$1 suite re names
    suite=$(suite_of "$series")
    re=$(series_re "$series")
    [ -d "$(apt_dir "$suite")/lists" ] || apt_update "$suite"
    names=$(apt_private "$suite" apt-cache search --names-only "$re" 2>/dev/null | awk '{print $1}')
    # Offline: the newest one already extracted.
    [ -n "$names" ] || { newest_cached "$series"; return; }
    # shellcheck disable=SC2086 # a list of words
    printf '%s\n' $names | sed 's/^linux-image-//' | sort -V | tail -n 1
}

# Release string embedded in a bzImage header (offset 0x20e points to it).
bzimage_release() {
    local f=$1 magic off
    magic=$(dd if="$f" bs=1 skip=$((0x202)) count=4 2>/dev/null)
    [ "$magic" = HdrS ] || return 1
    off=$(od -An -tu2 -j $((0x20e)) -N2 "$f" | tr -d ' ')
    dd if="$f" bs=1 skip=$((off + 0x200)) count=256 2>/dev/null | tr '\0' '\n' | head -n 1 | awk '{print $1}'
}

# Downloads and extracts linux-image-<release> of SUITE into $CACHE/<release>.
# Since 2026 sid's linux-image-<release> is a metapackage of linux-binary-
# (the image, in /usr/lib/modules/<release>/vmlinuz), linux-modules- and
# linux-base- (modules.builtin: modprobe of a built-in module fails without): the
# tree is normalised to boot/vmlinuz-<release> and lib/modules/<release>.
fetch_debian_kernel() {
    local rel=$1 suite=$2 dir=$CACHE/$1 tmp deb rc=0
    [ -f "$dir/.complete" ] && return 0
    mkdir -p "$CACHE" || die "cannot create $CACHE"
    exec 9>"$CACHE/.lock"
    flock 9
    if [ ! -f "$dir/.complete" ]; then
        log "fetching linux-image-$rel from Debian $suite (once; cached in $CACHE)"
        tmp=$(mktemp -d "$CACHE/.tmp-$rel.XXXXXX") || die "mktemp failed"
        TMP_CACHE_DIR=$tmp
        mkdir "$tmp/root"
        if apt_download "$suite" "$tmp" "linux-image-$rel"; then
            for deb in "$tmp"/*.deb; do dpkg-deb -x "$deb" "$tmp/root" || die "dpkg-deb -x $deb failed"; done
            if [ ! -f "$tmp/root/boot/vmlinuz-$rel" ]; then
                rm -f "$tmp"/*.deb
                apt_download "$suite" "$tmp" "linux-binary-$rel" "linux-modules-$rel" "linux-base-$rel" || rc=3
                for deb in "$tmp"/*.deb; do [ "$rc" = 0 ] && { dpkg-deb -x "$deb" "$tmp/root" || die "dpkg-deb -x $deb failed"; }; done
            fi
        else
            rc=3
        fi
        if [ "$rc" = 0 ]; then
            if [ -d "$tmp/root/usr/lib/modules/$rel" ] && [ ! -d "$tmp/root/lib/modules/$rel" ]; then
                mkdir -p "$tmp/root/lib/modules" && mv "$tmp/root/usr/lib/modules/$rel" "$tmp/root/lib/modules/"
            fi
            if [ ! -f "$tmp/root/boot/vmlinuz-$rel" ] && [ -f "$tmp/root/lib/modules/$rel/vmlinuz" ]; then
                mkdir -p "$tmp/root/boot" && mv "$tmp/root/lib/modules/$rel/vmlinuz" "$tmp/root/boot/vmlinuz-$rel"
            fi
            [ -f "$tmp/root/boot/vmlinuz-$rel" ] || die "no kernel image for $rel in its packages"
            depmod -b "$tmp/root" "$rel" || die "depmod failed for $rel"
            rm -rf "$dir"
            mv "$tmp/root" "$dir" && touch "$dir/.complete"
        fi
        rm -rf "$tmp"
        TMP_CACHE_DIR=""
    fi
    flock -u 9
    exec 9>&-
    return "$rc"
}

# Sets K_RELEASE, K_IMAGE, K_MODBASE (dir with lib/modules/<release>, or empty).
resolve_kernel() {
    local k=$1 rel
    K_MODBASE=""
    case "$k" in
    host)
        rel=$(uname -r)
        K_RELEASE=$rel
        K_IMAGE=/boot/vmlinuz-$rel
        [ -r "$K_IMAGE" ] ||
            die "the host kernel image is not available: $K_IMAGE does not exist (this machine runs kernel $rel without installing it in /boot); use --kernel 6.1, 6.12 or a path"
        [ -d "/lib/modules/$rel" ] && K_MODBASE=/
        ;;
    */*)
        [ -r "$k" ] || die "kernel image $k not found"
        K_IMAGE=$(realpath "$k")
        K_RELEASE=$(bzimage_release "$K_IMAGE") || die "$k is not a bzImage"
        local d
        for d in "$(dirname "$K_IMAGE")/.." / "$CACHE/$K_RELEASE"; do
            if [ -d "$d/lib/modules/$K_RELEASE" ]; then K_MODBASE=$(realpath "$d"); break; fi
        done
        [ -n "$K_MODBASE" ] ||
            log "no lib/modules/$K_RELEASE next to $k, in / or in $CACHE/$K_RELEASE: the kernel needs 9p, virtio-pci and overlayfs built in"
        ;;
    *-amd64)
        # An exact Debian release, e.g. 5.10.0-32-amd64, 6.1.0-57-amd64,
        # 6.12.117+deb12-amd64 (bookworm) or 7.2.13+deb14-amd64 (sid).
        local suite=sid
        case "$k" in 5.10.*) suite=bullseye ;; 6.1.0-* | *+deb12-*) suite=bookworm ;; esac
        fetch_debian_kernel "$k" "$suite" || { apt_update "$suite" && fetch_debian_kernel "$k" "$suite"; } ||
            die "cannot fetch linux-image-$k from Debian $suite"
        K_RELEASE=$k
        K_IMAGE=$CACHE/$k/boot/vmlinuz-$k
        K_MODBASE=$CACHE/$k
        ;;
    [0-9]*.[0-9]* | sid)
        local suite
        suite=$(suite_of "$k")
        rel=$(resolve_series "$k") && [ -n "$rel" ] || die "no Debian $suite linux-image for kernel series $k (apt-cache search found none)"
        if ! fetch_debian_kernel "$rel" "$suite"; then
            # Stale package lists, or no mirror: update, else the newest cached one.
            apt_update "$suite" && rel=$(resolve_series "$k") && fetch_debian_kernel "$rel" "$suite" ||
                { rel=$(newest_cached "$k") && log "using the cached $rel instead"; } ||
                die "cannot fetch a $k kernel"
        fi
        K_RELEASE=$rel
        K_IMAGE=$CACHE/$rel/boot/vmlinuz-$rel
        K_MODBASE=$CACHE/$rel
        ;;
    *) die "unknown --kernel $k (5.10, 6.1, 6.12, sid, a Debian release, host or a path)" ;;
    esac
}

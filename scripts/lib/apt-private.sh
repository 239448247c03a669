# Debian suites through private sources lists: each suite's sources.list and
# package lists live under $APT_PRIVATE_ROOT/<suite>, so the system's apt
# configuration is neither read nor changed. Sourced; the caller sets
# APT_PRIVATE_ROOT (and APT_MIRROR, APT_SECURITY_MIRROR to override
# deb.debian.org) and defines log().
# shellcheck shell=bash

APT_MIRROR=${APT_MIRROR:-http://deb.debian.org/debian}
APT_SECURITY_MIRROR=${APT_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

apt_dir() { echo "$APT_PRIVATE_ROOT/$1"; }

apt_opts() { # apt_opts SUITE -> the -o options of that suite's private sources list
    local d
    d=$(apt_dir "$1")
    printf '%s\n' -o "Dir::Etc::sourcelist=$d/sources.list" -o Dir::Etc::sourceparts=- \
        -o "Dir::State::Lists=$d/lists" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
}

apt_private() { # apt_private SUITE apt-get|apt-cache ARGS...
    local suite=$1 tool=$2 opts
    shift 2
    mapfile -t opts < <(apt_opts "$suite")
    "$tool" "${opts[@]}" "$@"
}

apt_update() { # apt_update SUITE
    local suite=$1 d key=/usr/share/keyrings/debian-archive-keyring.gpg
    d=$(apt_dir "$suite")
    [ "$(id -u)" = 0 ] || return 1
    mkdir -p "$d/lists/partial" || return 1
    {
        echo "deb [signed-by=$key] $APT_MIRROR $suite main"
        if [ "$suite" = bookworm ]; then
            echo "deb [signed-by=$key] $APT_MIRROR $suite-updates main"
            echo "deb [signed-by=$key] $APT_SECURITY_MIRROR $suite-security main"
        fi
    } >"$d/sources.list"
    log "updating the package lists of Debian $suite (private, in $d)"
    apt_private "$suite" apt-get update -qq >/dev/null 2>&1
}

apt_download() { # apt_download SUITE DIR PACKAGE...
    local suite=$1 dir=$2
    shift 2
    (cd "$dir" && apt_private "$suite" apt-get download -q "$@" >>"$dir/apt.log" 2>&1) || {
        log "apt-get download $* ($suite) failed: $(grep -E '^(E|W):' "$dir/apt.log" | grep -v unsandboxed | head -n 1)"
        return 1
    }
}

#!/usr/bin/env bash
# The emulated Raspberry Pi OS userland for `make arm-test`: a Debian bookworm armhf
# chroot run through qemu-user-static (binfmt_misc, F flag), made from the host's own
# Debian mirror. Needs root. Made once and cached outside the clone; reused when it is
# present and complete (the stamp names the package list it was made with).
#
#   tools/armhf/env.sh          make the environment (or reuse it) and print its path
#   ARMHF_ROOT=/elsewhere ...   keep it somewhere else (default /var/cache/edge-actors/armhf)
#   ARMHF_REBUILD=1 ...         throw the cached one away first
set -euo pipefail

ROOT=${ARMHF_ROOT:-/var/cache/edge-actors/armhf}
SUITE=bookworm
# Debian's own armhf packages: what a Raspberry Pi OS bookworm user has (numpy 1.24, Pillow 9.4).
PACKAGES=python3,python3-dev,python3-venv,python3-numpy,python3-pil,python3-yaml,gcc,libc6-dev,ca-certificates
STAMP_TEXT="$SUITE armhf minbase $PACKAGES"

say() { printf 'armhf: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot and binfmt_misc need it): sudo make arm-test"
[ "$(uname -m)" = x86_64 ] || say "warning: only checked on x86_64 hosts"

host_packages() {
    local missing=()
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    [ -x /usr/bin/qemu-arm-static ] || missing+=(qemu-user-static)
    command -v update-binfmts >/dev/null || missing+=(binfmt-support)
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing ${missing[*]} from Debian"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# qemu-arm registered with the F (fix binary) flag: the interpreter is opened when it is
# registered, so armhf programs run inside a chroot that does not contain it.
register_qemu() {
    local misc=/proc/sys/fs/binfmt_misc
    mountpoint -q "$misc" || mount -t binfmt_misc binfmt_misc "$misc" \
        || die "cannot mount binfmt_misc at $misc (a container without the privilege?)"
    [ -e "$misc/qemu-arm" ] || update-binfmts --enable qemu-arm \
        || die "update-binfmts could not register qemu-arm"
    grep -q '^enabled' "$misc/qemu-arm" || update-binfmts --enable qemu-arm
    grep -q '^flags:.*F' "$misc/qemu-arm" \
        || die "qemu-arm is registered without the F flag ($misc/qemu-arm): remove it" \
               "(update-binfmts --disable qemu-arm) and let qemu-user-static register it"
}

# The host's own Debian mirror (deb822 or one-line sources), so nothing is hard-wired here.
host_mirror() {
    local uri
    uri=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    [ -n "$uri" ] || uri=$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) {print $i; exit}}' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n1 || true)
    [ -n "$uri" ] || die "no Debian mirror found in /etc/apt/sources.list*: set ARMHF_MIRROR"
    printf '%s\n' "$uri"
}

no_mounts_under() { ! findmnt -rn -o TARGET | grep -q "^$1\(/\|$\)"; }

host_packages
register_qemu

if [ -n "${ARMHF_REBUILD:-}" ] && [ -d "$ROOT" ]; then
    no_mounts_under "$ROOT" || die "something is still mounted under $ROOT"
    rm -rf --one-file-system "$ROOT"
fi

# Packages added after the base system, through apt inside the chroot: changing this list
# installs what is new without making the base again.
# mosquitto for the MQTT bridge tests; cryptography (their certificates) has no armv7l
# wheel whose cffi dependency has one either.
EXTRA_PACKAGES="mosquitto python3-cryptography"
extras() {
    [ "$(cat "$ROOT/.edge-actors-extra" 2>/dev/null)" = "$EXTRA_PACKAGES" ] && return 0
    say "apt-get install $EXTRA_PACKAGES inside $ROOT (under emulation)"
    cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
    # No services start inside the chroot.
    printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
    chmod +x "$ROOT/usr/sbin/policy-rc.d"
    unshare --mount --propagation private /bin/bash -ec '
        mount -t proc proc "$1/proc"
        chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
            DEBIAN_FRONTEND=noninteractive /bin/sh -ec "
                apt-get update -qq
                apt-get install -y -qq --no-install-recommends $2 >/dev/null
                apt-get clean"
    ' extras "$ROOT" "$EXTRA_PACKAGES" || die "apt-get inside $ROOT failed"
    printf '%s\n' "$EXTRA_PACKAGES" >"$ROOT/.edge-actors-extra"
}

if [ -f "$ROOT/.edge-actors-complete" ] && [ "$(cat "$ROOT/.edge-actors-complete")" = "$STAMP_TEXT" ]; then
    say "reusing $ROOT"
    extras
    printf '%s\n' "$ROOT"
    exit 0
fi
[ -d "$ROOT" ] && { no_mounts_under "$ROOT" || die "something is still mounted under $ROOT"; \
                    say "$ROOT is incomplete or outdated: making it again"; rm -rf --one-file-system "$ROOT"; }

PARTIAL=$ROOT.partial
no_mounts_under "$PARTIAL" || die "something is still mounted under $PARTIAL"
rm -rf --one-file-system "$PARTIAL"
mkdir -p "$PARTIAL"
MIRROR=${ARMHF_MIRROR:-$(host_mirror)}
start=$(date +%s)
say "debootstrap first stage ($SUITE armhf, minbase + $PACKAGES) into $PARTIAL"
debootstrap --arch=armhf --foreign --variant=minbase --include="$PACKAGES" \
    "$SUITE" "$PARTIAL" "$MIRROR" >"$PARTIAL.log" 2>&1 \
    || { tail -n 20 "$PARTIAL.log" >&2; die "debootstrap (first stage) failed: $PARTIAL.log"; }
say "first stage done in $(( $(date +%s) - start )) s; second stage under emulation (slow)"
# /proc in a private mount namespace: it goes away with the process, whatever happens.
unshare --mount --propagation private /bin/bash -ec '
    mount -t proc proc "$1/proc"
    chroot "$1" /debootstrap/debootstrap --second-stage' second-stage "$PARTIAL" \
    >>"$PARTIAL.log" 2>&1 \
    || { tail -n 20 "$PARTIAL.log" >&2; die "debootstrap (second stage) failed: $PARTIAL.log"; }
rm -rf "$PARTIAL/var/cache/apt/archives/"*.deb
printf '%s\n' "$STAMP_TEXT" >"$PARTIAL/.edge-actors-complete"
mv "$PARTIAL" "$ROOT"
mv "$PARTIAL.log" "$ROOT.log"
extras
say "made $ROOT in $(( $(date +%s) - start )) s, $(du -sh --one-file-system "$ROOT" | cut -f1)"
printf '%s\n' "$ROOT"

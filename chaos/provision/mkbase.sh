#!/bin/sh
# Make a minimal Debian base image from a debootstrapped root file system and `docker import` it.
# Used when the stock debian image cannot be pulled (no container registry): the packages come
# from the Debian mirror the host's own apt sources name (chaos.provision.apt_sources finds it).
#
#   mkbase.sh MIRROR SUITE TAG [WORKDIR]      e.g. mkbase.sh <mirror URI> bookworm splitbrain-base:bookworm
#
# Needs root (debootstrap), debootstrap and a docker client.
set -eu

if [ "$#" -lt 3 ]; then
    echo "usage: $0 MIRROR SUITE TAG [WORKDIR]" >&2
    exit 2
fi
mirror=$1 suite=$2 tag=$3
workdir=${4:-${TMPDIR:-/var/tmp}}

if [ "$(id -u)" -ne 0 ]; then
    echo "mkbase.sh: debootstrap needs root (or pull debian:$suite-slim from a registry)" >&2
    exit 1
fi
command -v debootstrap >/dev/null || { echo "mkbase.sh: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }

rootfs=$(mktemp -d "$workdir/splitbrain-rootfs.XXXXXX")
cleanup() { rm -rf "$rootfs"; }
trap cleanup EXIT INT TERM

debootstrap --variant=minbase --components=main \
    --include=python3,iptables,iproute2,procps,tini \
    "$suite" "$rootfs" "$mirror"

# Smaller image, and no copy of the host's mirror list or package caches inside it.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
       "$rootfs"/var/log/*.log "$rootfs"/tmp/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
: > "$rootfs"/etc/apt/sources.list

tar --numeric-owner -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    --change 'LABEL splitbrain.base=debootstrap' \
    --message "splitbrain base: debootstrap --variant=minbase $suite" \
    - "$tag"

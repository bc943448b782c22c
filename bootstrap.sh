#!/usr/bin/env bash
# Everything splitbrain needs on a Debian machine, as root, then one job:
#
#   bash bootstrap.sh run [splitbrain run options]   set up, then a default chaos run with a report
#   bash bootstrap.sh test [pytest options]          set up, then ruff, mypy and the test suite
#   bash bootstrap.sh                                set up only
#
# Idempotent: what is already there is not installed again. Set-up steps:
#   1. Debian packages: docker.io, debootstrap, iptables, iproute2, gcc, chromium + driver, wrk, openssh-server,
#      redis-server (the Redis example), fuse3 (fusermount3, for lazy disks)
#   2. a Docker engine: dockerd started in the background when `docker info` fails
#   3. a virtualenv in .venv with splitbrain installed editable, with its test extras
#   4. the porcupine helper (Go) built into the cache
#   5. the node image (base from debootstrap when no registry answers)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"
venv="$here/.venv"
log_dir="${SPLITBRAIN_SETUP_LOGS:-/tmp/splitbrain-setup}"
mkdir -p "$log_dir"

say() { printf '[bootstrap] %s\n' "$*" >&2; }

need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        say "must run as root to install $1 (or install it yourself and re-run)"
        exit 1
    fi
}

install_debian_packages() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v iptables >/dev/null || missing+=(iptables)
    command -v ip >/dev/null || missing+=(iproute2)
    command -v cc >/dev/null || missing+=(gcc)   # builds the clock shim (chaos/provision/clockshim.c)
    [ -e /usr/include/stdio.h ] || missing+=(libc6-dev)
    command -v chromium >/dev/null || missing+=(chromium)
    command -v chromedriver >/dev/null || missing+=(chromium-driver)
    command -v wrk >/dev/null || missing+=(wrk)
    command -v etcd >/dev/null || missing+=(etcd-server)   # for the etcd example (examples/etcd)
    command -v redis-server >/dev/null || missing+=(redis-server)
    [ -x /usr/sbin/sshd ] || missing+=(openssh-server)   # the SSH hosts of tests/test_provision_ssh.py
    command -v fusermount3 >/dev/null || missing+=(fuse3)   # lazy disks (chaos.lazydisk): unmounting
    python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
    if ! command -v go >/dev/null && [ ! -x /usr/local/go/bin/go ]; then
        missing+=(golang-go)
    fi
    if [ ${#missing[@]} -gt 0 ]; then
        need_root "${missing[*]}"
        say "installing Debian packages: ${missing[*]}"
        apt-get update >"$log_dir/apt-update.log" 2>&1
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" \
            >"$log_dir/apt-install.log" 2>&1 || { tail -20 "$log_dir/apt-install.log" >&2; exit 1; }
    fi
}

start_docker() {
    if docker info >/dev/null 2>&1; then
        return
    fi
    need_root "a Docker engine"
    say "starting dockerd in the background (log: $log_dir/dockerd.log)"
    nohup dockerd >"$log_dir/dockerd.log" 2>&1 &
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && return
        sleep 1
    done
    say "dockerd did not come up within 60 s; docker info says:"
    docker info >&2 || true
    tail -20 "$log_dir/dockerd.log" >&2 || true
    exit 1
}

install_python_package() {
    if [ ! -x "$venv/bin/python" ]; then
        say "creating $venv"
        python3 -m venv "$venv"
    fi
    # Re-install only when a pyproject.toml changed since the last install. The example
    # plug-ins (examples/*) are installed as a user's own package would be: editable, each
    # found through its entry points.
    local stamp="$venv/.splitbrain-installed" changed=0 project
    for project in pyproject.toml examples/*/pyproject.toml; do
        [ -f "$stamp" ] && [ ! "$project" -nt "$stamp" ] || changed=1
    done
    if [ "$changed" = 1 ]; then
        say "installing splitbrain, its test extras and the examples into $venv"
        "$venv/bin/python" -m pip install --quiet --upgrade pip >"$log_dir/pip.log" 2>&1 || true
        local args=(-e ".[test]")
        for project in examples/*/pyproject.toml; do args+=(-e "$(dirname "$project")"); done
        "$venv/bin/python" -m pip install --quiet "${args[@]}" >>"$log_dir/pip.log" 2>&1 \
            || { tail -30 "$log_dir/pip.log" >&2; exit 1; }
        touch "$stamp"
    fi
}

build_artifacts() {
    [ -x /usr/local/go/bin/go ] && export PATH="$PATH:/usr/local/go/bin"
    say "building the porcupine helper"
    "$venv/bin/python" -m checkers.porcupine --build >&2
    say "building the node image"
    "$venv/bin/splitbrain" image build >&2
}

install_debian_packages
start_docker
install_python_package
build_artifacts

job="${1:-}"
[ $# -gt 0 ] && shift
case "$job" in
    "") say "set-up done" ;;
    run)
        exec "$venv/bin/splitbrain" run --nodes 5 --workload register --nemesis all --time-limit 60 "$@" ;;
    test)
        # The linters first (seconds; configured in pyproject.toml): a finding fails the job.
        say "ruff check and mypy"
        "$venv/bin/ruff" check --no-cache . >&2
        "$venv/bin/mypy" >&2
        exec "$venv/bin/python" -m pytest -p no:cacheprovider --timeout 900 -ra "$@" ;;
    *)
        say "unknown job '$job' (expected: run, test, or nothing)"; exit 2 ;;
esac

#!/bin/sh
# deps.sh [build|run|test|fuzz] — make sure the Debian packages cmdbd needs are installed.
#
#   build  what `make` needs (compiler, headers, Check)
#   run    build + the PostgreSQL 15 server (`make run`)            [default]
#   test   run + what the end-to-end tests drive (`make test`)
#   fuzz   build + clang, its sanitizer and libFuzzer runtimes (libclang-rt-14-dev ships
#          libclang_rt.fuzzer) and llvm-symbolizer (llvm-14) for readable traces (`make fuzz`)
#
# Silent when nothing is missing. As root the missing packages are installed with
# apt-get (non-interactive); otherwise the exact apt-get line is printed and the
# script exits 1, so a developer can run it with sudo and try again.
set -eu

what=${1:-run}

build_pkgs="build-essential pkg-config libevent-dev libjansson-dev uuid-dev libpq-dev check libcurl4-openssl-dev"
run_pkgs="postgresql-15 postgresql-client-15"
fuzz_pkgs="clang libclang-rt-14-dev llvm-14"
test_pkgs="python3 python3-jsonschema python3-yaml python3-networkx fabric ruby capistrano graphviz curl procps git nagios4-core"

case $what in
build) pkgs=$build_pkgs ;;
run) pkgs="$build_pkgs $run_pkgs" ;;
test) pkgs="$build_pkgs $run_pkgs $test_pkgs" ;;
fuzz) pkgs="$build_pkgs $fuzz_pkgs" ;;
*)
    echo "usage: $0 [build|run|test|fuzz]" >&2
    exit 2
    ;;
esac

# A package counts as present only when dpkg says "install ok installed"; a removed
# package whose config files linger, or one dpkg has never heard of, is missing.
missing=""
for p in $pkgs; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    if [ "$status" != "install ok installed" ]; then
        missing="$missing $p"
    fi
done
missing=${missing# }
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "cmdbd: missing Debian packages: $missing" >&2
    echo "install them with:" >&2
    echo "    sudo apt-get install -y $missing" >&2
    exit 1
fi

echo "cmdbd: installing missing Debian packages: $missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt_install() {
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    apt-get install -y -q --no-install-recommends $missing </dev/null
}
# The package lists may be empty (fresh container) or stale (a package moved to a new
# version): refresh them once and retry before giving up.
if ! apt_install; then
    echo "cmdbd: apt-get install failed; running apt-get update and retrying" >&2
    apt-get update -q </dev/null
    apt_install
fi

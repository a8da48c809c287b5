#!/bin/sh
# load-estate.sh [DIR] — POST every manifest in DIR (default: examples/manifests next to
# this script) to a running cmdbd, one source per file, and print each apply report.
#
#   CMDB_URL    server base URL          (default http://127.0.0.1:8080, as `make run`)
#   CMDB_TOKEN  a write or admin token   (default: the contents of .cmdb/admin.token in
#                                         the project root, written by `make run`)
#
# Exits non-zero on the first manifest the server refuses, after printing its error body.
# Re-running is safe: an unchanged manifest is a no-op for the server.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
dir=${1:-$here/manifests}
url=${CMDB_URL:-http://127.0.0.1:8080}

if [ -z "${CMDB_TOKEN:-}" ]; then
    if [ -r "$root/.cmdb/admin.token" ]; then
        CMDB_TOKEN=$(cat "$root/.cmdb/admin.token")
    else
        echo "load-estate: set CMDB_TOKEN or run 'make run' first (no $root/.cmdb/admin.token)" >&2
        exit 2
    fi
fi

command -v curl >/dev/null || { echo "load-estate: curl is required (apt-get install curl)" >&2; exit 2; }

n=0
for f in "$dir"/*.json; do
    [ -e "$f" ] || { echo "load-estate: no *.json in $dir" >&2; exit 2; }
    printf '%s: ' "$(basename "$f")"
    # The token goes through a header file on stdin so it never shows in `ps`.
    # --fail-with-body: a 4xx/5xx makes curl exit 22 but still print the JSON error.
    if ! printf 'Authorization: Bearer %s\n' "$CMDB_TOKEN" |
        curl --silent --show-error --fail-with-body \
            -H @- -H 'Content-Type: application/json' \
            --data-binary "@$f" "$url/v1/manifests"; then
        echo
        echo "load-estate: $f was refused by $url" >&2
        exit 1
    fi
    echo
    n=$((n + 1))
done
echo "load-estate: $n manifests applied to $url"

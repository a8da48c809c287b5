#!/bin/sh
# load-estate.sh [DIR] — POST every manifest in DIR (default: examples/manifests next to
# this script) to a running cmdbd, one source per file, and print each apply report.
#
#   CMDB_URL    server base URL          (default http://127.0.0.1:8080, as `make run`)
#   CMDB_TOKEN  a write or admin token   (default: the contents of .cmdb/admin.token in
#                                         the project root, written by `make run`)
#
# Exits non-zero on the first manifest the server refuses, after printing its error body.
# Re-running is safe: an unchanged manifest is a no-op for the server, and a manifest
# older than what its source has sent since (409) is skipped with a note.
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

body=$(mktemp)
trap 'rm -f "$body"' EXIT

n=0
stale=0
for f in "$dir"/*.json; do
    [ -e "$f" ] || { echo "load-estate: no *.json in $dir" >&2; exit 2; }
    # The token goes through a header read from stdin so it never shows in `ps`.
    if ! status=$(printf 'Authorization: Bearer %s\n' "$CMDB_TOKEN" |
        curl --silent --show-error -o "$body" -w '%{http_code}' \
            -H @- -H 'Content-Type: application/json' \
            --data-binary "@$f" "$url/v1/manifests"); then
        echo "load-estate: cannot reach $url" >&2
        exit 1
    fi
    case $status in
    2??)
        printf '%s: %s\n' "$(basename "$f")" "$(cat "$body")"
        n=$((n + 1))
        ;;
    409)
        # The source has sent a newer generation since (e.g. a real deploy of that
        # service): keep the newer data, which is what 409 protects.
        printf '%s: skipped, the server has newer data from this source: %s\n' \
            "$(basename "$f")" "$(cat "$body")"
        stale=$((stale + 1))
        ;;
    *)
        printf '%s: HTTP %s %s\n' "$(basename "$f")" "$status" "$(cat "$body")" >&2
        echo "load-estate: $f was refused by $url" >&2
        exit 1
        ;;
    esac
done
note=""
[ "$stale" -eq 0 ] || note=", $stale skipped as older than the server's"
echo "load-estate: $n manifests applied to $url$note"

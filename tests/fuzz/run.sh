#!/bin/bash
# run.sh TARGET... — runs the libFuzzer targets built by `make fuzz` (tests/fuzz/README.md).
#
# For each target: first every saved input once — tests/fuzz/regressions/TARGET/ (inputs
# that once crashed) and the seeds — then fuzzing for FUZZ_SECONDS (default 60) from the
# working corpus build/fuzz/corpus/TARGET/, which the seeds start and which keeps growing
# from run to run (the checked-in seeds are never written to). A crash, leak, UB report,
# failed check or timeout (> 10 s for one input) leaves the input in
# build/fuzz/artifacts/TARGET/ and fails the run; the other targets still run.
# Prints one line per target: executions, CPU seconds, coverage (cov: edges, ft:
# features) and corpus size, as libFuzzer reports them.
set -u
cd "$(dirname "$0")/../.."

bin=${FUZZ_BUILD_DIR:-build/fuzz}
secs=${FUZZ_SECONDS:-60}
here=tests/fuzz
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# Seeds kept elsewhere in the tree: the example manifests are real ones.
extra_seeds() {
    case $1 in
    json | manifest) echo examples/manifests ;;
    esac
}

[ $# -gt 0 ] || { echo "usage: $0 TARGET..." >&2; exit 2; }
failed=0
summary=""
for t in "$@"; do
    exe=$bin/fuzz_$t
    [ -x "$exe" ] || { echo "run.sh: $exe is not built (make fuzz-build)" >&2; exit 2; }
    work=$bin/corpus/$t
    art=$bin/artifacts/$t
    log=$bin/fuzz_$t.log
    mkdir -p "$work" "$art"
    seeds=("$here/corpus/$t")
    for d in $(extra_seeds "$t"); do seeds+=("$d"); done
    dict=()
    [ -f "$here/dict/$t.dict" ] && dict=("-dict=$here/dict/$t.dict")

    # Every saved input once: a fixed crash stays fixed, every seed still runs clean.
    replay=()
    for d in "$here/regressions/$t" "${seeds[@]}"; do
        [ -d "$d" ] && while IFS= read -r f; do replay+=("$f"); done < <(find "$d" -type f | sort)
    done
    if [ ${#replay[@]} -gt 0 ] &&
        ! "$exe" -timeout=10 "${replay[@]}" >"$bin/fuzz_$t.replay.log" 2>&1; then
        echo "FAIL $t: a saved input fails (see $bin/fuzz_$t.replay.log):" >&2
        tail -n 30 "$bin/fuzz_$t.replay.log" >&2
        failed=1
        summary+=$(printf '%-9s %s' "$t" "FAILED on a saved input")$'\n'
        continue
    fi

    echo "fuzz_$t: ${secs}s (log: $log)"
    TIMEFORMAT='%U %S'
    { time "$exe" -max_total_time="$secs" -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$art/" "${dict[@]}" "$work" "${seeds[@]}" >"$log" 2>&1; } 2>"$log.time"
    rc=$?
    read -r usr sys <"$log.time"
    cpu=$(awk -v u="$usr" -v s="$sys" 'BEGIN { printf "%.1f", u + s }')
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$last")
    result=ok
    if [ $rc -ne 0 ]; then
        result="FAILED (exit $rc; input in $art/)"
        failed=1
        grep -E 'ERROR|SUMMARY|check failed|runtime error' "$log" | head -n 10 >&2
    fi
    summary+=$(printf '%-9s runs %-10s cpu %7ss  cov %-5s ft %-6s corpus %-6s %s' \
        "$t" "${runs:-?}" "$cpu" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result")$'\n'
done
echo
echo "make fuzz: ${secs}s per target"
printf '%s' "$summary"
if [ $failed -ne 0 ]; then
    echo "make fuzz: FAILED — see the logs and artifacts in $bin/" >&2
    exit 1
fi

#!/usr/bin/env bash
# Runs every cargo-fuzz target for a fixed number of executions and prints a markdown table of
# executed units, wall time and result (the table in fuzz/README.md comes from this script).
#
#   fuzz/run-counts.sh                 # every target in `cargo +nightly fuzz list`
#   fuzz/run-counts.sh pef_lifecycle   # only the named targets
#   RUNS=100000 fuzz/run-counts.sh     # fewer executions (default 1000000)
#   LOG_DIR=/tmp/logs fuzz/run-counts.sh   # keep libFuzzer's logs there (default: a temp dir)
#   JOBS=2 fuzz/run-counts.sh          # run that many targets at the same time (default 1)
#
# New inputs go to a scratch corpus in a temp dir; the checked-in seeds in corpus/<t> are only
# read. A crash leaves its input in fuzz/artifacts/<t>/ (cargo-fuzz's default) and the script
# exits non-zero after printing the table. Needs the nightly toolchain and cargo-fuzz
# (`cargo +nightly install cargo-fuzz --locked`).
set -uo pipefail
cd "$(dirname "$0")"

runs=${RUNS:-1000000}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
logs=${LOG_DIR:-$work/logs}
mkdir -p "$logs"

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

# Build everything once up front so the timings below measure fuzzing, not compiling.
if ! cargo +nightly fuzz build >"$logs/build.log" 2>&1; then
    tail -n 40 "$logs/build.log"
    echo "FAIL: cargo +nightly fuzz build" >&2
    exit 1
fi

# One target: its table row goes to $work/rows/<t>, a note to stderr.
run_one() {
    local t=$1 start result artifact secs execs rss
    mkdir -p "$work/corpus/$t" "corpus/$t"
    start=$(date +%s)
    if cargo +nightly fuzz run "$t" "$work/corpus/$t" "corpus/$t" -- \
        -runs="$runs" -rss_limit_mb=2048 -print_final_stats=1 >"$logs/$t.log" 2>&1; then
        result=ok
    elif grep -q 'libFuzzer: run interrupted' "$logs/$t.log"; then
        result="interrupted (SIGINT) before $runs"
    else
        result=CRASH
        artifact=$(grep -oE 'Test unit written to [^ ]+' "$logs/$t.log" | tail -n 1 | cut -d' ' -f5)
        [ -n "$artifact" ] && result="CRASH (${artifact#../})"
    fi
    secs=$(($(date +%s) - start))
    execs=$(grep -E '^stat::number_of_executed_units' "$logs/$t.log" | tail -n 1 | awk '{print $2}')
    rss=$(grep -E '^stat::peak_rss_mb' "$logs/$t.log" | tail -n 1 | awk '{print $2}')
    echo "| \`$t\` | ${execs:-?} | ${secs} | ${rss:-?} | $result |" >"$work/rows/$t"
    echo "done: $t ${execs:-?} execs in ${secs}s: $result" >&2
}

mkdir -p "$work/rows"
jobs=${JOBS:-1}
for t in "${targets[@]}"; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
        wait -n || true
    done
    run_one "$t" &
done
wait

echo "| target | executions | wall time (s) | peak RSS (MB) | result |"
echo "|---|---:|---:|---:|---|"
failed=0
for t in "${targets[@]}"; do
    cat "$work/rows/$t"
    grep -q '| ok |$' "$work/rows/$t" || failed=1
done
echo
echo "$(date -u '+%F %T UTC'), $(nproc) cores, RUNS=$runs, JOBS=$jobs, $(cargo +nightly --version)"
[ -z "${LOG_DIR:-}" ] || echo "logs: $logs"
exit $failed

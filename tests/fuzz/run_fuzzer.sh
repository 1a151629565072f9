#!/usr/bin/env bash
# Run one libFuzzer harness for a bounded time: ctest's fuzz_<name>.
#
#   run_fuzzer.sh NAME BINARY SEEDS SECONDS ARTIFACTS
#       Fuzz from the seed corpus SEEDS (read only; new inputs go to a
#       scratch corpus in a tmpfs) for SECONDS, with the harness's scratch
#       files (REWIND_FUZZ_TMP) in the same tmpfs. Prints one summary line,
#       "fuzz_NAME: N runs in T s (R exec/s), ...", and libFuzzer's DONE line;
#       on a crash, a broken contract or a sanitizer report, the end of the
#       log and the input saved under ARTIFACTS, and fails.
#   run_fuzzer.sh --skip NAME REASON
#       The fuzzers could not be built (REASON says why): skipped (exit 77)
#       on a user's machine, a failure in CI (CI=true or REWIND_REQUIRE_KVM
#       set), where they must run.
set -u

if [ "${1:-}" = --skip ]; then
	name=$2 reason=$3
	if [ "${CI:-}" = true ] || [ -n "${REWIND_REQUIRE_KVM+set}" ]; then
		echo "fuzz_$name: FAILED: $reason; the fuzz tests are required here" \
			"(CI=true or REWIND_REQUIRE_KVM is set)" >&2
		exit 1
	fi
	echo "fuzz_$name: skipped: $reason"
	exit 77
fi

if [ $# -ne 5 ]; then
	echo "usage: run_fuzzer.sh NAME BINARY SEEDS SECONDS ARTIFACTS | --skip NAME REASON" >&2
	exit 2
fi
name=$1 bin=$2 seeds=$3 secs=$4 artifacts=$5

if [ ! -x "$bin" ]; then
	echo "fuzz_$name: $bin is missing (was the build run?)" >&2
	exit 1
fi
base=/dev/shm
[ -d "$base" ] && [ -w "$base" ] || base=${TMPDIR:-/tmp}
work=$(mktemp -d "$base/rewind-fuzz-$name.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus" "$artifacts" || exit 1

# One CPU, the one this script runs on: a single-threaded fuzzer loses
# nothing, and the memory maps ASan makes and drops (large allocations) then
# need no TLB shootdown on the other CPUs, which costs a lot under PVM.
pin=()
cpu=$(awk '{print $39}' /proc/self/stat 2>/dev/null)
if command -v taskset >/dev/null && [ -n "$cpu" ] && taskset -c "$cpu" true 2>/dev/null; then
	pin=(taskset -c "$cpu")
fi

start=$(date +%s)
REWIND_FUZZ_TMP=$work TMPDIR=$work "${pin[@]}" "$bin" \
	-max_total_time="$secs" -rss_limit_mb=2048 -timeout=30 -print_final_stats=1 \
	-artifact_prefix="$artifacts/$name-" "$work/corpus" "$seeds" >"$work/log" 2>&1
rc=$?
end=$(date +%s)

if [ $rc -ne 0 ]; then
	tail -n 120 "$work/log"
	echo
	echo "fuzz_$name: FAILED (exit $rc) after $((end - start)) s; the input that failed is" \
		"under $artifacts/$name-*; replay it with: $bin <file>"
	exit 1
fi

runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log")
done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$work/log" | tail -n 1)
corpus=$(find "$work/corpus" -type f | wc -l)
if [ -z "$runs" ]; then
	tail -n 40 "$work/log"
	echo "fuzz_$name: FAILED: no statistics in libFuzzer's output"
	exit 1
fi
took=$((end - start))
[ "$took" -gt 0 ] || took=1
echo "$done_line"
echo "fuzz_$name: $runs runs in $took s ($((runs / took)) exec/s), $corpus new corpus inputs, no crash"

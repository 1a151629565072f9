#!/usr/bin/env bash
# afl.sh BUILD_DIR loads|crash [sanitize] - Debian's afl-fuzz drives a
# rewind guest through BUILD_DIR/nyx/libnyx.so (README "Fuzzing with AFL++").
#
#  loads (no VM): afl-fuzz -X loads libnyx.so, resolves what it needs and
#     hands it the share directory: a share directory without its
#     rewind.json is refused with a line naming that file.
#  crash (KVM): afl-fuzz -X fuzzes the coverage example tlv until it saves a
#     crash (AFL_BENCH_UNTIL_CRASH, bounded by -V and a timeout); then
#     `rewind fuzz-replay` runs the saved input from the snapshot again and
#     must end in the same crash: its line equals the crash's .log, which
#     afl-fuzz wrote from libnyx's aux string.
#
# Exit 0 passed, 1 failed, 77 skipped: no afl-fuzz, or no /dev/kvm for
# crash unless REWIND_REQUIRE_KVM is set (then that fails).
set -euo pipefail

build=$(cd "$1" && pwd)
mode=$2
sanitize=${3:-}
rewind=$build/rewind
work=$(mktemp -d "${TMPDIR:-/tmp}/rewind-afl.XXXXXX")
trap 'rm -rf "$work"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*" >&2; exit 77; }

if ! command -v afl-fuzz >/dev/null; then
	# CI installs afl++: there its absence is a failure, elsewhere a skip
	[ -n "${REWIND_REQUIRE_KVM:-}" ] && fail "afl-fuzz is not installed (apt-get install afl++)"
	skip "afl-fuzz is not installed (apt-get install afl++)"
fi
[ -x "$rewind" ] && [ -r "$build/nyx/libnyx.so" ] || fail "build $build first (rewind, nyx/libnyx.so)"

export AFL_PATH=$build/nyx AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1
if [ "$sanitize" = sanitize ]; then
	# libnyx.so is built with ASan and UBSan; afl-fuzz is not: their
	# run-times have to be loaded first
	export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
	export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:symbolize=0
fi

mkdir -p "$work/in"

# afl-fuzz loads libnyx.so and hands it the share directory
loads() {
	"$rewind" fuzz-share "$work/broken" --kernel "$build/guest/fuzzme.elf" >/dev/null
	rm "$work/broken/rewind.json"
	printf 'AAAA' > "$work/in/seed"
	timeout 120 afl-fuzz -X -i "$work/in" -o "$work/out" -- "$work/broken" > "$work/afl.log" 2>&1 || true
	grep -aq "libnyx plugin is ready" "$work/afl.log" ||
		{ cat "$work/afl.log" >&2; fail "afl-fuzz did not load $AFL_PATH/libnyx.so"; }
	grep -aq "libnyx (rewind): .*$work/broken/rewind.json: missing" "$work/afl.log" ||
		{ cat "$work/afl.log" >&2; fail "libnyx.so did not name the missing rewind.json"; }
	echo "PASS: afl-fuzz loaded libnyx.so, which refused the broken share directory"
}

case $mode in
loads) loads; exit 0 ;;
crash) ;;
*) fail "mode must be loads or crash" ;;
esac

# A crash found by afl-fuzz, and replayed.
if [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
	[ -n "${REWIND_REQUIRE_KVM:-}" ] && fail "/dev/kvm is missing and REWIND_REQUIRE_KVM is set"
	skip "/dev/kvm is missing: afl-fuzz cannot run a guest here"
fi
tlv=$build/guest/tlv.elf
[ -r "$tlv" ] || fail "$tlv is missing: the coverage-instrumented example target"

"$rewind" fuzz-share "$work/share" --kernel "$tlv" --payload-size 4096 --timeout 1000
# seeds (format in guest/programs/tlv_parse.h): an INT and a NAME record,
# and a VENDOR record one nibble away from the planted "RWND" bug
printf '\x01\x01\x05\x02\x03abc' > "$work/in/records"
printf '\x7e\x04RWNC' > "$work/in/vendor"
set +e
AFL_BENCH_UNTIL_CRASH=1 timeout 400 afl-fuzz -X -V 300 -i "$work/in" -o "$work/out" -- "$work/share" \
	> "$work/afl.log" 2>&1
rc=$?
set -e
crash=$(find "$work/out" -path '*/crashes/id:*' ! -name '*.log' | sort | head -n 1)
if [ -z "$crash" ]; then
	tail -n 40 "$work/afl.log" >&2
	fail "afl-fuzz (exit $rc) saved no crash within its time"
fi
[ -r "$crash.log" ] || fail "afl-fuzz wrote no $crash.log (libnyx's aux string)"
aux=$(cat "$crash.log")
echo "afl-fuzz saved $(basename "$crash"): $aux"
case $aux in
crash:*) ;;
*) fail "the aux string of a crash says: $aux" ;;
esac

set +e
replay=$("$rewind" fuzz-replay "$work/share" "$crash")
status=$?
set -e
echo "fuzz-replay: $replay (exit $status)"
[ "$status" -eq 3 ] || fail "fuzz-replay exited $status, not 3 (a crash)"
[ "$replay" = "$crash: $aux" ] || fail "the replay ended differently: '$replay' vs '$aux'"
echo "PASS: the crash afl-fuzz found replays to the same crash"

#!/bin/sh
# tlv-native-check.sh TLV_NATIVE
#
# Checks the native build of the fuzzing example's parser (programs/
# tlv_parse.c): its built-in sample parses, and each planted bug really
# crashes the process (no result line, a non-zero status: a signal, or a
# sanitizer's report in a sanitized build).
set -u
bin=$1
fail=0

out=$("$bin" --sample | "$bin" -)
if [ "$out" != "records 9 depth 1 sum 49 name seeds" ]; then
	echo "tlv-native-check: sample: got '$out'" >&2
	fail=1
fi

crashes() {
	name=$1
	shift
	out=$(printf "$@" | "$bin" - 2>/dev/null)
	status=$?
	if [ "$status" -eq 0 ] || [ -n "$out" ]; then
		echo "tlv-native-check: $name: no crash (status $status, output '$out')" >&2
		fail=1
	fi
}

# VENDOR "RWND": TLV_BUG, __builtin_trap() natively.
crashes magic '\176\005RWNDx'
# An oversized first fragment is dropped, the next one is copied to NULL + 7.
crashes null '\005\003\000\000\003\005\004\007\000\000zz'

[ "$fail" -eq 0 ] && echo "tlv-native-check: ok"
exit "$fail"

#!/bin/sh
# check-cpl0.sh OBJDUMP NM FILE [SECTION] [STAMP]
#
# Fails if the CPL0 code in FILE uses an instruction the PVM emulator lacks
# or that would touch FP/SIMD state: SSE/AVX/x87 (any xmm/ymm/zmm/st/mm/k
# register, any f* or v* mnemonic), XSAVE family, xgetbv/xsetbv,
# ldmxcsr/stmxcsr, emms, int3/int n/int1/into, rdtscp, rdpid, cmpxchg16b,
# endbr64, VEX-encoded BMI. SECTION (default: every code section) selects
# what to disassemble, e.g. .ktext of a linked image. For a relocatable
# kernel object (no SECTION) it also checks that the only undefined symbol
# is rw_user_entry, so CPL0 code cannot call into CPL3 library code (which
# may use SSE). On success, touches STAMP if given.
set -eu

objdump=$1
nm=$2
file=$3
section=${4:-}
stamp=${5:-}

if [ -n "$section" ]; then
	dis=$("$objdump" -d --no-show-raw-insn -j "$section" "$file")
else
	dis=$("$objdump" -d --no-show-raw-insn "$file")
fi

bad=$(printf '%s\n' "$dis" | awk '
	/^ *[0-9a-f]+:\t/ {
		line = $0
		sub(/^ *[0-9a-f]+:\t/, "", line)
		n = split(line, w, /[ \t]+/)
		i = 1
		while (i < n && w[i] ~ /^(lock|rep|repz|repnz|repe|repne|data16|addr32|cs|ds|es|ss|fs|gs|notrack|bnd|rex(\.[WRXB]+)?)$/)
			i++
		m = w[i]
		if (m ~ /^(f|v)[a-z0-9]/ || m ~ /^(xsave|xrstor|fxsave|fxrstor)/ ||
		    m ~ /^(xgetbv|xsetbv|ldmxcsr|stmxcsr|emms|wait|int|int1|int3|into|icebp|rdtscp|rdpid|cmpxchg16b|endbr64|endbr32)$/ ||
		    m ~ /^(andn|bextr|blsi|blsmsk|blsr|bzhi|mulx|pdep|pext|rorx|sarx|shlx|shrx|movnti|popcnt|lzcnt|tzcnt|crc32|movbe)$/ ||
		    line ~ /%(xmm|ymm|zmm|st|mm[0-7]|k[0-7])/)
			print "  " $0
	}')

if [ -n "$bad" ]; then
	echo "check-cpl0: $file: instructions the CPL0 emulator cannot run (or that touch FP/SIMD state):" >&2
	printf '%s\n' "$bad" >&2
	exit 1
fi

if [ -z "$section" ]; then
	undef=$("$nm" -u "$file" | awk '{ print $NF }' | grep -v '^rw_user_entry$' || true)
	if [ -n "$undef" ]; then
		echo "check-cpl0: $file: CPL0 code refers to symbols outside the kernel:" >&2
		printf '  %s\n' $undef >&2
		exit 1
	fi
fi

if [ -n "$stamp" ]; then
	: > "$stamp"
fi

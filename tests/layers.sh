#!/usr/bin/env bash
# layers.sh SRC_DIR - list every include edge between rewind's folders and
# fail on one that points up the layers (README "Layout").
#
#   4  programs, bench     the rewind CLI and rewind-bench
#   3  ckpt                checkpoints, restore, rollback, reset, librewind
#   2  devices             device descriptors and the content they own
#   1  store, vmm          side by side: neither may include the other
#   0  base                errors, logging, utilities, codec, record format
#
# A folder may include its own headers, those of the folders it builds on
# (below: what its library links, so the build agrees) and the guest ABI
# (rw/abi.h). Devices build on the VMM, not on the store. Each quoted include is resolved by name against the
# folders; a header name found in two folders is an error too, since the
# build could then pick either. Prints one line per edge with its count,
# then every violation with file and line. Exit 0 when there is none.
set -euo pipefail

src=${1:-$(dirname "$0")/..}
cd "$src"

declare -A rank=([base]=0 [store]=1 [vmm]=1 [devices]=2 [ckpt]=3 [programs]=4 [bench]=4)
declare -A uses=(
	[base]=""
	[store]="base"
	[vmm]="base"
	[devices]="vmm base"
	[ckpt]="devices store vmm base"
	[programs]="ckpt devices store vmm base"
	[bench]="ckpt devices store vmm base"
)
folders="base store vmm devices ckpt programs bench"

# header name -> folder
declare -A owner
dup=0
for f in $folders; do
	[ -d "$f" ] || { echo "layers: folder $f is missing" >&2; exit 1; }
	for h in "$f"/*.h; do
		[ -e "$h" ] || continue
		n=${h##*/}
		if [ -n "${owner[$n]:-}" ]; then
			echo "layers: header $n is in both ${owner[$n]}/ and $f/" >&2
			dup=1
		fi
		owner[$n]=$f
	done
done

declare -A edges
bad=0
for f in $folders; do
	for file in "$f"/*.[ch]; do
		[ -e "$file" ] || continue
		while IFS=: read -r line inc; do
			inc=${inc#*\"}
			inc=${inc%%\"*}
			case "$inc" in
			rw/*) to=guest-abi ;;
			*/*) to=path ;;
			*) to=${owner[$inc]:-unknown} ;;
			esac
			if [ "$to" = unknown ] || [ "$to" = path ]; then
				echo "layers: $file:$line: #include \"$inc\" names no header of a layer folder" >&2
				bad=1
				continue
			fi
			[ "$to" = "$f" ] && continue
			edges["$f -> $to"]=$(( ${edges["$f -> $to"]:-0} + 1 ))
			if [ "$to" != guest-abi ] && [[ " ${uses[$f]} " != *" $to "* ]]; then
				echo "layers: $file:$line: $f (layer ${rank[$f]}) includes $to/$inc (layer ${rank[$to]})" >&2
				bad=1
			fi
		done < <(grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$file" || true)
	done
done

for e in "${!edges[@]}"; do
	printf '%s (%d)\n' "$e" "${edges[$e]}"
done | sort
if [ $bad -ne 0 ] || [ $dup -ne 0 ]; then
	echo "layers: FAILED: an include points up or sideways, or is ambiguous" >&2
	exit 1
fi
echo "layers: every include edge points down"

#!/usr/bin/env bash
# install_harness.sh BUILD_DIR [CFLAGS] - install rewind into a scratch prefix, build
# a harness the way the README says (pkg-config librewind), and run it: the
# installed library must load without any ldconfig or LD_LIBRARY_PATH step,
# and so must the installed libnyx.so (afl-fuzz's Nyx mode loads it).
set -euo pipefail

build=$1
cflags=${2:-}   # the sanitizer flags when the build has them
prefix=$(mktemp -d "${TMPDIR:-/tmp}/rewind-install.XXXXXX")
trap 'rm -rf "$prefix"' EXIT

cmake --install "$build" --prefix "$prefix" >/dev/null
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig:$prefix/lib/$(gcc -print-multiarch 2>/dev/null)/pkgconfig"
cat > "$prefix/harness.c" <<'C'
#include <dlfcn.h>
#include <rewind.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	struct rewind_config c;
	struct rewind_vm *vm;
	void *nyx;

	/* libnyx.so finds librewind beside it, as afl-fuzz loads it */
	nyx = argc > 1 ? dlopen(argv[1], RTLD_NOW | RTLD_LOCAL) : NULL;
	if (!nyx || !dlsym(nyx, "nyx_new")) {
		printf("libnyx.so did not load: %s\n", dlerror());
		return 1;
	}

	memset(&c, 0, sizeof(c));
	/* no kernel: refused before any VM exists, so no /dev/kvm is needed */
	if (rewind_create(&c, &vm) == 0)
		return 1;
	printf("librewind loaded: %s\n", rewind_strerror(-22));
	return 0;
}
C
cc $cflags "$prefix/harness.c" $(pkg-config --cflags --libs librewind) -ldl -o "$prefix/harness"
nyx=$(find "$prefix" -name libnyx.so -path '*/rewind/nyx/*')
env -u LD_LIBRARY_PATH "$prefix/harness" "$nyx"

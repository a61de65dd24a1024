#!/usr/bin/env bash
# `make test-install`: installs wdpool into a fresh temporary prefix and
# builds tests/install/abi_check.c the way a user of the installed library
# would: with nothing but what `pkg-config wdpool` says (no -I include, no
# -L target). Then:
#
# - the installed files, their symlinks and the library's SONAME
#   (libwdpool.so.<WDPOOL_ABI_VERSION of the installed header>);
# - the program linked to the shared library records NEEDED
#   libwdpool.so.<ABI version> and runs with LD_LIBRARY_PATH=<prefix>/lib;
# - the program linked to the static library (pkg-config --static) needs
#   no libwdpool at run time and runs;
# - a staged install (DESTDIR) and `make uninstall`.
#
# Prints one line per check and `test-install: N passed, M failed`; exits 1
# when a check failed. Run from the repository's top directory, with MAKE,
# and the C compiler and flags in TEST_CC and TEST_CFLAGS (not CC and
# CFLAGS: those would reach cargo through make install and rebuild
# librdkafka with them).
set -uo pipefail

MAKE=${MAKE:-make}
cc=${TEST_CC:-cc}
cflags=${TEST_CFLAGS:--std=c11 -Wall -Wextra -Wpedantic -Werror -g}
PKG_CONFIG=${PKG_CONFIG:-pkg-config}

passed=0
failed=0
pass() { echo "ok: $*"; passed=$((passed + 1)); }
fail() { echo "FAILED: $*"; failed=$((failed + 1)); }
# check DESCRIPTION COMMAND...: runs the command, quiet unless it fails.
check() {
  local what=$1 out
  shift
  if out=$("$@" 2>&1); then pass "$what"; else fail "$what"; [[ -z "$out" ]] || sed 's/^/    /' <<<"$out"; fi
}
# check_eq DESCRIPTION ACTUAL EXPECTED
check_eq() {
  if [[ "$2" == "$3" ]]; then pass "$1"; else fail "$1"; echo "    got:      '$2'"; echo "    expected: '$3'"; fi
}
finish() {
  echo "test-install: $passed passed, $failed failed"
  ((failed == 0))
  exit
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/wdpool-test-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
lib=$prefix/lib

# ------------------------------------------------------------ make install

if "$MAKE" --no-print-directory install PREFIX="$prefix" DESTDIR= LDCONFIG=true >"$tmp/install.log" 2>&1; then
  pass "make install PREFIX=$prefix"
else
  fail "make install PREFIX=$prefix"
  tail -n 30 "$tmp/install.log" | sed 's/^/    /'
  finish
fi

header=$prefix/include/wdpool.h
abi=$(sed -n 's/^#define WDPOOL_ABI_VERSION \([0-9][0-9]*\)$/\1/p' "$header" 2>/dev/null)
version=$(sed -n 's/^#define WDPOOL_VERSION "\(.*\)"$/\1/p' "$header" 2>/dev/null)
soname=libwdpool.so.$abi
real=libwdpool.so.$version
check "the installed header defines WDPOOL_ABI_VERSION ($abi) and WDPOOL_VERSION ($version)" \
  test -n "$abi" -a -n "$version"

check "lib/$real is a file" test -f "$lib/$real" -a ! -L "$lib/$real"
check "lib/$soname -> $real" test "$(readlink "$lib/$soname")" = "$real"
check "lib/libwdpool.so -> $soname" test "$(readlink "$lib/libwdpool.so")" = "$soname"
check "lib/libwdpool.a is a file" test -f "$lib/libwdpool.a"
check "include/wdpool.h is the repository's" cmp include/wdpool.h "$header"
check "lib/pkgconfig/wdpool.pc is a file" test -f "$lib/pkgconfig/wdpool.pc"

sonames() { readelf -d "$1" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p'; }
needed() { readelf -d "$1" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'; }
check_eq "the installed library's SONAME is $soname" "$(sonames "$lib/$real")" "$soname"

# ------------------------------------------------------------ pkg-config

# pkg-config's answer about the installed wdpool, without the trailing blank
# some versions print. PKG_CONFIG_PATH is not exported: make install would
# pass it to cargo, whose build scripts (openssl-sys, libz-sys) would rerun.
pc() {
  local out
  out=$(PKG_CONFIG_PATH=$lib/pkgconfig "$PKG_CONFIG" "$@" wdpool) && echo "${out%"${out##*[! ]}"}"
}
check_eq "pkg-config --modversion wdpool" "$(pc --modversion)" "$version"
check_eq "pkg-config --variable=prefix wdpool" "$(pc --variable=prefix)" "$prefix"
check_eq "pkg-config --cflags wdpool" "$(pc --cflags)" "-I$prefix/include"
check_eq "pkg-config --libs wdpool" "$(pc --libs)" "-L$lib -lwdpool"
private=$(pc --static --libs)
check "pkg-config --static --libs wdpool adds Libs.private (${private#"-L$lib -lwdpool "})" \
  test "$private" != "-L$lib -lwdpool"

# ------------------------------------------------------------ shared library

dynamic=$tmp/abi_check_shared
# shellcheck disable=SC2086 # word splitting of the flags is intended
check "abi_check.c builds with \`pkg-config --cflags --libs wdpool\`" \
  $cc $cflags tests/install/abi_check.c $(pc --cflags --libs) -o "$dynamic"
if [[ -x "$dynamic" ]]; then
  check "it needs $soname" grep -qx "$soname" <(needed "$dynamic")
  check "and no other libwdpool" test "$(needed "$dynamic" | grep -c '^libwdpool')" = 1
  check "it runs with LD_LIBRARY_PATH=$lib" env LD_LIBRARY_PATH="$lib" "$dynamic"
  check "it runs when only $soname is there" env LD_LIBRARY_PATH="$tmp/only-soname" \
    bash -c 'mkdir -p "$1" && cp "$2" "$1/$3" && "$4"' _ "$tmp/only-soname" "$lib/$real" "$soname" "$dynamic"
fi

# ------------------------------------------------------------ static library

# -lwdpool would pick libwdpool.so, installed next to libwdpool.a: name the
# archive instead (GNU ld's -l:FILE), keeping the rest of the flags.
static_libs=$(for word in $private; do if [[ $word == -lwdpool ]]; then echo -l:libwdpool.a; else echo "$word"; fi; done)
static=$tmp/abi_check_static
# shellcheck disable=SC2086
check "abi_check.c builds with \`pkg-config --static --libs wdpool\` (-lwdpool as -l:libwdpool.a)" \
  $cc $cflags tests/install/abi_check.c $(pc --cflags) $static_libs -o "$static"
if [[ -x "$static" ]]; then
  check "it needs no libwdpool" test "$(needed "$static" | grep -c '^libwdpool')" = 0
  check "it runs without LD_LIBRARY_PATH" env -u LD_LIBRARY_PATH "$static"
fi

# ------------------------------------------------------------ DESTDIR, uninstall

stage=$tmp/stage
if "$MAKE" --no-print-directory install DESTDIR="$stage" PREFIX=/opt/wdpool >"$tmp/stage.log" 2>&1; then
  pass "make install DESTDIR=$stage PREFIX=/opt/wdpool"
  check "it installs under DESTDIR" test -f "$stage/opt/wdpool/lib/$real" -a -f "$stage/opt/wdpool/include/wdpool.h"
  check "its wdpool.pc names /opt/wdpool" grep -qx 'prefix=/opt/wdpool' "$stage/opt/wdpool/lib/pkgconfig/wdpool.pc"
else
  fail "make install DESTDIR=$stage PREFIX=/opt/wdpool"
  tail -n 30 "$tmp/stage.log" | sed 's/^/    /'
fi

check "make uninstall PREFIX=$prefix" "$MAKE" --no-print-directory uninstall PREFIX="$prefix" DESTDIR=
check "it leaves no file in the prefix" test -z "$(find "$prefix" ! -type d)"

finish

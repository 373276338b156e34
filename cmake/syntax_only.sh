#!/bin/sh
# Compiler launcher for targets that only check that code compiles (the public headers one by
# one, the benchmarks in the sanitizer build): runs the compile command with -fsyntax-only, so
# parsing and template instantiation run with every warning but no code is generated (a
# benchmark: 8 s instead of 31 s under clang-asan), then writes the empty object file the
# command names so that the build tool sees it done. The depfile (-MD -MF) is still written:
# an edit to a header re-checks exactly the sources that include it.
out=
prev=
for arg in "$@"; do
  [ "$prev" = "-o" ] && out=$arg
  prev=$arg
done
"$@" -fsyntax-only || exit $?
[ -n "$out" ] && : > "$out"

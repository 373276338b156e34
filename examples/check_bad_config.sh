#!/bin/sh
# check_bad_config.sh PROGRAM: an example given a malformed REDIS_URL must end with exit status 1
# after one line on stderr that names REDIS_URL: no abort, no "terminate called". Touches no
# server (the URL cannot be parsed, so nothing is connected to).
out=$(REDIS_URL='redis://127.0.0.1:notaport' "$1" 2>&1 >/dev/null)
rc=$?
printf '%s\n' "$out"
[ "$rc" -eq 1 ] || { echo "exit status $rc, expected 1"; exit 1; }
[ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] || { echo "expected exactly one line on stderr"; exit 1; }
case $out in
  *REDIS_URL*) ;;
  *) echo "the line does not name REDIS_URL"; exit 1 ;;
esac

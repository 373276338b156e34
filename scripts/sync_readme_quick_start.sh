#!/usr/bin/env bash
# Copies examples/quick_start.cpp into README.md's first ```cpp block (the README must show
# the example verbatim; `bash scripts/run.sh test` fails when they differ).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
tmp=$(mktemp)
awk -v src=examples/quick_start.cpp '
  !done && !inside && /^```cpp[[:space:]]*$/ {
    print
    while ((getline line < src) > 0) print line
    inside = 1
    next
  }
  inside && /^```/ { inside = 0; done = 1 }
  !inside { print }
' README.md >"$tmp"
if ! grep -q '^```cpp' "$tmp"; then
  rm -f "$tmp"
  echo "error: README.md has no \`\`\`cpp block" >&2
  exit 1
fi
cat "$tmp" >README.md
rm -f "$tmp"
echo "README.md: first cpp block = examples/quick_start.cpp"

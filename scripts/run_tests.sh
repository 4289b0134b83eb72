#!/usr/bin/env bash
# Runs every test binary given, from the repository root, and prints one closing line
# "N passed, N failed" counting binaries. Exits non-zero if any failed.
set -u
passed=0; failed=0; failed_names=()
for t in "$@"; do
  echo "=== $t"
  if "$t"; then passed=$((passed + 1)); else failed=$((failed + 1)); failed_names+=("$t"); fi
done
echo
[ $failed -gt 0 ] && echo "failed: ${failed_names[*]}"
echo "tests: $passed passed, $failed failed"
[ $failed -eq 0 ]

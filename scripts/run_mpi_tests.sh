#!/usr/bin/env bash
# Runs every tests/mpi/test_*.sh with the MPI build's facekd and test_dist (make test-mpi).
#   run_mpi_tests.sh BUILD_DIR
set -u
build=$1
passed=0; failed=0
for t in tests/mpi/test_*.sh; do
  echo "=== $t"
  if bash "$t" "$build/facekd" "$build/tests/test_dist"; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done
echo
echo "mpi tests: $passed passed, $failed failed"
[ $failed -eq 0 ]

#!/usr/bin/env bash
# Runs each libFuzzer target for a fixed time: scripts/fuzz.sh BUILD_DIR SECONDS TARGET...
#
# A target starts from its committed seeds (tests/fuzz/corpus/<target>/) plus what earlier
# runs found (BUILD_DIR/corpus/<target>/, not committed); crashing inputs go to
# BUILD_DIR/crashes/<target>/ (copy each to tests/fuzz/regress/<target>/ once fixed).
# Prints one summary line per target; exits non-zero if any target crashed.
set -u
build=$1; seconds=$2; shift 2
failed=()
summary=()
for t in "$@"; do
  corpus=$build/corpus/$t crashes=$build/crashes/$t log=$build/logs/$t.log
  mkdir -p "$corpus" "$crashes" "$(dirname "$log")"
  echo "=== fuzz_$t: ${seconds}s"
  # -rss_limit_mb/-malloc_limit_mb: an input asking a parser for gigabytes is a finding.
  "$build/fuzz_$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
    -print_final_stats=1 -artifact_prefix="$crashes/" "$corpus" "tests/fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
  found=$(ls "$crashes" | wc -l)
  line="fuzz_$t: ${seconds}s, ${runs:-?} runs, ${cov:-cov: ?}, corpus $(ls "$corpus" | wc -l) files, $found crash files"
  if [ $rc -ne 0 ]; then
    line="$line — FAILED (exit $rc), see $log"
    failed+=("$t")
  fi
  summary+=("$line")
  echo "$line"
done
echo
printf '%s\n' "${summary[@]}"
[ ${#failed[@]} -eq 0 ]

#!/usr/bin/env bash
# make demo: the main job on the built-in synthetic face world (docs/DEMO.md).
#   1. a preview of the synthetic identities (runs/quickstart/synth_preview.png)
#   2. facekd compare recipes/compare/quickstart.yaml: renders the synthetic benchmarks
#      (cached), trains the quickstart IResNet-50 ArcFace teacher, trains MobileFaceNet
#      students without and with distillation, evaluates each once and prints the table.
# Runs already finished are reused (delete runs/quickstart to start over).
set -euo pipefail
# OpenMP threads that spin while they wait starve the loader threads on a small machine.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
FACEKD=${1:-build/facekd}
cd "$(dirname "$0")/.."
start=$(date +%s)
mkdir -p runs/quickstart
"$FACEKD" version
"$FACEKD" synth --preview runs/quickstart/synth_preview.png --rows 6 --cols 8 --seed 1
"$FACEKD" compare recipes/compare/quickstart.yaml
end=$(date +%s)
echo
echo "demo finished in $(( (end - start) / 60 )) min $(( (end - start) % 60 )) s"
echo "table:  runs/quickstart/compare/compare.md (and compare.csv)"
echo "plots:  runs/quickstart/compare/roc_*.png, runs/quickstart/*/loss.png, runs/quickstart/synth_preview.png"

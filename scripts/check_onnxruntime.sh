#!/usr/bin/env bash
# Installs ONNX Runtime for Node (onnxruntime-node, its CPU library ships inside the npm
# package; --ignore-scripts skips the optional CUDA download) into build/ort, then runs
# tests/test_onnx, whose ONNX Runtime case exports a student, runs it in ONNX Runtime at
# batch 1 and 7 (scripts/ort_check.cjs) and compares with facekd's embeddings. Without
# node or npm the case reports "skipped", never "passed".
#   bash scripts/check_onnxruntime.sh        (FKD_ORT_DIR overrides build/ort)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${FKD_ORT_DIR:-build/ort}"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "check_onnxruntime: node/npm not found: ONNX Runtime check skipped" >&2
  exit 0
fi
mkdir -p "$dir"
if [ ! -f "$dir/node_modules/onnxruntime-node/package.json" ]; then
  (cd "$dir" && npm install --ignore-scripts --no-audit --no-fund onnxruntime-node >&2)
fi
make --no-print-directory build/tests/test_onnx >&2
FKD_ORT_DIR="$dir" build/tests/test_onnx

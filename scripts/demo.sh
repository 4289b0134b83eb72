#!/usr/bin/env bash
# make demo: the main job on the built-in synthetic data.
set -euo pipefail
FACEKD=${1:-build/facekd}
"$FACEKD" version

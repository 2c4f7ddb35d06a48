#!/usr/bin/env bash
# Set up with the references (torchvision, timm), then run the benchmarks into docs/benchmarks.md.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh --test
.venv/bin/python benchmarks/run.py "$@"

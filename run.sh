#!/usr/bin/env bash
# The main job: set up, then compile every bundled spec into build/ (modules, diagrams, summary).
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
.venv/bin/archsmith build -o build

#!/usr/bin/env bash
# Set up with the test references (torchvision, timm, Graphviz), then run the test suite.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh --test
.venv/bin/python -m pytest -q "$@"

#!/usr/bin/env bash
# Graphviz for diagrams, and .venv with archsmith in it. With --test, also the test references.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v dot >/dev/null; then
    if [[ $(id -u) -eq 0 ]]; then
        apt-get update -qq && apt-get install -y -qq graphviz >/dev/null
    else
        sudo apt-get update -qq && sudo apt-get install -y -qq graphviz >/dev/null
    fi
fi
[[ -x .venv/bin/python ]] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -c constraints.txt torch -e .
if [[ "${1:-}" == "--test" ]]; then
    .venv/bin/pip install -q --disable-pip-version-check -c constraints.txt torch torchvision timm pytest
fi

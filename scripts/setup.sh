#!/usr/bin/env bash
# Create .venv and install archsmith into it. With --test, also the test references and Graphviz.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--test" ]] && ! command -v dot >/dev/null; then
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

#!/usr/bin/env bash
# Graphviz for diagrams, and .venv with archsmith in it. With --test, also the test references.
# pip runs only when the venv lacks what this script, pyproject.toml and constraints.txt ask for.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v dot >/dev/null; then
    if [[ $(id -u) -eq 0 ]]; then
        apt-get update -qq && apt-get install -y -qq graphviz >/dev/null
    else
        sudo apt-get update -qq && sudo apt-get install -y -qq graphviz >/dev/null
    fi
fi
mode=${1:-main}
stamp=.venv/.archsmith-setup
current=$(cat scripts/setup.sh pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
# a venv set up for the tests has everything the main job needs too
if [[ -f $stamp ]] && grep -qx "$current \(--test\|$mode\)" "$stamp"; then
    exit 0
fi
quiet=-q
if [[ ! -x .venv/bin/python ]]; then
    echo "setting up .venv (first run: torch and friends, a few minutes)" >&2
    python3 -m venv .venv
    quiet=  # pip's own progress on the first install
fi
.venv/bin/pip install $quiet --disable-pip-version-check -c constraints.txt torch -e .
if [[ $mode == --test ]]; then
    .venv/bin/pip install $quiet --disable-pip-version-check -c constraints.txt torch torchvision timm pytest hypothesis scikit-learn pygls onnx onnxruntime onnxscript
fi
echo "$current $mode" >> "$stamp"

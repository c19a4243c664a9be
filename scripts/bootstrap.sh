#!/usr/bin/env bash
# Create or refresh .venv with the provider (editable) and its test tools, pinned by constraints.txt.
# Needs only python3 (3.10+) and the package index: uv is installed into the venv with pip.
set -euo pipefail
cd "$(dirname "$0")/.."
python_bin=${PYTHON:-python3}
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
    rm -rf .venv
    "$python_bin" -m venv .venv
fi
stamp=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [ "$(cat .venv/.installed 2>/dev/null)" != "$stamp" ]; then
    echo "bootstrap: installing into .venv (pinned by constraints.txt)"
    .venv/bin/python -m pip install -q --disable-pip-version-check uv
    .venv/bin/python -m uv pip install -q --python .venv/bin/python -c constraints.txt -e '.[test,e2e]'
    echo "$stamp" > .venv/.installed
fi

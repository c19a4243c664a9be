#!/usr/bin/env bash
# .venv-floor (pinned by constraints-floor.txt): the provider on the oldest Airflow it supports (3.0.x), to prove the version gates work.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/uv ] || bash scripts/bootstrap.sh
if [ ! -x .venv-floor/bin/python ]; then
    .venv/bin/uv venv -q --python "$(.venv/bin/python -c 'import sys; print(sys.executable)')" .venv-floor
fi
.venv/bin/uv pip install -q --python .venv-floor/bin/python "apache-airflow==3.0.6" \
    -c constraints-floor.txt pytest pytest-asyncio respx time-machine -e .

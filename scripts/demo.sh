#!/usr/bin/env bash
# The main job (README): create/refresh .venv, then run one deferred Skyvern extraction on a real Airflow
# (scripts/demo.py) against the bundled emulator, or against Skyvern when SKYVERN_API_KEY is set
# (SKYVERN_BASE_URL, default https://api.skyvern.com). Exits non-zero with a one-line reason on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
bash scripts/bootstrap.sh
status=0
.venv/bin/python scripts/demo.py || status=$?
echo "demo: wall time $((SECONDS - start))s (exit $status)"
exit "$status"

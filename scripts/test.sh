#!/usr/bin/env bash
# The test command (README): lint, types, unit + integration tests, end-to-end and browser tests on a real
# Airflow, the distributed suite on a Postgres + Redis + Celery + two-triggerer Airflow, the real Skyvern vs
# the emulator, then the unit, emulator and dag.test() tests again on Airflow 3.0, 3.1 and 3.2
# (docs/airflow-versions.md). Creates .venv (and .venv-af<version>) on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n== %s\n' "$*"; }

step "environment"
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"

step "ruff"
ruff check .
ruff format --check .
ruff check --preview --select AIR example_dags airflow_provider_skyvern  # Airflow's own rules (preview-only)

step "mypy (strict, package)"
mypy

# The unit stages run on two pytest-xdist workers (-n 2; the machine has 2 cores): each worker has its own
# throwaway AIRFLOW_HOME and SQLite DB (tests/conftest.py), every server a test starts listens on a free port,
# and --dist loadgroup keeps each tests/integration module on one worker (its module-scoped dag.test() runs
# happen once). pytest-cov combines the workers' coverage.
xdist=(-n 2 --dist loadgroup)

step "unit, emulator and dag.test() integration tests (coverage of hooks and models)"
python -m pytest "${xdist[@]}" -m "not e2e and not real_skyvern and not distributed" \
    --cov=airflow_provider_skyvern --cov-report=term:skip-covered -q

step "end-to-end and browser tests (real Airflow + emulator + headless Chromium)"
bash scripts/ensure_chromium.sh || true
python -m pytest -m e2e -q -p no:randomly

step "distributed: Postgres + Redis + CeleryExecutor + two triggerers, components killed mid-run (scripts/cluster.sh)"
bash scripts/cluster.sh prepare
python -m pytest -m distributed tests/distributed -q -p no:randomly --durations=5

step "real Skyvern 1.0.56 vs the emulator (../shared/real-skyvern; skipped, with the reason, when it cannot start)"
python -m pytest -m real_skyvern -q -rs -p no:randomly --durations=5

# The older Airflow versions the provider supports (docs/airflow-versions.md), each in .venv-af<version>
# (scripts/airflow_env.sh): the unit, emulator and dag.test() tests again, where the version gates bite. The
# simulator (tests/simulator, every crash point) runs once, above: its no-state-store schedules are the
# Airflow < 3.3 semantics.
for airflow in 3.0.6 3.1.8 3.2.2; do
    step "unit, emulator and dag.test() integration tests on Airflow $airflow"
    bash scripts/airflow_env.sh "$airflow"
    ".venv-af$airflow/bin/python" -m pytest "${xdist[@]}" -m "not e2e and not real_skyvern and not distributed" -q \
        -p no:cacheprovider --ignore tests/e2e --ignore tests/real_skyvern --ignore tests/simulator \
        --ignore tests/distributed
done

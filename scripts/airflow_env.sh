#!/usr/bin/env bash
# .venv-af<version>: the provider (editable) and its test tools on one older Airflow, pinned by
# constraints-af<version>.txt, to run the suite across the supported versions (scripts/test.sh).
#
#   bash scripts/airflow_env.sh 3.0.6              create or refresh .venv-af3.0.6
#   bash scripts/airflow_env.sh --compile 3.0.6    (re)write constraints-af3.0.6.txt, then the above
#   bash scripts/airflow_env.sh --compile --upgrade 3.0.6    the same, every pin at its newest fit
#
# Needs .venv (scripts/bootstrap.sh) for uv and its Python. Airflow's own constraints files are not
# reachable from here, so the pins are our uv resolution of the requirements below.
set -euo pipefail
cd "$(dirname "$0")/.."
compile=false
UV_COMPILE_ARGS=()
if [ "${1:-}" = "--compile" ]; then compile=true; shift; fi
if [ "${1:-}" = "--upgrade" ]; then UV_COMPILE_ARGS=(--upgrade); shift; fi
version=${1:?usage: scripts/airflow_env.sh [--compile [--upgrade]] <airflow version, e.g. 3.0.6>}
venv=.venv-af$version
constraints=constraints-af$version.txt
[ -x .venv/bin/uv ] || bash scripts/bootstrap.sh
uv=.venv/bin/uv

requirements() {
    echo "apache-airflow==$version"
    echo "pytest"
    echo "pytest-asyncio"
    echo "pytest-xdist"  # scripts/test.sh runs these suites on two workers (-n 2)
    echo "respx"
    echo "time-machine"
    case $version in
        # The 3.0 task SDK sends execution-API bodies without a Content-Type; FastAPI 0.132 rejects
        # those (422 on PATCH /task-instances/{id}/run, apache/airflow#63209), so no task can start.
        # 3.0's ObjectStoragePath predates universal-pathlib 0.3 (which 3.0 allows): with 0.3 it refuses every
        # protocol ("detected protocol file which is incompatible"); 3.1 pins <0.3.0 itself.
        3.0.*) echo "fastapi<0.132"; echo "universal-pathlib<0.3" ;;
        # 3.2 sets no upper bound on FastAPI (3.3 says <0.137): with 0.165 + Cadwyn 9 its API apps fail to
        # build (PydanticUserError: TITerminalStatePayload needs a discriminator field). svcs 26.2 takes its
        # registry off app.state when a lifespan exits, and 3.2's in-process execution API (dag.test())
        # drops its lifespan while the app is in use: every call fails on a missing svcs_registry
        # (3.3 ties the lifespan to the transport).
        3.2.*) echo "fastapi<0.137"; echo "svcs<26.2" ;;
    esac
}

if $compile || [ ! -f "$constraints" ]; then
    in=$(mktemp --suffix=.in)
    trap 'rm -f "$in"' EXIT
    requirements > "$in"
    # The provider's own dependencies (pyproject.toml) resolve with the rest: -e . is installed under these
    # pins. uv keeps the versions already in $constraints where they still fit (add --upgrade to refresh).
    "$uv" pip compile -q "$in" pyproject.toml --extra emulator --python-version 3.11 --no-header \
        --no-annotate -o "$constraints" "${UV_COMPILE_ARGS[@]}"
    { echo "# Pins for .venv-af$version: bash scripts/airflow_env.sh --compile $version (uv pip compile of:"
      requirements | sed 's/^/#   /'
      echo "#   and pyproject.toml's dependencies + [emulator]; Python 3.11)"
      grep -v '^#' "$constraints"; } > "$constraints.tmp"
    mv "$constraints.tmp" "$constraints"
fi

if [ ! -x "$venv/bin/python" ]; then
    "$uv" venv -q --python "$(.venv/bin/python -c 'import sys; print(sys.executable)')" "$venv"
fi
stamp=$( (cat pyproject.toml "$constraints"; requirements) | sha256sum | cut -c1-16)
if [ "$(cat "$venv/.installed" 2>/dev/null)" != "$stamp" ]; then
    echo "airflow_env: installing Airflow $version into $venv (pinned by $constraints)"
    requirements | "$uv" pip install -q --python "$venv/bin/python" -c "$constraints" -r - -e '.[emulator]'
    echo "$stamp" > "$venv/.installed"
fi

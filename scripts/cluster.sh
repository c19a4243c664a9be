#!/usr/bin/env bash
# A production-shaped Airflow on this machine (scripts/cluster.py): Postgres 15, Redis, Airflow with the
# CeleryExecutor (api-server, scheduler, dag-processor, one Celery worker, two triggerers), all on 127.0.0.1
# on free ports, in one throwaway directory.
#
#   bash scripts/cluster.sh up [--dir DIR] [--dags-folder DIR] [--env KEY=VALUE ...]
#   bash scripts/cluster.sh status [--dir DIR]
#   bash scripts/cluster.sh down [--dir DIR]
#   bash scripts/cluster.sh prepare          only installs what `up` needs (tests/distributed starts its own)
#
# DIR defaults to $SKYVERN_CLUSTER_DIR or /tmp/skyvern-cluster. `up` first installs what is missing: Debian's
# postgresql and redis-server (apt-get, as root; their own services are not started), and the Celery and
# Postgres providers and psycopg2 into the venv ($SKYVERN_CLUSTER_PYTHON, default .venv/bin/python; pinned
# by constraints.txt, like scripts/bootstrap.sh installs the [test] extra that lists them).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${SKYVERN_CLUSTER_PYTHON:-.venv/bin/python}

if [ ! -x "$python" ]; then
    echo "cluster: $python not found; run scripts/bootstrap.sh or set SKYVERN_CLUSTER_PYTHON" >&2
    exit 1
fi

have_postgres() {
    command -v initdb >/dev/null 2>&1 || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null
}

ensure_debian_packages() {
    local missing=()
    have_postgres || missing+=(postgresql)
    command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "cluster: ${missing[*]} missing and not root; run: sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "cluster: ${missing[*]} missing and apt-get not found; install them by hand" >&2
        exit 1
    fi
    echo "cluster: installing Debian's ${missing[*]} (apt-get)"
    # Their packages start a system-wide server (5432, 6379) unless policy-rc.d says no: we run our own.
    local policy=/usr/sbin/policy-rc.d placed=false
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && placed=true
    fi
    export DEBIAN_FRONTEND=noninteractive
    local log=/tmp/skyvern-cluster-apt.log
    if ! { apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$log" 2>&1 \
        || { apt-get update -qq >>"$log" 2>&1 \
            && apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$log" 2>&1; }; }; then
        $placed && rm -f "$policy"
        echo "cluster: apt-get install ${missing[*]} failed: $(tail -n 1 "$log"); log at $log" >&2
        exit 1
    fi
    $placed && rm -f "$policy"
    echo "cluster: installed ${missing[*]}"
}

ensure_python_packages() {
    local missing
    missing=$("$python" - <<'EOF'
from importlib.metadata import PackageNotFoundError, version
for name in ("apache-airflow-providers-celery", "apache-airflow-providers-postgres", "psycopg2-binary"):
    try:
        version(name)
    except PackageNotFoundError:
        print(name)
EOF
)
    [ -z "$missing" ] && return 0
    # shellcheck disable=SC2086 # one package name per word
    echo "cluster: installing" $missing "into $python"
    if "$python" -m uv --version >/dev/null 2>&1; then
        # shellcheck disable=SC2086
        "$python" -m uv pip install -q --python "$python" -c constraints.txt $missing
    else
        # shellcheck disable=SC2086
        "$python" -m pip install -q --disable-pip-version-check -c constraints.txt $missing
    fi
}

case "${1:-}" in
    up | prepare)
        ensure_debian_packages
        ensure_python_packages
        [ "$1" = prepare ] && exit 0
        ;;
    down | status) ;;
    *)
        echo "usage: scripts/cluster.sh up|down|status|prepare [--dir DIR] [--dags-folder DIR] [--env KEY=VALUE]" >&2
        exit 2
        ;;
esac
exec env PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$python" scripts/cluster.py "$@"

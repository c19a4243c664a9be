"""One emulator + one ``airflow standalone`` for every e2e test, and every DAG run triggered up front.

The runs go concurrently (deferred tasks hold no worker slot); a recorder polls their task states from the
start, so a short ``deferred`` phase cannot be missed whatever order the tests run in.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))

from airflow_harness import TERMINAL_RUN_STATES, Stack, StateRecorder, poll_until, skyvern_stack  # noqa: E402

from .scenario import (  # noqa: E402
    ABANDONED,
    CANCEL,
    CLEAR,
    EMULATOR_RUN_SECONDS,
    EXAMPLE_DAG_IDS,
    EXTRACTION,
    FAILURE,
    FAN_OUT,
    GATE,
    LOGIN_DOWNLOAD,
    OPENLINEAGE_EVENTS,
    OPENLINEAGE_NAMESPACE,
    WAIT_LATER,
    WORKFLOW,
    Observed,
)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("e2e")
    dags = workdir / "dags"
    dags.mkdir()
    for dag_file in [*(REPO / "example_dags").glob("*.py"), *(Path(__file__).parent / "dags").glob("*.py")]:
        shutil.copy(dag_file, dags)
    extra_env = {"SKYVERN_EXAMPLE_POLL_INTERVAL": "1", "SKYVERN_EXAMPLE_OUTPUT_DIR": str(workdir / "output")}
    if importlib.util.find_spec("airflow.providers.openlineage") is not None:  # the [openlineage] extra
        # Every OpenLineage event Airflow emits, one JSON a line (tests/e2e/test_lineage_e2e.py reads them).
        transport = {"type": "file", "log_file_path": str(workdir / OPENLINEAGE_EVENTS), "append": True}
        extra_env["AIRFLOW__OPENLINEAGE__TRANSPORT"] = json.dumps(transport)
        extra_env["AIRFLOW__OPENLINEAGE__NAMESPACE"] = OPENLINEAGE_NAMESPACE
    with skyvern_stack(workdir, dags, extra_env, run_seconds=EMULATOR_RUN_SECONDS) as running_stack:
        yield running_stack


@pytest.fixture(scope="session")
def observed(stack: Stack) -> Observed:
    """Triggers every DAG run, then records until all are final and the cancel target is deferred."""
    airflow = stack.airflow
    for dag_id in (*EXAMPLE_DAG_IDS, FAILURE[0], CANCEL[0], CLEAR[0], GATE[0], ABANDONED[0]):
        airflow.wait_for_dag(dag_id)
    run_ids = {
        dag_id: airflow.trigger(dag_id, f"e2e__{dag_id}")
        for dag_id, _ in (
            EXTRACTION,
            FAN_OUT,
            FAILURE,
            CANCEL,
            CLEAR,
            WORKFLOW,
            WAIT_LATER,
            GATE,
            LOGIN_DOWNLOAD,
            ABANDONED,
        )
    }
    seen = Observed(run_ids, StateRecorder(airflow))

    def settled() -> bool | None:
        run_states = {dag_id: seen.recorder.poll(dag_id, run_id) for dag_id, run_id in run_ids.items()}
        finished = all(
            state in TERMINAL_RUN_STATES
            for dag_id, state in run_states.items()
            if dag_id not in (CANCEL[0], CLEAR[0], ABANDONED[0])
        )
        waiting = (
            seen.states(CANCEL)[-1:] == seen.states(CLEAR)[-1:] == seen.states(ABANDONED)[-1:] == ["deferred"]
        )
        return True if finished and waiting else None

    poll_until(settled, timeout=180, what="the e2e DAG runs to finish (and the cancel target to defer)")
    return seen

"""The integration DAG run once with ``dag.test()`` against the Skyvern emulator (see ``conftest.py``).

Four Skyvern tasks (deferrable, blocking, one the emulator fails, one that outlives its timeout) and a
downstream ``@task`` fed the deferrable task's output. The run is ``failed`` overall by design: two tasks
are meant to fail.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest

from airflow_provider_skyvern.version_compat import AIRFLOW_V_3_1_PLUS
from tests.integration.conftest import DagTestResult, LogLine

pytestmark = [
    pytest.mark.integration,
    # Airflow's in-process execution API (dag.test()) builds a starlette TestClient: harmless noise.
    pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient` is deprecated"),
]

SKYVERN_TASKS = ("extract_deferred", "extract_blocking", "extract_failing", "extract_too_slow")
COMPLETED_TASKS = ("extract_deferred", "extract_blocking")
TRIGGER_LOGGER = "airflow_provider_skyvern.triggers.skyvern.SkyvernRunTrigger"
OPERATOR_LOGGER = "airflow.task.operators.airflow_provider_skyvern.operators.task.SkyvernRunTaskOperator"
LINK_KEY = "_link_SkyvernRunLink"  # pushed by Airflow when the task ends: the "Skyvern run" button's URL
RESULT_KEYS = {
    "status",
    "recording_url",
    "screenshot_urls",
    "downloaded_files",
    "step_count",
    "failure_reason",
}
NO_NONE_XCOMS = not AIRFLOW_V_3_1_PLUS
"""Airflow 3.0's execution API cannot store a None XCom (it requires a body, apache/airflow#55062); pulling
a key nobody pushed gives None all the same."""


def run_id_of(dag_test: DagTestResult, task_id: str) -> str:
    run_id = dag_test.xcoms[task_id]["run_id"]
    assert isinstance(run_id, str)
    return run_id


def without_query(url: str) -> str:
    """A presigned URL minus its ``expires``/``sig``: Skyvern mints a fresh one on every read."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def progress(lines: list[LogLine], logger: str, run_id: str) -> list[tuple[str, int]]:
    """(status, step) of each ``Skyvern run <id>: <status> (step N)`` line of ``logger``."""
    pattern = re.compile(
        rf"Skyvern run {re.escape(run_id)}: (\w+) \(step (\d+)\)(?: \(.+ left before .+\))?$"
    )
    found = [pattern.match(line.message) for line in lines if line.logger == logger]
    return [(match[1], int(match[2])) for match in found if match]


def errors(lines: list[LogLine]) -> list[str]:
    return [line.error for line in lines if line.error]


def test_dag_run_fails_only_where_expected(dag_test: DagTestResult) -> None:
    assert str(dag_test.dag_run.state) == "failed"
    assert dag_test.task_states == {
        "extract_deferred": "success",
        "extract_blocking": "success",
        "extract_failing": "failed",
        "extract_too_slow": "failed",
        "count_products": "success",
    }


def test_each_skyvern_task_started_exactly_one_run(dag_test: DagTestResult) -> None:
    runs = dag_test.emulator_runs()
    # The operator titles a run "<dag_id>.<task_id> [airflow-<tag>]" (reattach tag); count_products starts none.
    started_by = [r["title"].split(" ")[0] for r in runs]
    assert sorted(started_by) == sorted(f"skyvern_integration.{task_id}" for task_id in SKYVERN_TASKS)
    for run, title in zip(runs, started_by, strict=True):
        task_id = title.removeprefix("skyvern_integration.")
        assert run["run_id"] == run_id_of(dag_test, task_id), task_id
        app_url = f"{dag_test.emulator.base_url}/runs/{run['run_id']}"
        assert dag_test.xcoms[task_id]["app_url"] == dag_test.xcoms[task_id][LINK_KEY] == app_url, task_id


@pytest.mark.parametrize("task_id", COMPLETED_TASKS)
def test_xcoms_are_the_emulator_run(dag_test: DagTestResult, task_id: str) -> None:
    xcom = dag_test.xcoms[task_id]
    run = dag_test.skyvern_run(run_id_of(dag_test, task_id))

    assert run["status"] == xcom["status"] == "completed"
    assert xcom["return_value"] == run["output"]
    assert isinstance(run["output"], list)
    assert run["output"]
    assert xcom["step_count"] == run["step_count"] > 0
    assert xcom.get("failure_reason") is None
    assert [{**f, "url": without_query(f["url"])} for f in xcom["downloaded_files"]] == [
        {
            "url": without_query(f["url"]),
            "filename": f["filename"],
            "checksum": f["checksum"],
            "size": f["file_size"],
        }
        for f in run["downloaded_files"]
    ]
    assert without_query(xcom["recording_url"]) == without_query(run["recording_url"])
    assert xcom["screenshot_urls"] == []  # Skyvern 1.0.56 reports screenshot_urls null for skyvern-2.0 runs
    assert run["screenshot_urls"] is None
    # The URLs the task handed on are live presigned URLs, not just look-alikes.
    for url in [xcom["recording_url"], *xcom["screenshot_urls"], xcom["downloaded_files"][0]["url"]]:
        assert dag_test.emulator.control.get(url).status_code == 200, url
    none_keys = {"failure_reason"} if NO_NONE_XCOMS else set()
    assert set(xcom) == (RESULT_KEYS - none_keys) | {"return_value", "run_id", "app_url", "usage", LINK_KEY}
    assert xcom["usage"] == {"steps": run["step_count"], "runs": 1, "tries": 1, "replayed_as_code": 0}


def test_count_products_counted_the_deferred_output(dag_test: DagTestResult) -> None:
    rows: Any = dag_test.xcoms["extract_deferred"]["return_value"]
    assert dag_test.xcoms["count_products"]["return_value"] == len(rows) == 3


def test_failing_task_carries_skyvern_failure_reason(dag_test: DagTestResult) -> None:
    run_id = run_id_of(dag_test, "extract_failing")
    run = dag_test.skyvern_run(run_id)
    xcom = dag_test.xcoms["extract_failing"]

    assert run["status"] == xcom["status"] == "failed"
    assert run["failure_reason"]
    assert xcom["failure_reason"] == run["failure_reason"]
    assert xcom["step_count"] == run["step_count"]
    assert "return_value" not in xcom
    assert errors(dag_test.logs.task_log("extract_failing")) == [
        f"SkyvernRunFailedError: Skyvern run {run_id} ended failed: {run['failure_reason']}"
    ]


def test_too_slow_run_is_canceled_once(dag_test: DagTestResult) -> None:
    run_id = run_id_of(dag_test, "extract_too_slow")
    emulated = dag_test.emulator.state.runs[run_id]

    assert emulated.lifecycle.plan.outcome == "slow"
    assert emulated.lifecycle.cancel_requests == 1
    assert dag_test.skyvern_run(run_id)["status"] == "canceled"
    assert {r["run_id"]: r["cancel_requests"] for r in dag_test.emulator_runs()} == {
        run_id_of(dag_test, task_id): int(task_id == "extract_too_slow") for task_id in SKYVERN_TASKS
    }
    # Canceled on the deadline, so no result XComs: what execute() pushed before deferring, and the cost.
    assert set(dag_test.xcoms["extract_too_slow"]) == {"run_id", "app_url", "usage", LINK_KEY}
    usage = dag_test.xcoms["extract_too_slow"]["usage"]
    assert (usage["runs"], usage["tries"]) == (1, 1)
    assert usage["steps"] == dag_test.skyvern_run(run_id)["step_count"]
    [error] = errors(dag_test.logs.task_log("extract_too_slow"))
    assert error.startswith(f"SkyvernRunFailedError: Skyvern run {run_id} did not finish within timeout=2s (")
    assert error.endswith("; it was canceled")


def test_trigger_progress_reached_the_deferred_task_log(dag_test: DagTestResult) -> None:
    run_id = run_id_of(dag_test, "extract_deferred")
    lines = dag_test.logs.task_log("extract_deferred")
    messages = [line.message for line in lines]

    assert "[DAG TEST] running trigger in line" in messages
    seen = progress(lines, TRIGGER_LOGGER, run_id)
    assert any(status == "running" for status, _ in seen)  # which steps a 0.3 s poll catches varies
    assert seen[-1] == ("completed", dag_test.xcoms["extract_deferred"]["step_count"])
    steps = [step for _, step in seen]
    assert steps == sorted(steps)
    assert errors(lines) == []


def test_blocking_task_logs_progress_itself(dag_test: DagTestResult) -> None:
    run_id = run_id_of(dag_test, "extract_blocking")
    lines = dag_test.logs.task_log("extract_blocking")

    assert "[DAG TEST] running trigger in line" not in [line.message for line in lines]
    assert progress(lines, TRIGGER_LOGGER, run_id) == []
    seen = progress(lines, OPERATOR_LOGGER, run_id)
    assert any(status == "running" for status, _ in seen)
    assert seen[-1] == ("completed", dag_test.xcoms["extract_blocking"]["step_count"])

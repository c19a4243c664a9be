"""The example DAGs of the workflow operator and the sensor, each run once with ``dag.test()`` against the
emulator: what a new user gets from copying them, down to the XCom values a downstream task reads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import DagTestResult, dag_tested

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient` is deprecated"),
    pytest.mark.filterwarnings("ignore:.*start_from_trigger with a templated run_id:UserWarning"),
]

EXAMPLES = Path(__file__).parents[2] / "example_dags"


def skyvern_run(result: DagTestResult) -> dict[str, Any]:
    """The one run the emulator made, as Skyvern answers ``GET /v1/runs/{id}``."""
    (made,) = result.emulator_runs()  # the sensor starts no run of its own
    return {**result.skyvern_run(made["run_id"]), "request": made.get("request")}


@pytest.fixture(scope="module")
def wait_later(airflow_db: None, dags_folder: Path) -> Iterator[DagTestResult]:
    with dag_tested(
        dags_folder, EXAMPLES / "skyvern_start_now_wait_later.py", "skyvern_start_now_wait_later"
    ) as r:
        yield r


@pytest.fixture(scope="module")
def workflow(airflow_db: None, dags_folder: Path) -> Iterator[DagTestResult]:
    with dag_tested(
        dags_folder, EXAMPLES / "skyvern_workflow_scheduled.py", "skyvern_workflow_scheduled"
    ) as r:
        yield r


def test_start_now_wait_later_hands_the_runs_output_through_the_sensor(wait_later: DagTestResult) -> None:
    xcoms = wait_later.xcoms
    print("\nskyvern_start_now_wait_later XComs:\n" + json.dumps(xcoms, indent=1, default=str))
    assert str(wait_later.dag_run.state) == "success"
    assert set(wait_later.task_states.values()) == {"success"}
    run = skyvern_run(wait_later)
    started = xcoms["start_price_check"]["return_value"]
    waited = xcoms["wait_for_price_check"]
    assert started == run["run_id"]
    assert waited["run_id"] == started
    assert waited["status"] == "completed"
    assert waited["return_value"] == run["output"]
    assert waited["app_url"] == run["app_url"]
    assert xcoms["load_prices"]["return_value"] == {
        "table": xcoms["prepare_staging_table"]["return_value"],
        "rows": len(run["output"]),
        "run_id": started,
        "cheapest": min(row["price"] for row in run["output"]),
    }


def test_the_scheduled_workflow_sends_its_templated_parameters(workflow: DagTestResult) -> None:
    xcoms = workflow.xcoms
    print("\nskyvern_workflow_scheduled XComs:\n" + json.dumps(xcoms, indent=1, default=str))
    assert str(workflow.dag_run.state) == "success"
    run = skyvern_run(workflow)
    report = xcoms["download_daily_report"]
    day = workflow.dag_run.logical_date.strftime("%Y-%m-%d")
    assert run["request"]["parameters"]["report_date"] == day
    assert report["return_value"] == run["output"]
    assert set(report["block_outputs"]) == {
        key.removesuffix("_output") for key in run["output"] if key.endswith("_output")
    }
    assert report["attempt"] == 1
    assert xcoms["summarize"]["return_value"]["blocks"] == sorted(report["block_outputs"])

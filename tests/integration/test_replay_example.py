"""``example_dags/skyvern_replay_as_code.py`` over five simulated days with ``dag.test()`` on the emulator:
day 1 makes the prompt's workflow, runs as an agent and records a script, days 2, 3 and 5 replay it, on day 4
the page changed and the AI took over (issue 20, items 2 and 5); one workflow is made for the fingerprint
in all. The figures of each day are printed: the note of issue 20 quotes them."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_skyvern.emulator.server import EmulatorServer, EmulatorSettings

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient` is deprecated"),
]

EXAMPLE_DAG = Path(__file__).parents[2] / "example_dags" / "skyvern_replay_as_code.py"
DAG_ID = "skyvern_replay_as_code"
CHANGED_DAY = 4


@dataclass(frozen=True)
class Day:
    day: int
    state: str
    task_states: dict[str, str]
    xcoms: dict[str, Any]
    run: dict[str, Any]


@dataclass(frozen=True)
class Days:
    days: list[Day]
    workflows: list[dict[str, Any]]
    """The workflows made for the prompt, by the mark in their titles."""
    creates: int


@pytest.fixture(scope="module")
def five_days(airflow_db: None, dags_folder: Path) -> Iterator[Days]:
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow < 3.2
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with EmulatorServer(EmulatorSettings(run_seconds=2.0)) as emulator, pytest.MonkeyPatch.context() as patch:
        patch.setenv("SKYVERN_EXAMPLE_POLL_INTERVAL", "1")
        connection = {"conn_type": "skyvern", "host": emulator.base_url, "password": emulator.api_key}
        patch.setenv("AIRFLOW_CONN_SKYVERN_DEFAULT", json.dumps(connection))
        shutil.copy(EXAMPLE_DAG, dags_folder / EXAMPLE_DAG.name)
        bag = DagBag(dag_folder=dags_folder / EXAMPLE_DAG.name)
        assert not bag.import_errors, bag.import_errors
        dag = bag.dags[DAG_ID]
        result = []
        for day in range(1, 6):
            # Every day says its note: in one process dag.test() keeps the last run_conf in the DAG's params.
            conf = {
                "category": "laptops",
                "run_note": "[emulator page_changed=1]" if day == CHANGED_DAY else "",
            }
            dag_run = dag.test(logical_date=datetime(2026, 12, day, tzinfo=timezone.utc), run_conf=conf)
            with create_session() as session:
                rows = session.scalars(
                    select(XComModel).where(
                        XComModel.dag_id == DAG_ID,
                        XComModel.run_id == dag_run.run_id,
                        XComModel.task_id == "extract_prices",
                    )
                )
                xcoms = {row.key: XComModel.deserialize_value(row) for row in rows}
            run = emulator.control.get(
                f"/v1/runs/{xcoms['run_id']}", headers={"x-api-key": emulator.api_key}
            ).json()
            states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
            result.append(Day(day, str(dag_run.state), states, xcoms, run))
        workflows = emulator.control.get(
            "/v1/workflows", params={"search_key": "airflow-replay"}, headers={"x-api-key": emulator.api_key}
        ).json()
        creates = [
            r
            for r in emulator.control.get("/_emulator/requests").json()["requests"]
            if (r["method"], r["path"]) == ("POST", "/v1/workflows")
        ]
        yield Days(result, workflows, len(creates))
        scripts = emulator.control.get("/_emulator/scripts").json()
        print(f"\nscripts the emulator recorded: {scripts}")


def _seconds(run: dict[str, Any]) -> float:
    started, finished = (datetime.fromisoformat(run[k]) for k in ("started_at", "finished_at"))
    return (finished - started).total_seconds()


def test_five_days_agent_then_code_with_one_changed_page(five_days: Days) -> None:
    days = five_days.days
    print("\nday | run | steps | run s | script_run | usage | streak")
    for day in days:
        print(
            f"{day.day} | {day.run['run_id']} | {day.run['step_count']} | {_seconds(day.run):.1f} | "
            f"{day.xcoms.get('script_run')} | {day.xcoms['usage']} | {day.xcoms['ai_fallback_streak']}"
        )
    assert [day.state for day in days] == ["success"] * 5
    first, *later = days
    assert first.xcoms.get("script_run") is None  # an agent run, it records the script (3.0 pushes no None)
    assert first.xcoms["usage"] == {
        "steps": first.run["step_count"],
        "runs": 1,
        "tries": 1,
        "replayed_as_code": 0,
    }
    replays = [day for day in later if day.day != CHANGED_DAY]
    (changed,) = [day for day in later if day.day == CHANGED_DAY]
    for day in replays:
        assert day.xcoms["script_run"]["ai_fallback_triggered"] is False
        assert day.xcoms["usage"]["replayed_as_code"] == 1
        assert day.run["step_count"] < first.run["step_count"]
        assert _seconds(day.run) < _seconds(first.run)
        assert day.xcoms["ai_fallback_streak"] == 0
    assert {day.xcoms["script_run"]["script_id"] for day in [*replays, changed]} == {
        replays[0].xcoms["script_run"]["script_id"]
    }  # one script, recorded on day 1, used every day after
    assert changed.xcoms["script_run"]["ai_fallback_triggered"] is True
    assert changed.xcoms["usage"]["replayed_as_code"] == 0
    assert changed.xcoms["ai_fallback_streak"] == 1
    assert changed.task_states["alert_on_fallback_streak"] == "success"  # one day is not a streak


def test_one_workflow_is_made_for_the_prompt_and_every_day_runs_it(five_days: Days) -> None:
    (workflow,) = five_days.workflows
    print(
        f"\nworkflow {workflow['workflow_permanent_id']} {workflow['title']!r}: {five_days.creates} create(s)"
    )
    assert five_days.creates == 1  # day 1 made it; days 2-5 found it by the fingerprint in its title
    assert {day.run["run_request"]["workflow_id"] for day in five_days.days} == {
        workflow["workflow_permanent_id"]
    }
    assert [day.run["run_request"]["parameters"] for day in five_days.days] == [
        {"ds": f"2026-12-0{day.day}", "params_category": "laptops"} for day in five_days.days
    ]
    for day in five_days.days:  # what the block extracted, by the task's schema
        assert isinstance(day.xcoms["return_value"], list)

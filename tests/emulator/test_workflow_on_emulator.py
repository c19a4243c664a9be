"""The workflow operator against the emulator: a lost POST answer and a retry during Skyvern's own
retry policy both end with one run, and the run's final attempt is what the task reports."""

from __future__ import annotations

from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_skyvern.emulator.server import EmulatorServer
from airflow_provider_skyvern.operators.task import SkyvernRunWorkflowOperator
from airflow_provider_skyvern.runs.events import RunEvent
from tests.emulator.conftest import RUN_SECONDS, FakeClock
from tests.operator_support import FakeStateStore, FakeTaskInstance, make_context

pytestmark = pytest.mark.usefixtures("hook")
RETRYING = "[emulator attempts=2 retry_seconds=30]"


def _operator(**kwargs: Any) -> SkyvernRunWorkflowOperator:
    kwargs.setdefault("parameters", {"report_date": "2026-11-30"})
    return SkyvernRunWorkflowOperator(task_id="report", workflow_id="wpid_42", deferrable=True, **kwargs)


def _runs(emulator: EmulatorServer) -> list[dict[str, Any]]:
    return list(emulator.control.get("/_emulator/runs").json()["runs"])


def _posts(emulator: EmulatorServer) -> list[dict[str, Any]]:
    logged = emulator.control.get("/_emulator/requests").json()["requests"]
    return [r for r in logged if r["method"] == "POST" and r["path"] == "/v1/run/agents"]


def _deferred_run_id(operator: SkyvernRunWorkflowOperator, context: dict[str, Any]) -> str:
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context)
    return str(deferred.value.trigger.run_id)  # type: ignore[attr-defined]


def test_a_lost_answer_to_the_workflow_post_makes_one_run(emulator: EmulatorServer) -> None:
    # a run of the same workflow by someone else, just before: never adopted (other parameters)
    other = _deferred_run_id(
        _operator(parameters={"report_date": "2026-11-29"}, reattach=False), make_context()
    )
    emulator.control.post(
        "/_emulator/faults",
        json=[{"method": "POST", "path": "/v1/run/agents", "reset": True, "after_create": True, "times": 1}],
    ).raise_for_status()
    context = make_context(FakeStateStore())

    run_id = _deferred_run_id(_operator(), context)

    assert run_id != other
    assert [run["run_id"] for run in _runs(emulator)] == [other, run_id]
    assert len(_posts(emulator)) == 2  # one each: the lost answer was not resent
    assert context["ti"].xcoms["run_id"] == run_id


def test_a_retry_during_skyverns_retry_policy_adopts_the_run_and_waits_for_the_last_attempt(
    emulator: EmulatorServer, clock: FakeClock
) -> None:
    store = FakeStateStore()
    first = _deferred_run_id(_operator(title=RETRYING), make_context(store, FakeTaskInstance(max_tries=1)))
    clock.advance(RUN_SECONDS + 5)  # attempt 1 failed, the next one is 25 s away: retry pending
    context = make_context(store, FakeTaskInstance(try_number=2, max_tries=1))

    second = _deferred_run_id(_operator(title=RETRYING), context)  # this try's worker died: a retry
    clock.advance(30 + RUN_SECONDS)
    event = RunEvent("terminal", second, "completed").to_payload()
    output = _operator(title=RETRYING).execute_complete(context, event, run_id=second)

    assert second == first
    assert len(_posts(emulator)) == 1
    assert context["ti"].xcoms["attempt"] == 2
    assert context["ti"].xcoms["status"] == "completed"
    assert set(context["ti"].xcoms["block_outputs"]) == {"open_portal", "extract_report"}
    assert output["extracted_information"] == [output["extract_report_output"]["extracted_information"]]

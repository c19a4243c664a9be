"""SkyvernRunWorkflowOperator against the REAL Skyvern 1.0.56: a workflow made of one wait block, created
through ``POST /v1/workflows``, run deferrable through the operator and its trigger to ``completed``.

It also checks, on the real server's answers, what duplicate protection relies on: the workflow id finds
the run through ``search_key``, and the echoed parameters recognise it as this submission's.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_skyvern.hooks.skyvern import SkyvernHook
from airflow_provider_skyvern.models import WorkflowRunRequest
from airflow_provider_skyvern.operators.task import SkyvernRunWorkflowOperator
from airflow_provider_skyvern.runs.ledger import STATE_KEY, Submission
from airflow_provider_skyvern.triggers.skyvern import SkyvernRunTrigger
from tests.conftest import FastClock, set_connection
from tests.operator_support import FakeStateStore, make_context

from .conftest import Peer

pytestmark = pytest.mark.real_skyvern


def _wait_workflow(peer: Peer) -> str:
    """A workflow with one string parameter and one 2 s wait block; its permanent id."""
    definition = {
        "title": f"Airflow wait check {uuid.uuid4().hex[:8]}",
        "workflow_definition": {
            "parameters": [
                {"parameter_type": "workflow", "key": "report_date", "workflow_parameter_type": "string"}
            ],
            "blocks": [{"block_type": "wait", "label": "pause", "wait_sec": 2}],
        },
    }
    with peer.client() as client:
        response = client.post("/v1/workflows", json={"json_definition": definition})
    assert response.status_code == 200, response.text
    return str(response.json()["workflow_permanent_id"])


async def _events(trigger: SkyvernRunTrigger) -> list[dict[str, Any]]:
    return [event.payload async for event in trigger.run()]


def test_a_wait_workflow_runs_deferrable_to_completed(
    real_peer: Peer, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_connection(monkeypatch, host=real_peer.base_url, password=real_peer.api_key, extra={"max_retries": 2})
    FastClock(monkeypatch)
    workflow_id = _wait_workflow(real_peer)
    parameters = {"report_date": f"2026-11-30-{uuid.uuid4().hex[:6]}"}
    operator = SkyvernRunWorkflowOperator(
        task_id="report", workflow_id=workflow_id, parameters=parameters, deferrable=True, poll_interval=1
    )
    context = make_context(FakeStateStore())

    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, SkyvernRunTrigger)
    (event,) = asyncio.run(_events(trigger))
    returned = operator.execute_complete(context, event, **deferred.value.kwargs)

    xcoms = context["ti"].xcoms
    print(f"\nreal workflow run {trigger.run_id}: event {event}, return value {returned}, XCom {xcoms}")
    assert event["kind"] == "terminal"
    assert event["run_status"] == "completed"
    assert returned == {"pause_output": {"success": True}, "extracted_information": []}
    assert xcoms["block_outputs"] == {"pause": {"success": True}}
    assert (xcoms["status"], xcoms["attempt"], xcoms["run_id"]) == ("completed", 1, trigger.run_id)
    assert xcoms["app_url"].endswith(f"/runs/{trigger.run_id}")
    record = context["task_state_store"].values[STATE_KEY]  # kept: the return value push may fail
    assert (record["phase"], record["ended_status"], record["run_id"]) == (
        "ended",
        "completed",
        trigger.run_id,
    )

    with SkyvernHook() as hook:  # what a retry after a lost answer would search and compare
        run = hook.get_run(trigger.run_id)
        listed = [item.run_id for item in hook.list_runs(search_key=workflow_id, page_size=10)]
    mine = Submission.of_workflow(WorkflowRunRequest(workflow_id=workflow_id, parameters=parameters), "t")
    other = Submission.of_workflow(
        WorkflowRunRequest(workflow_id=workflow_id, parameters={"report_date": "another day"}), "t"
    )
    assert listed == [trigger.run_id]
    assert mine.describes(run)
    assert not other.describes(run)


def test_the_emulator_echoes_a_workflow_request_as_the_real_server_does(
    real_peer: Peer, emulator_peer: Peer
) -> None:
    """The same request to both: the same ``run_request`` keys, the request's title, headers and metadata
    dropped, the parameters kept, and the run found by its workflow id and by a parameter value."""
    real_workflow = _wait_workflow(real_peer)
    day = f"2026-11-30-{uuid.uuid4().hex[:6]}"
    seen: dict[str, dict[str, Any]] = {}
    for peer, workflow_id in ((real_peer, real_workflow), (emulator_peer, "wpid_42")):
        body = {
            "agent_id": workflow_id,
            "parameters": {"report_date": day},
            "title": "request title",
            "extra_http_headers": {"X-Trace": "abc"},
            "run_metadata": {"team": "data"},
        }
        with peer.client() as client:
            created = client.post("/v1/run/agents", json=body).json()
            final = peer.wait_final(created["run_id"], timeout=60)
            by_id = [i["run_id"] for i in client.get("/v1/runs", params={"search_key": workflow_id}).json()]
            by_value = [i["run_id"] for i in client.get("/v1/runs", params={"search_key": day}).json()]
        assert created["run_id"] in by_id, peer.name
        assert by_value == [created["run_id"]], peer.name
        seen[peer.name] = final
    real, emulated = seen["real"]["run_request"], seen["emulator"]["run_request"]
    print(f"\nreal run_request {real}\nemulator run_request {emulated}")
    assert set(real) == set(emulated)
    for echo in (real, emulated):
        assert echo["parameters"] == {"report_date": day}
        assert echo["title"] != "request title"
        assert echo["extra_http_headers"] is None
        assert echo["run_metadata"] is None
    for key in ("status", "attempt", "retry_pending", "attempts", "run_type", "output"):
        assert key in seen["emulator"], key
    assert set(seen["real"]) - set(seen["emulator"]) <= {"browser_seed_source", "browser_settings_receipt"}


def test_the_sensor_waits_for_a_real_run_started_without_waiting(
    real_peer: Peer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Start now, wait later on the real server: the operator returns the run id at once, the sensor (poke
    mode, then deferrable through the trigger) hands on the XComs the waiting operator would have."""
    from airflow_provider_skyvern.sensors.skyvern import SkyvernRunSensor

    set_connection(monkeypatch, host=real_peer.base_url, password=real_peer.api_key, extra={"max_retries": 2})
    workflow_id = _wait_workflow(real_peer)
    starter = SkyvernRunWorkflowOperator(
        task_id="start",
        workflow_id=workflow_id,
        parameters={"report_date": f"2026-12-02-{uuid.uuid4().hex[:6]}"},
        wait_for_completion=False,
    )
    run_id = starter.execute(make_context(FakeStateStore()))
    assert run_id.startswith("wr_")

    deferred_sensor = SkyvernRunSensor(task_id="wait", run_id=run_id, deferrable=True, poke_interval=1)
    context = make_context()
    with pytest.raises(TaskDeferred) as deferred:
        deferred_sensor.execute(context)  # the run has just started: the sensor defers
    trigger = deferred.value.trigger
    assert trigger.serialize()[1]["cancel_on_kill"] is False
    (event,) = asyncio.run(_events(trigger))
    returned = deferred_sensor.execute_complete(context, event)
    xcoms = context["ti"].xcoms
    print(f"\nreal run {run_id} waited by the sensor: event {event}, return value {returned}, XCom {xcoms}")
    assert returned == {"pause_output": {"success": True}, "extracted_information": []}
    assert xcoms["block_outputs"] == {"pause": {"success": True}}
    assert (xcoms["status"], xcoms["attempt"], xcoms["run_id"]) == ("completed", 1, run_id)

    poke_context = make_context()  # the same run, already over: poke mode answers at once
    poked = SkyvernRunSensor(task_id="wait", run_id=run_id, poke_interval=0).execute(poke_context)
    assert poked == returned
    assert poke_context["ti"].xcoms["status"] == "completed"

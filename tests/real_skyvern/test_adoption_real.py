"""Issue 17 rows 1, 2, 3 and 9 against the REAL Skyvern 1.0.56 and the emulator alike.

* where a tag can ride when the title is dropped: a workflow run's ``run_metadata`` is a run tag that
  ``GET /v1/runs?tags=`` filters on; skyvern-2.0 keeps no field that could carry one unchanged;
* the server's clock, measured from its ``Date`` header, bounds a run's ``created_at`` from the POST;
* two "DAGs" with the same request: the second's lost POST never adopts the first's run (row 2);
* a completed run whose return value push failed is handed on again by the retry, no second POST (row 1);
* an earlier trigger's event delivered to a later try defers again on the later try's run (row 3).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import timezone
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_skyvern.exceptions import SkyvernError
from airflow_provider_skyvern.hooks.skyvern import SkyvernHook
from airflow_provider_skyvern.operators.task import SkyvernRunTaskOperator, SkyvernRunWorkflowOperator
from airflow_provider_skyvern.runs.finder import CLOCK_FLOOR_SECONDS
from airflow_provider_skyvern.runs.ledger import RUN_TAG_KEY, STATE_KEY
from airflow_provider_skyvern.triggers.skyvern import SkyvernRunTrigger
from tests.conftest import FastClock, set_connection
from tests.operator_support import FakeStateStore, FakeTaskInstance, make_context

from .conftest import Peer
from .proxy import FaultyProxy

pytestmark = pytest.mark.real_skyvern


@pytest.fixture
def started(peer: Peer) -> Iterator[list[str]]:
    run_ids: list[str] = []
    yield run_ids
    peer.settle(run_ids)


def unique(text: str) -> str:
    return f"{text} t-{uuid.uuid4().hex[:8]}"


def wait_workflow(peer: Peer) -> str:
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


def dag(dag_id: str, **fields: Any) -> FakeTaskInstance:
    """A try of a task with retries left (the last try says what to do instead of what a retry does)."""
    return FakeTaskInstance(dag_id=dag_id, **{"max_tries": 3, **fields})


def runs_of(peer: Peer, predicate: Any, page_size: int = 20) -> list[str]:
    """Run ids among the newest listed whose echoed request satisfies ``predicate``."""
    with peer.client() as client:
        listed = client.get("/v1/runs", params={"page_size": page_size}).json()
        echoed = {
            i["run_id"]: client.get(f"/v1/runs/{i['run_id']}").json().get("run_request") or {} for i in listed
        }
    return [run_id for run_id, request in echoed.items() if predicate(request)]


async def events(trigger: SkyvernRunTrigger) -> list[dict[str, Any]]:
    return [event.payload async for event in trigger.run()]


# ---- what the finder relies on ------------------------------------------------------------------------


def test_a_workflow_runs_metadata_tag_is_listed_by_the_tags_filter(peer: Peer, started: list[str]) -> None:
    """``run_metadata`` becomes run tags: ``?tags=airflow:<tag>`` lists exactly the run carrying it, and
    ``run_request`` does not echo it (so it changes nothing a user reads back)."""
    workflow_id = wait_workflow(peer)
    mine, other = f"airflow-{uuid.uuid4().hex[:16]}", f"airflow-{uuid.uuid4().hex[:16]}"
    run_ids = {}
    with peer.client() as client:
        for tag in (mine, other):
            body = {
                "agent_id": workflow_id,
                "parameters": {"report_date": "same"},
                "run_metadata": {"team": "data", RUN_TAG_KEY: tag},
            }
            answer = client.post("/v1/run/agents", json=body)
            assert answer.status_code == 200, answer.text
            run_ids[tag] = answer.json()["run_id"]
            started.append(run_ids[tag])
        params = {"run_type": "workflow_run", "search_key": workflow_id, "tags": f"{RUN_TAG_KEY}:{mine}"}
        listed = client.get("/v1/runs", params=params).json()
        untagged = client.get("/v1/runs", params={**params, "tags": f"{RUN_TAG_KEY}:airflow-nobody"}).json()
        echoed = client.get(f"/v1/runs/{run_ids[mine]}").json()["run_request"]
    assert [item["run_id"] for item in listed] == [run_ids[mine]]
    assert untagged == []
    assert echoed["run_metadata"] is None


def test_the_servers_date_bounds_a_runs_created_at(
    peer: Peer, started: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clock the finder's window is built on: a run's ``created_at`` lies after the POST began, in the
    server's clock as the ``Date`` header measures it."""
    set_connection(monkeypatch, host=peer.base_url, password=peer.api_key)
    workflow_id = wait_workflow(peer)
    with SkyvernHook() as hook:
        hook.list_runs(page_size=1)
        clock = hook.server_clock
        assert clock is not None
        since = time.time()
        with peer.client() as client:
            run = client.post(
                "/v1/run/agents", json={"agent_id": workflow_id, "parameters": {"report_date": "x"}}
            ).json()
        started.append(run["run_id"])
        (item,) = [i for i in hook.list_runs(page_size=5) if i.run_id == run["run_id"]]
    created = item.created_at.astimezone(timezone.utc).timestamp()
    print(
        f"\n{peer.name}: clock ahead by [{clock.ahead_at_least:.3f}, {clock.ahead_at_most:.3f}] s; created {created - since:+.3f} s after the POST began"
    )
    assert created >= since - clock.ahead_at_most - CLOCK_FLOOR_SECONDS
    assert created <= time.time() - clock.ahead_at_least + CLOCK_FLOOR_SECONDS


# ---- row 2: another DAG's run with the same request is never adopted ---------------------------------------


def test_a_second_dags_lost_v2_post_does_not_adopt_the_first_dags_run(
    peer: Peer, started: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    prompt = unique("Extract the product names")
    FastClock(monkeypatch)
    with FaultyProxy(peer.base_url) as proxy:
        set_connection(monkeypatch, host=proxy.base_url, password=peer.api_key, extra={"max_retries": 2})

        def operator() -> SkyvernRunTaskOperator:
            return SkyvernRunTaskOperator(
                task_id="extract", prompt=prompt, url=peer.products_url, engine="skyvern-2.0", deferrable=True
            )

        with pytest.raises(TaskDeferred) as first:
            operator().execute(make_context(FakeStateStore(), dag("first_dag")))
        first_run = str(first.value.trigger.run_id)  # type: ignore[attr-defined]
        started.append(first_run)
        time.sleep(5)  # the second DAG's POST comes a moment later, and a proxy answers 502 for it
        proxy.fail_next("POST", "/v1/run/tasks", 502)
        store = FakeStateStore()
        with pytest.raises(SkyvernError) as second:
            operator().execute(make_context(store, dag("second_dag")))
    message = str(second.value)
    print(f"\n{peer.name}: {message}")
    assert proxy.seen == ["HTTP 502"]
    assert (
        "could not tell whether a Skyvern run was created: none matching this request is listed yet"
        in message
    )
    assert "not starting another run before then" in message
    assert first_run not in message
    assert store.values[STATE_KEY]["run_id"] is None  # nothing adopted; the next try looks again
    assert runs_of(peer, lambda request: request.get("prompt") == prompt) == [first_run]


def test_a_second_dags_lost_workflow_post_does_not_adopt_the_first_dags_run(
    peer: Peer, started: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    workflow_id = wait_workflow(peer)
    parameters = {"report_date": unique("2026-12-06")}
    FastClock(monkeypatch)
    with FaultyProxy(peer.base_url) as proxy:
        set_connection(monkeypatch, host=proxy.base_url, password=peer.api_key, extra={"max_retries": 2})

        def operator() -> SkyvernRunWorkflowOperator:
            return SkyvernRunWorkflowOperator(
                task_id="report", workflow_id=workflow_id, parameters=parameters, deferrable=True
            )

        with pytest.raises(TaskDeferred) as first:
            operator().execute(make_context(FakeStateStore(), dag("first_dag")))
        first_run = str(first.value.trigger.run_id)  # type: ignore[attr-defined]
        started.append(first_run)
        proxy.fail_next("POST", "/v1/run/agents", 502)  # at once: the tag, not the time, tells them apart
        store = FakeStateStore()
        with pytest.raises(SkyvernError) as second:
            operator().execute(make_context(store, dag("second_dag")))
    message = str(second.value)
    print(f"\n{peer.name}: {message}")
    assert (
        "could not tell whether a Skyvern run was created: none matching this request is listed yet"
        in message
    )
    assert first_run not in message
    assert store.values[STATE_KEY]["run_id"] is None
    assert runs_of(peer, lambda request: request.get("parameters") == parameters) == [first_run]


def test_a_lost_workflow_answer_is_found_by_its_tag(
    peer: Peer, started: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run was created, the answer lost: the tag filter lists it, the echo proves the request."""
    workflow_id = wait_workflow(peer)
    parameters = {"report_date": unique("2026-12-06")}
    FastClock(monkeypatch)
    with FaultyProxy(peer.base_url) as proxy:
        set_connection(monkeypatch, host=proxy.base_url, password=peer.api_key, extra={"max_retries": 2})
        proxy.lose_next_answer("POST", "/v1/run/agents")
        operator = SkyvernRunWorkflowOperator(
            task_id="report", workflow_id=workflow_id, parameters=parameters, deferrable=True
        )
        with pytest.raises(TaskDeferred) as deferred:
            operator.execute(make_context(FakeStateStore()))
        run_id = str(deferred.value.trigger.run_id)  # type: ignore[attr-defined]
        started.append(run_id)
    assert proxy.seen == ["reset after the request was handled"]
    assert runs_of(peer, lambda request: request.get("parameters") == parameters) == [run_id]


# ---- row 1: a completed run whose return value push failed ------------------------------------------------


def test_a_retry_hands_the_same_completed_run_on_when_the_push_failed(
    connect: Peer, started: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    FastClock(monkeypatch)
    prompt = unique("Extract the product names")
    store = FakeStateStore()

    def operator() -> SkyvernRunTaskOperator:
        return SkyvernRunTaskOperator(
            task_id="extract",
            prompt=prompt,
            url=connect.products_url,
            engine="skyvern-2.0",
            deferrable=True,
            poll_interval=1,
        )

    context = make_context(store)
    with pytest.raises(TaskDeferred) as deferred:
        operator().execute(context)
    trigger = deferred.value.trigger
    started.append(str(trigger.run_id))  # type: ignore[attr-defined]
    (event,) = asyncio.run(events(trigger))  # type: ignore[arg-type]
    output = operator().execute_complete(context, event, **deferred.value.kwargs)
    assert event["run_status"] == "completed"
    # ... the task runner's push of the return value fails here: the try fails, a retry follows.
    retry = make_context(store, FakeTaskInstance(try_number=2))
    assert operator().execute(retry) == output
    assert retry["ti"].xcoms["run_id"] == trigger.run_id  # type: ignore[attr-defined]
    assert runs_of(connect, lambda request: request.get("prompt") == prompt) == [trigger.run_id]  # type: ignore[attr-defined]


# ---- row 3: an earlier trigger's event reaches a later try ----------------------------------------------


def test_an_earlier_triggers_event_defers_again_on_this_tries_run(
    connect: Peer, started: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Try 2 gets the event of try 1's trigger (SQLite reuses the trigger row id): it defers again on its
    own run with the same deadline; that run is neither canceled nor handed on before it ends."""
    FastClock(monkeypatch)
    store = FakeStateStore()
    prompt = unique("Extract the product names")

    def operator() -> SkyvernRunTaskOperator:
        return SkyvernRunTaskOperator(
            task_id="extract",
            prompt=prompt,
            url=connect.products_url,
            engine="skyvern-2.0",
            deferrable=True,
            poll_interval=1,
            timeout=600,
        )

    with pytest.raises(TaskDeferred):
        operator().execute(make_context(store, FakeTaskInstance()))
    old = str(store.values[STATE_KEY]["run_id"])
    started.append(old)
    context = make_context(store, FakeTaskInstance(try_number=2, max_tries=1))  # a clear: a new run
    with pytest.raises(TaskDeferred) as deferred:
        operator().execute(context)
    mine = str(deferred.value.trigger.run_id)  # type: ignore[attr-defined]
    started.append(mine)
    assert mine != old
    assert connect.wait_final(old, timeout=60)["status"] == "canceled"
    stale = {"kind": "terminal", "run_id": old, "run_status": "canceled", "step_count": 0, "message": None}

    with pytest.raises(TaskDeferred) as again:
        operator().execute_complete(context, stale, **deferred.value.kwargs)
    trigger = again.value.trigger
    assert (trigger.run_id, again.value.kwargs) == (mine, deferred.value.kwargs)  # type: ignore[attr-defined]
    with connect.client() as client:
        assert client.get(f"/v1/runs/{mine}").json()["status"] != "canceled"
    (event,) = asyncio.run(events(trigger))  # type: ignore[arg-type]
    assert (event["run_id"], event["run_status"]) == (mine, "completed")
    operator().execute_complete(context, event, **again.value.kwargs)
    assert context["ti"].xcoms["status"] == "completed"
    assert context["ti"].xcoms["run_id"] == mine

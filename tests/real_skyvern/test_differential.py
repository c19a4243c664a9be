"""The same scenarios against the real Skyvern 1.0.56 and the emulator: the emulator must behave alike.

Every test runs twice (``[real]``, ``[emulator]``) and asserts one behaviour for both, so an emulator
that drifts from the real server fails here, not in a user's DAG.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_skyvern.hooks.skyvern import SkyvernHook
from airflow_provider_skyvern.models import TaskRunRequest
from airflow_provider_skyvern.operators.task import SkyvernRunTaskOperator
from airflow_provider_skyvern.runs.ledger import STATE_KEY, Submission, run_tag
from tests.conftest import FastClock, set_connection
from tests.operator_support import FakeStateStore, FakeTaskInstance, make_context
from tests.real_skyvern.conftest import Peer
from tests.real_skyvern.proxy import FaultyProxy

pytestmark = pytest.mark.real_skyvern
ENGINES = ["skyvern-2.0", "skyvern-1.0"]


@pytest.fixture
def started(peer: Peer) -> Iterator[list[str]]:
    """Run ids a test started; whatever is still going afterwards is canceled and waited for."""
    run_ids: list[str] = []
    yield run_ids
    peer.settle(run_ids)


def unique(text: str) -> str:
    return f"{text} t-{uuid.uuid4().hex[:8]}"


def post_task(peer: Peer, started: list[str], **body: Any) -> dict[str, Any]:
    with peer.client() as client:
        answer = client.post("/v1/run/tasks", json=body)
    assert answer.status_code == 200, answer.text
    run: dict[str, Any] = answer.json()
    started.append(run["run_id"])
    return run


def listed(peer: Peer, **params: Any) -> list[dict[str, Any]]:
    with peer.client() as client:
        return list(client.get("/v1/runs", params={"page_size": 20, **params}).json())


# ---- what the reattach design relies on -----------------------------------------------------------------


def test_skyvern_2_0_drops_the_title_so_the_tag_cannot_be_searched(peer: Peer, started: list[str]) -> None:
    tag = f"airflow-{uuid.uuid4().hex[:16]}"
    run = post_task(
        peer,
        started,
        prompt=unique("Extract the product names"),
        url=peer.products_url,
        engine="skyvern-2.0",
        title=f"nightly [{tag}]",
    )
    assert run["status"] == "queued"
    assert listed(peer, search_key=tag) == []
    (item,) = [i for i in listed(peer) if i["run_id"] == run["run_id"]]
    assert item["title"] != f"nightly [{tag}]"
    assert item["task_run_id"].startswith("tr_")


def test_skyvern_1_0_keeps_the_title_and_finds_it_by_tag(peer: Peer, started: list[str]) -> None:
    tag = f"airflow-{uuid.uuid4().hex[:16]}"
    run = post_task(
        peer,
        started,
        prompt=unique("Extract the product names"),
        url=peer.products_url,
        engine="skyvern-1.0",
        title=f"nightly [{tag}]",
    )
    assert run["status"] == "created"
    assert [(i["run_id"], i["title"]) for i in listed(peer, search_key=tag)] == [
        (run["run_id"], f"nightly [{tag}]")
    ]


def test_search_matches_title_and_url_but_not_the_prompt(peer: Peer, started: list[str]) -> None:
    needle = f"needle{uuid.uuid4().hex[:8]}"
    run = post_task(
        peer,
        started,
        prompt=f"Extract the product names {needle}",
        url=peer.products_url,
        engine="skyvern-1.0",
    )
    assert listed(peer, search_key=needle) == []
    assert [i["run_id"] for i in listed(peer, search_key=run["run_id"])] == [run["run_id"]]


@pytest.mark.parametrize("engine", ENGINES)
def test_the_echoed_run_request_identifies_the_submission(
    peer: Peer, started: list[str], engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``Submission.describes`` compares is what the server echoes, for both engine families."""
    request = TaskRunRequest(
        prompt=unique("Extract the name and price of every product"),
        url=peer.products_url,
        engine=engine,
        data_extraction_schema={
            "type": "array",
            "items": {"type": "object", "properties": {"name": {"type": "string"}}},
        },
        error_code_mapping={"NO_PRODUCTS": "no product is listed"},
    )
    mine = Submission.of(request, "airflow-0000000000000000")
    edited = Submission.of(request.model_copy(update={"prompt": request.prompt + " (edited)"}), "airflow-0")
    run = post_task(peer, started, **request.to_wire())

    set_connection(monkeypatch, host=peer.base_url, password=peer.api_key)
    with SkyvernHook() as hook:
        fetched = hook.get_run(run["run_id"])
    assert mine.describes(fetched)
    assert not edited.describes(fetched)


def test_a_wrong_key_and_a_missing_key_get_skyverns_two_403_texts(peer: Peer) -> None:
    wrong = httpx.get(f"{peer.base_url}/v1/runs", headers={"x-api-key": "sk-wrong"})
    missing = httpx.get(f"{peer.base_url}/v1/runs")
    assert (wrong.status_code, wrong.json()) == (403, {"detail": "Could not validate credentials"})
    assert (missing.status_code, missing.json()) == (403, {"detail": "Invalid credentials"})


def test_a_finished_v2_run_reports_no_screenshots_and_ignores_a_cancel(
    peer: Peer, started: list[str]
) -> None:
    run = post_task(
        peer, started, prompt=unique("Extract the product names"), url=peer.products_url, engine="skyvern-2.0"
    )
    final = peer.wait_final(run["run_id"])
    assert final["status"] == "completed"
    assert final["screenshot_urls"] is None
    assert isinstance(final["run_request"], dict)
    assert final["run_request"]["title"] is None
    with peer.client() as client:
        ignored = client.post(f"/v1/runs/{run['run_id']}/cancel")  # v1 answers 400 here; v2 does not
        assert ignored.status_code == 200
        assert client.get(f"/v1/runs/{run['run_id']}").json()["status"] == "completed"


# ---- the operator: one paid run per task instance ---------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_a_lost_answer_makes_one_run_on_either_engine(
    peer: Peer, started: list[str], engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run is created, the connection drops before the answer: the operator finds it, never resends."""
    with FaultyProxy(peer.base_url) as proxy:
        set_connection(monkeypatch, host=proxy.base_url, password=peer.api_key, extra={"max_retries": 2})
        FastClock(monkeypatch)
        proxy.lose_next_answer("POST", "/v1/run/tasks")
        prompt = unique("Extract the product names")
        operator = SkyvernRunTaskOperator(
            task_id="extract", prompt=prompt, url=peer.products_url, engine=engine, deferrable=True
        )
        context = make_context(FakeStateStore())
        with pytest.raises(TaskDeferred) as deferred:
            operator.execute(context)
        run_id = deferred.value.trigger.run_id  # type: ignore[attr-defined]
        started.append(run_id)
    assert proxy.seen == ["reset after the request was handled"]
    recent = [item["run_id"] for item in listed(peer, page_size=10)]
    assert [rid for rid in recent if _prompt_of(peer, rid) == prompt] == [run_id]  # one run, the adopted one


def _prompt_of(peer: Peer, run_id: str) -> str | None:
    with peer.client() as client:
        body = client.get(f"/v1/runs/{run_id}").json()
    return (body.get("run_request") or {}).get("prompt")


@pytest.mark.parametrize("engine", ENGINES)
def test_a_clear_while_deferred_cancels_the_old_run_and_starts_one_new_run(
    connect: Peer, started: list[str], engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    FastClock(monkeypatch)
    store = FakeStateStore()
    prompt = unique("Extract the product names [fake:slow=30]")

    def try_once(ti: FakeTaskInstance) -> str:
        operator = SkyvernRunTaskOperator(
            task_id="extract", prompt=prompt, url=connect.products_url, engine=engine, deferrable=True
        )
        with pytest.raises(TaskDeferred) as deferred:
            operator.execute(make_context(store, ti))
        run_id = str(deferred.value.trigger.run_id)  # type: ignore[attr-defined]
        started.append(run_id)
        return run_id

    first = try_once(FakeTaskInstance())
    second = try_once(FakeTaskInstance(try_number=2, max_tries=1))  # the clear raised max_tries

    assert first != second
    assert connect.wait_final(first, timeout=60)["status"] == "canceled"
    assert store.values[STATE_KEY]["run_id"] == second
    assert store.values[STATE_KEY]["tag"] == run_tag(make_context(ti=FakeTaskInstance(max_tries=1)))

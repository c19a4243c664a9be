"""``SkyvernRunTaskOperator(replay_as_code=True)`` against the REAL Skyvern 1.0.56 and the emulator: the
prompt becomes one workflow (made with an ``Idempotency-Key``, found again by the fingerprint in its title);
the first day runs as an agent and Skyvern records a script from it; the second day replays that script and
returns what the block extracted, by the task's schema."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from airflow_provider_skyvern.hooks.skyvern import SkyvernHook
from airflow_provider_skyvern.operators.task import SkyvernRunTaskOperator
from airflow_provider_skyvern.runs import prompt_workflow
from airflow_provider_skyvern.runs.prompt_workflow import Template
from tests.conftest import FastClock
from tests.operator_support import FakeStateStore, FakeTaskInstance, make_context

from .conftest import Peer

pytestmark = pytest.mark.real_skyvern
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "price": {"type": "number"}}}


def _day(ds: str, page: str, prompt: str) -> dict[str, Any]:
    context = make_context(FakeStateStore(), FakeTaskInstance(run_id=f"scheduled__{ds}"))
    context.update(ds=ds, params={"page": page})
    operator = SkyvernRunTaskOperator(
        task_id="prices",
        prompt=prompt,
        url="{{ params.page }}",
        data_extraction_schema=SCHEMA,
        replay_as_code=True,
        deferrable=False,
        poll_interval=1,
        timeout=300,
    )
    operator.render_template_fields(context)
    context["return_value"] = operator.execute(context)
    return context


def _script_published(peer: Peer, workflow_id: str, timeout: float = 60) -> list[dict[str, Any]]:
    """The real server publishes the script just after it reports the run completed."""
    deadline = time.monotonic() + timeout
    with peer.client() as client:
        while True:
            scripts: list[dict[str, Any]] = client.get(f"/v1/scripts/workflows/{workflow_id}").json()[
                "scripts"
            ]
            if scripts or time.monotonic() > deadline:
                return scripts
            time.sleep(1)


def test_a_prompt_learns_once_then_replays_as_code(connect: Peer, monkeypatch: pytest.MonkeyPatch) -> None:
    peer = connect
    FastClock(monkeypatch)
    prompt = (
        f"Extract the name and price of the first product (check {uuid.uuid4().hex[:8]}) for {{{{ ds }}}}"
    )

    planned = prompt_workflow.plan(
        Template("prompt", prompt),
        Template("url", "{{ params.page }}"),
        schema=SCHEMA,
        engine="skyvern-2.0",
        block_options={},
    )

    first = _day("2026-12-01", peer.products_url, prompt)
    with peer.client() as client:  # found by the fingerprint in its title, as the operator finds it
        (workflow,) = client.get("/v1/workflows", params={"search_key": planned.search_key}).json()
    scripts = _script_published(peer, workflow["workflow_permanent_id"])
    second = _day("2026-12-02", peer.products_url, prompt)
    with peer.client() as client:
        runs = [client.get(f"/v1/runs/{day['ti'].xcoms['run_id']}").json() for day in (first, second)]
    with SkyvernHook() as hook:  # what a third day, a retry or another deployment would send to create it
        again = hook.create_workflow(planned.definition, idempotency_key=planned.idempotency_key)

    print(
        f"\n{peer.name}: workflow {workflow['workflow_permanent_id']} {workflow['title']!r} "
        f"cache_key={workflow['cache_key']!r} scripts={[(s['script_id'], s['cache_key_value']) for s in scripts]}"
    )
    for run in runs:
        print(
            f"  {run['run_id']} {run['status']} steps={run['step_count']} run_with={run['run_with']} "
            f"script_run={run['script_run']} parameters={run['run_request']['parameters']}"
        )
    print(f"  return values: {first['return_value']!r}, {second['return_value']!r}")
    assert workflow["cache_key"] == "{{ params_page }}"  # the url as the block opens it
    assert (workflow["run_with"], workflow["ai_fallback"]) == ("code", True)
    assert [run["status"] for run in runs] == ["completed", "completed"]
    assert {run["run_request"]["workflow_id"] for run in runs} == {workflow["workflow_permanent_id"]}
    assert [run["run_request"]["parameters"] for run in runs] == [
        {"ds": ds, "params_page": peer.products_url} for ds in ("2026-12-01", "2026-12-02")
    ]
    assert first["ti"].xcoms.get("script_run") is None  # the agent run Skyvern records the script from
    assert second["ti"].xcoms["script_run"]["ai_fallback_triggered"] is False
    assert second["ti"].xcoms["script_run"]["script_id"] == scripts[0]["script_id"]
    assert second["ti"].xcoms["usage"]["replayed_as_code"] == 1
    for day in (first, second):  # what the block extracted, not the workflow's output dict
        assert isinstance(day["return_value"], dict)
        assert set(day["return_value"]) == {"name", "price"}
    assert again.workflow_permanent_id == workflow["workflow_permanent_id"]  # the same key: the same workflow
    assert planned.title == workflow["title"]

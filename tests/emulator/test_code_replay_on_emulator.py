"""Replay as code on the emulator, as Skyvern 1.0.56 does it (docs/emulator.md "Replay as code"): a code run
with no script for its cache key runs as an agent and records one; the next run with that key replays it;
``[emulator page_changed=1]`` makes the replay fail over to the AI (no new revision, as 1.0.56), or fail
when the run's own ``ai_fallback`` is false."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest

from airflow_provider_skyvern.emulator.server import EmulatorServer
from airflow_provider_skyvern.hooks.skyvern import SkyvernHook
from airflow_provider_skyvern.models import WorkflowRunResponse
from airflow_provider_skyvern.requests.workflow import WorkflowRunRequest
from tests.emulator.conftest import RUN_SECONDS, FakeClock

PAGE_CHANGED = "[emulator page_changed=1]"


@pytest.fixture
def api(emulator: EmulatorServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emulator.base_url, headers={"x-api-key": emulator.api_key}) as client:
        yield client


def _workflow(api: httpx.Client, **settings: Any) -> dict[str, Any]:
    definition = {
        "title": f"Replay check {uuid.uuid4().hex[:8]}",
        "workflow_definition": {
            "parameters": [
                {"parameter_type": "workflow", "key": "shop", "workflow_parameter_type": "string"},
                {"parameter_type": "workflow", "key": "note", "workflow_parameter_type": "string"},
            ],
            "blocks": [
                {"block_type": "extraction", "label": "get_product", "url": "https://shop.example/products"}
            ],
        },
        **settings,
    }
    response = api.post("/v1/workflows", json={"json_definition": definition})
    assert response.status_code == 200, response.text
    return dict(response.json())


def _start(hook: SkyvernHook, workflow: dict[str, Any], shop: str = "acme", **fields: Any) -> str:
    parameters = {"shop": shop, "note": fields.pop("note", "")}
    request = WorkflowRunRequest(
        workflow_id=workflow["workflow_permanent_id"], parameters=parameters, **fields
    )
    return hook.run_workflow(request).run_id


def _run(hook: SkyvernHook, run_id: str) -> WorkflowRunResponse:
    run = hook.get_run(run_id)
    assert isinstance(run, WorkflowRunResponse)
    return run


def _finish(
    hook: SkyvernHook, clock: FakeClock, workflow: dict[str, Any], **fields: Any
) -> WorkflowRunResponse:
    expect_failure = fields.pop("expect_failure", False)
    run_id = _start(hook, workflow, **fields)
    clock.advance(2 * RUN_SECONDS)
    run = _run(hook, run_id)
    assert run.status == ("failed" if expect_failure else "completed")
    return run


def _scripts(emulator: EmulatorServer) -> list[dict[str, Any]]:
    return list(emulator.control.get("/_emulator/scripts").json()["scripts"])


def _seconds(run: WorkflowRunResponse) -> float:
    assert run.started_at is not None
    assert run.finished_at is not None
    started, finished = (datetime.fromisoformat(str(t)) for t in (run.started_at, run.finished_at))
    return (finished - started).total_seconds()


def test_a_new_workflow_has_the_code_settings_of_1_0_56_and_is_found_by_title(api: httpx.Client) -> None:
    plain = _workflow(api)
    coded = _workflow(api, run_with="code", ai_fallback=False, cache_key="{{ shop }}", code_version=1)

    settings = ("run_with", "ai_fallback", "cache_key", "adaptive_caching", "code_version")
    assert [plain[k] for k in settings] == ["agent", True, "default", False, 2]
    assert plain["generate_script_on_terminal"] is False
    assert [coded[k] for k in settings] == ["code", False, "{{ shop }}", False, 1]
    word = coded["title"].split()[-1].upper()  # any case, a part of the title
    found = api.get("/v1/workflows", params={"title": word}).json()
    assert [w["workflow_permanent_id"] for w in found] == [coded["workflow_permanent_id"]]
    assert api.get("/v1/workflows", params={"search_key": "no such title"}).json() == []


def test_the_first_code_run_runs_as_an_agent_and_records_a_script_the_next_replays(
    hook: SkyvernHook, api: httpx.Client, emulator: EmulatorServer, clock: FakeClock
) -> None:
    workflow = _workflow(api, cache_key="{{ shop }}")
    first_id = _start(hook, workflow, run_with="code")
    clock.advance(RUN_SECONDS / 2)
    assert _run(hook, first_id).script_run is None
    assert _scripts(emulator) == []  # nothing recorded while it runs
    clock.advance(RUN_SECONDS)
    first = _run(hook, first_id)

    (script,) = _scripts(emulator)
    second_id = _start(hook, workflow, run_with="code")
    at_post = _run(hook, second_id)
    clock.advance(2 * RUN_SECONDS)
    second = _run(hook, second_id)

    assert (first.status, first.run_with, first.script_run, first.script_id) == (
        "completed",
        "code",
        None,
        None,
    )
    assert (script["version"], script["run_id"]) == (1, first_id)
    assert script["cache_key_value"] == "acme:v2"  # the template over the parameters, code 2.0's suffix
    assert at_post.script_run is None  # loaded when the run starts, not at the POST
    assert second.status == "completed"
    assert second.script_run is not None
    assert second.script_run.model_dump() == {
        "ai_fallback_triggered": False,
        "script_id": script["script_id"],
        "script_revision_id": script["script_revision_id"],
    }
    assert second.script_id == script["script_id"]
    assert second.step_count is not None
    assert first.step_count is not None
    assert 1 <= second.step_count <= 2 < first.step_count
    assert _seconds(second) < _seconds(first)
    assert _scripts(emulator) == [script]  # a clean replay records nothing


def test_the_cache_key_picks_the_script(
    hook: SkyvernHook, api: httpx.Client, emulator: EmulatorServer, clock: FakeClock
) -> None:
    keyed = _workflow(api, run_with="code", cache_key="{{ shop }}")
    for shop in ("acme", "globex", "acme"):
        _finish(hook, clock, keyed, shop=shop)
    default = _workflow(api, run_with="code")
    _finish(hook, clock, default, shop="acme")
    replay = _finish(hook, clock, default, shop="initech")  # "default": one script for every parameter

    scripts = _scripts(emulator)
    assert [s["cache_key_value"] for s in scripts] == ["acme:v2", "globex:v2", "default:shop.example:v2"]
    listed = api.get(f"/v1/scripts/workflows/{keyed['workflow_permanent_id']}").json()["scripts"]
    assert [(s["cache_key"], s["cache_key_value"], s["latest_version"]) for s in listed] == [
        ("{{ shop }}", "globex:v2", 1),
        ("{{ shop }}", "acme:v2", 1),
    ]
    assert len({s["script_id"] for s in scripts}) == 3
    assert replay.script_run is not None
    assert replay.script_run.script_id == scripts[2]["script_id"]


def test_a_workflow_saved_as_code_replays_without_run_with_and_agent_runs_never_load_a_script(
    hook: SkyvernHook, api: httpx.Client, emulator: EmulatorServer, clock: FakeClock
) -> None:
    workflow = _workflow(api, run_with="code")
    _finish(hook, clock, workflow)  # records the code script
    inherited = _finish(hook, clock, workflow)
    agent = _finish(hook, clock, workflow, run_with="agent")

    assert inherited.run_with == "code"
    assert inherited.script_run is not None
    assert (agent.run_with, agent.script_run, agent.script_id) == ("agent", None, None)
    assert agent.step_count is not None
    assert inherited.step_count is not None
    assert agent.step_count > inherited.step_count
    # as on 1.0.56, an agent run records a script too, under its key without ":v2", which code runs never use
    assert [s["cache_key_value"] for s in _scripts(emulator)] == [
        "default:shop.example:v2",
        "default:shop.example",
    ]
    again = _finish(hook, clock, workflow, run_with="agent")
    assert again.script_run is None
    assert len(_scripts(emulator)) == 2


def test_a_changed_page_falls_back_to_the_ai_and_keeps_the_script(
    hook: SkyvernHook, api: httpx.Client, emulator: EmulatorServer, clock: FakeClock
) -> None:
    workflow = _workflow(api, run_with="code")
    agent = _finish(hook, clock, workflow)
    (first,) = _scripts(emulator)

    changed_id = _start(hook, workflow, note=PAGE_CHANGED)
    flags = []
    for _ in range(30):
        clock.advance(RUN_SECONDS / 10)
        script_run = _run(hook, changed_id).script_run
        flags.append(None if script_run is None else script_run.ai_fallback_triggered)
    changed = _run(hook, changed_id)
    after = _finish(hook, clock, workflow)

    assert changed.status == "completed"
    assert changed.script_run is not None
    assert changed.script_run.ai_fallback_triggered is True
    assert changed.script_run.script_revision_id == first["script_revision_id"]  # the one it tried
    assert False in flags
    assert flags.index(False) < flags.index(True)  # the replay first, then the AI
    assert changed.step_count == agent.step_count  # the agent's steps, as 1.0.56 counted them
    assert _seconds(changed) > _seconds(agent)  # the failed replay's time, then the agent's
    # 1.0.56 records no new revision after a fallback (inline regeneration is disabled)
    (listed,) = api.get(f"/v1/scripts/workflows/{workflow['workflow_permanent_id']}").json()["scripts"]
    assert (listed["script_id"], listed["latest_version"], listed["version_count"]) == (
        first["script_id"],
        1,
        1,
    )
    assert _scripts(emulator) == [first]
    assert after.script_run is not None
    assert after.script_run.model_dump() == {
        "ai_fallback_triggered": False,
        "script_id": first["script_id"],
        "script_revision_id": first["script_revision_id"],
    }


def test_only_the_runs_own_ai_fallback_false_fails_a_changed_page(
    hook: SkyvernHook, api: httpx.Client, emulator: EmulatorServer, clock: FakeClock
) -> None:
    workflow = _workflow(api, run_with="code", ai_fallback=False, code_version=1)
    _finish(hook, clock, workflow)
    (script,) = _scripts(emulator)
    assert script["cache_key_value"] == "default:shop.example"  # code 1.0: no ":v2"

    # the workflow's false alone does not stop the agent (the gate reads the run's ai_fallback)
    inherited = _finish(hook, clock, workflow, note=PAGE_CHANGED)
    failed = _finish(hook, clock, workflow, ai_fallback=False, note=PAGE_CHANGED, expect_failure=True)

    assert inherited.ai_fallback is None
    assert inherited.script_run is not None
    assert inherited.script_run.ai_fallback_triggered is True
    assert failed.ai_fallback is False
    assert (failed.status, failed.failure_reason) == ("failed", "Block result is None")  # 1.0.56's text
    assert failed.script_run is not None
    assert failed.script_run.ai_fallback_triggered is False
    assert failed.output is not None
    assert failed.output["extracted_information"] == []
    assert failed.output["get_product_output"]["status"] == "failed"
    assert failed.output["get_product_output"]["failure_reason"].startswith("Input text failed: ")
    assert _scripts(emulator) == [script]


def test_a_code_2_workflow_forces_ai_fallback_on_a_code_run(
    hook: SkyvernHook, api: httpx.Client, emulator: EmulatorServer, clock: FakeClock
) -> None:
    workflow = _workflow(api, run_with="code")  # code_version 2 by default
    _finish(hook, clock, workflow)

    forced = _finish(hook, clock, workflow, run_with="code", ai_fallback=False, note=PAGE_CHANGED)
    inherited = _finish(hook, clock, workflow, ai_fallback=False, note=PAGE_CHANGED)  # run_with copied first

    for run in (forced, inherited):
        assert (run.status, run.ai_fallback, run.run_with) == ("completed", True, "code")
        assert run.script_run is not None
        assert run.script_run.ai_fallback_triggered is True


def test_a_canceled_first_run_records_no_script(
    hook: SkyvernHook, api: httpx.Client, emulator: EmulatorServer, clock: FakeClock
) -> None:
    workflow = _workflow(api, run_with="code")
    run_id = _start(hook, workflow)
    clock.advance(RUN_SECONDS / 2)
    hook.cancel_run(run_id)
    clock.advance(2 * RUN_SECONDS)
    next_run = _finish(hook, clock, workflow)

    assert _run(hook, run_id).status == "canceled"
    assert next_run.script_run is None  # it generated, it did not replay
    assert [s["run_id"] for s in _scripts(emulator)] == [next_run.run_id]


def test_a_malformed_page_changed_directive_is_refused(hook: SkyvernHook, api: httpx.Client) -> None:
    workflow = _workflow(api, run_with="code")
    response = api.post(
        "/v1/run/agents",
        json={
            "agent_id": workflow["workflow_permanent_id"],
            "parameters": {"note": "[emulator page_changed=yes]"},
        },
    )
    assert response.status_code == 400
    assert "page_changed" in response.json()["detail"]

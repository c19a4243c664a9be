"""Replay as code against the REAL Skyvern 1.0.56 and the emulator: the same requests, the same answers.

Offline, 1.0.56 really generates a script (no LLM is asked: ``generate_workflow_parameters_schema`` picks
field names deterministically) when a ``run_with="code"`` run of a workflow with no script for its cache key
completes, and the next run with that cache key replays it. Each test runs on both peers (``[real]``,
``[emulator]``) and asserts one behaviour: a drift of the emulator fails here. What the fake LLM cannot make
happen on the real server (a cached script failing on a changed page) is proven on the emulator only
(tests/emulator/test_code_replay_on_emulator.py).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.real_skyvern.conftest import Peer

pytestmark = pytest.mark.real_skyvern
CODE_SETTINGS = ("run_with", "ai_fallback", "cache_key", "adaptive_caching", "code_version")


@pytest.fixture
def started(peer: Peer) -> Iterator[list[str]]:
    run_ids: list[str] = []
    yield run_ids
    peer.settle(run_ids)


def _create(peer: Peer, **settings: Any) -> dict[str, Any]:
    definition = {
        "title": f"Airflow replay check {uuid.uuid4().hex[:8]}",
        "workflow_definition": {
            "parameters": [
                {"parameter_type": "workflow", "key": "shop", "workflow_parameter_type": "string"}
            ],
            "blocks": [
                {
                    "block_type": "extraction",
                    "label": "get_product",
                    "url": peer.products_url,
                    "data_extraction_goal": "Extract the name and price of the first product",
                }
            ],
        },
        **settings,
    }
    with peer.client() as client:
        response = client.post("/v1/workflows", json={"json_definition": definition})
    assert response.status_code == 200, response.text
    return dict(response.json())


def _run(peer: Peer, started: list[str], workflow: dict[str, Any], **body: Any) -> tuple[dict[str, Any], ...]:
    """The POST's answer and the run once it ended."""
    with peer.client() as client:
        response = client.post("/v1/run/agents", json={"agent_id": workflow["workflow_permanent_id"], **body})
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    started.append(created["run_id"])
    return created, peer.wait_final(created["run_id"], timeout=180)


def _scripts(peer: Peer, workflow_id: str, value: str, timeout: float = 60) -> list[dict[str, Any]]:
    """The workflow's scripts once one has the cache key value (the real server publishes it just after
    the run is reported completed)."""
    deadline = time.monotonic() + timeout
    with peer.client() as client:
        while True:
            response = client.get(f"/v1/scripts/workflows/{workflow_id}")
            assert response.status_code == 200, response.text
            scripts: list[dict[str, Any]] = response.json()["scripts"]
            if any(s["cache_key_value"] == value for s in scripts) or time.monotonic() > deadline:
                return scripts
            time.sleep(1)


def test_a_workflow_is_created_with_code_settings_and_found_by_title(peer: Peer) -> None:
    plain = _create(peer)
    coded = _create(peer, run_with="code", cache_key="{{ shop }}")

    assert [plain[k] for k in CODE_SETTINGS] == ["agent", True, "default", False, 2]
    assert [coded[k] for k in CODE_SETTINGS] == ["code", True, "{{ shop }}", False, 2]
    assert plain["generate_script_on_terminal"] is False
    with peer.client() as client:
        found = client.get("/v1/workflows", params={"title": coded["title"].split()[-1].upper()}).json()
    assert [w["workflow_permanent_id"] for w in found] == [coded["workflow_permanent_id"]]


def test_a_code_run_records_a_script_the_next_run_with_its_cache_key_replays(
    peer: Peer, started: list[str]
) -> None:
    workflow = _create(peer, run_with="code", cache_key="{{ shop }}")
    wpid = workflow["workflow_permanent_id"]
    shop = f"shop-{uuid.uuid4().hex[:6]}"

    posted, first = _run(peer, started, workflow, parameters={"shop": shop}, run_with="code")
    scripts = _scripts(peer, wpid, f"{shop}:v2")
    _, replay = _run(peer, started, workflow, parameters={"shop": shop}, run_with="code", ai_fallback=False)
    _, inherited = _run(peer, started, workflow, parameters={"shop": shop})  # the workflow says code
    _, agent = _run(peer, started, workflow, parameters={"shop": shop}, run_with="agent")
    print(
        f"\n{peer.name}: generate {first['run_id']} {first['status']} script_run={first['script_run']}"
        f"\n  replay {replay['run_id']} {replay['status']} script_run={replay['script_run']}"
        f" ai_fallback={replay['ai_fallback']}\n  inherited {inherited['run_id']} {inherited['status']}"
        f" script_run={inherited['script_run']}\n  agent {agent['run_id']} {agent['status']}"
        f" script_run={agent['script_run']}\n  scripts {scripts}"
    )

    assert (posted["status"], posted["script_run"], posted["run_with"]) == ("created", None, "code")
    assert (first["status"], first["run_with"], first["script_run"], first["script_id"]) == (
        "completed",
        "code",
        None,
        None,
    )
    (script,) = [s for s in scripts if s["cache_key_value"] == f"{shop}:v2"]
    assert (script["cache_key"], script["status"], script["latest_version"]) == ("{{ shop }}", "published", 1)
    for run in (replay, inherited):
        assert run["status"] == "completed"
        assert run["run_with"] == "code"
        assert run["script_id"] == script["script_id"]
        assert run["script_run"]["ai_fallback_triggered"] is False
        assert run["script_run"]["script_id"] == script["script_id"]
        assert run["script_run"]["script_revision_id"].startswith("sr_")
    assert replay["script_run"] == inherited["script_run"]  # the same revision, nothing new recorded
    assert replay["ai_fallback"] is True  # false is overridden for a code run of a code 2.0 workflow
    assert inherited["ai_fallback"] is None
    assert (agent["status"], agent["run_with"], agent["script_run"], agent["script_id"]) == (
        "completed",
        "agent",
        None,
        None,
    )
    # the agent run records a script too, under the key without ":v2", which code runs never load
    values = {s["cache_key_value"] for s in _scripts(peer, wpid, shop)}
    assert values == {f"{shop}:v2", shop}
    with peer.client() as client:
        listed = {
            item["run_id"]: item["script_run"]
            for item in client.get("/v1/runs", params={"search_key": wpid}).json()
        }
    # the list's flag stays false even for a replay: 1.0.56 never sets task_runs.script_run
    assert listed[replay["run_id"]] is False
    assert listed[first["run_id"]] is False


# ---- a changed page: the shop's form page first, then a page without the form ----------------------------

PAGE_CHANGED = "[emulator page_changed=1]"
"""Tells the emulator the page changed; the real server ignores it (an unused parameter) and really sees
another page: the script recorded on the form page finds no e-mail input on the products page."""


def _form_workflow(peer: Peer, **settings: Any) -> dict[str, Any]:
    definition = {
        "title": f"Airflow replay form {uuid.uuid4().hex[:8]}",
        "run_with": "code",
        "cache_key": f"form-{uuid.uuid4().hex[:6]}",  # the same script whatever the page
        "workflow_definition": {
            "parameters": [
                {"parameter_type": "workflow", "key": key, "workflow_parameter_type": "string"}
                for key in ("page", "note")
            ],
            "blocks": [
                {
                    "block_type": "task",
                    "label": "subscribe",
                    "url": "{{ page }}",
                    "navigation_goal": "Subscribe to the newsletter with the e-mail ci@example.com",
                }
            ],
        },
        **settings,
    }
    with peer.client() as client:
        response = client.post("/v1/workflows", json={"json_definition": definition})
    assert response.status_code == 200, response.text
    return dict(response.json())


def _pages(peer: Peer) -> tuple[str, str]:
    base = peer.products_url.rsplit("/", 1)[0]
    return f"{base}/index.html", peer.products_url


@pytest.mark.parametrize("code_version", [2, 1])
def test_a_changed_page_falls_back_to_the_ai_and_keeps_the_script(
    peer: Peer, started: list[str], code_version: int
) -> None:
    workflow = _form_workflow(peer, code_version=code_version)
    wpid, key = workflow["workflow_permanent_id"], workflow["cache_key"]
    value = f"{key}:v2" if code_version == 2 else key
    form, products = _pages(peer)

    _, first = _run(peer, started, workflow, parameters={"page": form, "note": ""}, run_with="code")
    (script,) = _scripts(peer, wpid, value)
    _, changed = _run(peer, started, workflow, parameters={"page": products, "note": PAGE_CHANGED})
    after = _scripts(peer, wpid, value)
    print(
        f"\n{peer.name} code {code_version}: {first['run_id']} {first['status']}; {changed['run_id']}"
        f" {changed['status']} script_run={changed['script_run']}; scripts {after}"
    )

    assert (first["status"], first["script_run"]) == ("completed", None)
    assert script["cache_key_value"] == value
    assert changed["status"] == "completed"
    assert changed["ai_fallback"] is None  # the workflow's true applies
    assert changed["script_run"]["ai_fallback_triggered"] is True
    assert changed["script_run"]["script_id"] == script["script_id"]
    assert [(s["script_id"], s["latest_version"], s["version_count"]) for s in after] == [
        (script["script_id"], 1, 1)  # no new revision after the fallback
    ]


def test_a_changed_page_fails_the_run_when_its_ai_fallback_is_false(peer: Peer, started: list[str]) -> None:
    workflow = _form_workflow(peer, code_version=1)  # code 2.0 would force ai_fallback back to true
    form, products = _pages(peer)
    _, first = _run(peer, started, workflow, parameters={"page": form, "note": ""}, run_with="code")
    _scripts(peer, workflow["workflow_permanent_id"], workflow["cache_key"])

    _, failed = _run(
        peer,
        started,
        workflow,
        parameters={"page": products, "note": PAGE_CHANGED},
        run_with="code",
        ai_fallback=False,
    )
    print(
        f"\n{peer.name}: {failed['run_id']} {failed['status']} {failed['failure_reason']!r} {failed['script_run']}"
    )

    assert first["status"] == "completed"
    assert (failed["status"], failed["failure_reason"], failed["ai_fallback"]) == (
        "failed",
        "Block result is None",
        False,
    )
    assert failed["script_run"]["ai_fallback_triggered"] is False
    output = failed["output"]
    assert output["extracted_information"] == []
    (block,) = [v for k, v in output.items() if k.endswith("_output") and v and v["status"] == "failed"]
    assert block["failure_reason"].startswith("Input text failed: ")  # the cached script's own error

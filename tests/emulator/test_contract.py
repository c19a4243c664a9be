"""Every emulator answer the provider reads validates against Skyvern's published OpenAPI document."""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from airflow_provider_skyvern.emulator.server import EmulatorServer
from tests.emulator.conftest import RUN_SECONDS, FakeClock


def _validate(openapi: dict[str, Any], component: str, instance: Any) -> None:
    registry: Registry[Any] = Registry().with_resource(
        "urn:skyvern", Resource(contents=openapi, specification=DRAFT202012)
    )
    validator = jsonschema.Draft202012Validator(
        {"$ref": f"urn:skyvern#/components/schemas/{component}"},
        registry=registry,
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )
    validator.validate(instance)


@pytest.fixture
def api(emulator: EmulatorServer) -> httpx.Client:
    emulator.control.headers["x-api-key"] = emulator.api_key
    return emulator.control


def test_task_run_responses_match_the_schema(
    openapi: dict[str, Any], api: httpx.Client, clock: FakeClock
) -> None:
    body = {
        "prompt": "Download the invoice",
        "engine": "skyvern-2.0",
        "data_extraction_schema": {"type": "object", "properties": {"total": {"type": "number"}}},
        "error_code_mapping": {"NO_INVOICE": "no invoice"},
    }
    created = api.post("/v1/run/tasks", json=body).json()
    failing = api.post(
        "/v1/run/tasks", json={"prompt": "x [emulator outcome=failed]", "error_code_mapping": {"E": "e"}}
    ).json()
    _validate(openapi, "TaskRunResponse", created)
    clock.advance(RUN_SECONDS)

    for run in (created, failing):
        _validate(openapi, "TaskRunResponse", api.get(f"/v1/runs/{run['run_id']}").json())
    for item in api.get("/v1/runs").json():
        _validate(openapi, "TaskRunListItem", item)
    for artifact in api.get(f"/v1/runs/{created['run_id']}/artifacts").json():
        _validate(openapi, "Artifact", artifact)
    for entry in api.get(f"/v1/runs/{created['run_id']}/timeline").json():
        _validate(openapi, "WorkflowRunTimeline", entry)


def test_workflow_run_responses_match_the_schema(
    openapi: dict[str, Any], api: httpx.Client, clock: FakeClock
) -> None:
    created = api.post("/v1/run/agents", json={"agent_id": "wpid_42", "parameters": {"q": "x"}}).json()
    clock.advance(RUN_SECONDS)

    _validate(openapi, "WorkflowRunResponse", created)
    _validate(openapi, "WorkflowRunResponse", api.get(f"/v1/runs/{created['run_id']}").json())


def test_browser_session_and_webhook_replay_match_the_schema(
    openapi: dict[str, Any], api: httpx.Client, clock: FakeClock
) -> None:
    session = api.post("/v1/browser_sessions", json={"timeout": 30}).json()
    run = api.post("/v1/run/tasks", json={"prompt": "p"}).json()
    clock.advance(RUN_SECONDS)
    replay = api.post(
        f"/v1/runs/{run['run_id']}/retry_webhook", json={"webhook_url": "http://127.0.0.1:9/x"}
    ).json()

    _validate(openapi, "BrowserSessionResponse", session)
    _validate(openapi, "RunWebhookReplayResponse", replay)
    assert replay["error"]
    assert replay["status_code"] is None


def test_error_bodies_have_skyverns_shapes(api: httpx.Client) -> None:
    not_found = api.get("/v1/runs/tsk_1")
    invalid = api.post("/v1/run/tasks", json={"prompt": 3})
    forbidden = httpx.get(f"{api.base_url}/v1/runs/tsk_1", headers={"x-api-key": "nope"})
    keyless = httpx.get(f"{api.base_url}/v1/runs/tsk_1")

    assert (not_found.status_code, not_found.json()) == (404, {"detail": "Task run not found tsk_1"})
    assert invalid.status_code == 422
    assert invalid.json()["detail"][0]["loc"] == ["body", "prompt"]
    # Skyvern 1.0.56: a wrong key and a missing key get different texts
    assert (forbidden.status_code, forbidden.json()) == (403, {"detail": "Could not validate credentials"})
    assert (keyless.status_code, keyless.json()) == (403, {"detail": "Invalid credentials"})

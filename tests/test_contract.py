"""Our models against Skyvern's published OpenAPI document (../shared/skyvern/openapi.json)."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from airflow_provider_skyvern.models import (
    CreateBrowserSessionRequest,
    DownloadFilesRequest,
    LoginRequest,
    ProxyLocation,
    RunEngine,
    RunStatus,
    TaskRunRequest,
    WorkflowRunRequest,
)
from tests.test_hook import EVERY_SEED_PARAMETER

# Server-only or SDK-only fields that the published schema does not list.
NOT_IN_OPENAPI = {
    "TaskRunRequest-Input": {"file_ids"},
    "WorkflowRunRequest-Input": {"browser_type", "file_ids"},
    "LoginRequest": {"onepassword_totp_field_name"},
}


def _validator(openapi: dict[str, Any], component: str) -> jsonschema.Draft202012Validator:
    registry: Registry[Any] = Registry().with_resource(
        "urn:skyvern", Resource(contents=openapi, specification=DRAFT202012)
    )
    return jsonschema.Draft202012Validator(
        {"$ref": f"urn:skyvern#/components/schemas/{component}"}, registry=registry
    )


def _properties(openapi: dict[str, Any], component: str) -> set[str]:
    return set(openapi["components"]["schemas"][component]["properties"])


@pytest.mark.parametrize(
    ("model", "component", "renamed"),
    [
        (TaskRunRequest, "TaskRunRequest-Input", {}),
        (WorkflowRunRequest, "WorkflowRunRequest-Input", {"workflow_id": "agent_id"}),
        (CreateBrowserSessionRequest, "CreateBrowserSessionRequest", {}),
        (LoginRequest, "LoginRequest", {}),
        (DownloadFilesRequest, "DownloadFilesRequest", {}),
    ],
)
def test_request_models_cover_every_published_field(
    openapi: dict[str, Any], model: type[Any], component: str, renamed: dict[str, str]
) -> None:
    ours = {renamed.get(name, name) for name in model.model_fields}
    published = _properties(openapi, component)
    assert published - ours <= {"needs_live_view"}, f"fields we cannot send: {published - ours}"
    assert ours - published == NOT_IN_OPENAPI.get(component, set())


@pytest.mark.parametrize(
    ("enum", "component"),
    [(RunEngine, "RunEngine"), (RunStatus, "RunStatus"), (ProxyLocation, "ProxyLocation")],
)
def test_enums_match_the_published_values(openapi: dict[str, Any], enum: type[Any], component: str) -> None:
    assert enum.known_values() == openapi["components"]["schemas"][component]["enum"]


def test_a_full_task_request_validates_against_the_schema(openapi: dict[str, Any]) -> None:
    _validator(openapi, "TaskRunRequest-Input").validate(EVERY_SEED_PARAMETER.to_wire())


def test_a_full_workflow_request_validates_against_the_schema(openapi: dict[str, Any]) -> None:
    body = WorkflowRunRequest(
        workflow_id="wpid_1",
        parameters={"q": "x"},
        title="t",
        proxy_location={"country": "US"},
        webhook_url="https://h.example.com",
        max_elapsed_time_minutes=30,
        run_metadata={"dag_id": "d"},
    ).to_wire()
    _validator(openapi, "WorkflowRunRequest-Input").validate(body)


def test_full_login_and_download_requests_validate_against_the_schema(openapi: dict[str, Any]) -> None:
    shared = {
        "url": "https://portal.example.com",
        "webhook_url": "https://h.example.com",
        "proxy_location": "RESIDENTIAL_GB",
        "totp_identifier": "ops@example.com",
        "browser_session_id": "pbs_1",
        "extra_http_headers": {"Accept-Language": "en"},
        "max_screenshot_scrolling_times": 2,
    }
    for credential_type in ("skyvern", "bitwarden", "1password", "azure_vault"):
        login = LoginRequest(credential_type=credential_type, credential_id="cred_1", prompt="p", **shared)
        _validator(openapi, "LoginRequest").validate(login.to_wire())
    download = DownloadFilesRequest(
        navigation_goal="g", download_suffix="x", download_timeout=30.5, max_steps_per_run=5, **shared
    )
    _validator(openapi, "DownloadFilesRequest").validate(download.to_wire())


def test_the_schema_rejects_what_our_validation_rejects(openapi: dict[str, Any]) -> None:
    """Guards the helper itself: a bad body must fail, or the two tests above prove nothing."""
    with pytest.raises(jsonschema.ValidationError):
        _validator(openapi, "TaskRunRequest-Input").validate({"prompt": 3})

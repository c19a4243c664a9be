"""The body of a workflow run, apart from :mod:`.requests`: a DAG file with only task operators skips it."""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, Field

from airflow_provider_skyvern.requests.base import PROXY_NULL_IS_MEANINGFUL, ProxySetting, RequestBody


class WorkflowRunRequest(RequestBody):
    """
    Body of ``POST /v1/run/agents`` (an agent is a workflow).

    ``workflow_id`` (the ``wpid_…`` id) goes out as ``agent_id``, the key of SDK 1.0.56 and the published
    OpenAPI; like the server, the model also takes ``agent_id`` on input.
    """

    NULL_IS_MEANINGFUL = PROXY_NULL_IS_MEANINGFUL

    workflow_id: str = Field(
        validation_alias=AliasChoices("agent_id", "workflow_id"), serialization_alias="agent_id"
    )
    parameters: dict[str, Any] | None = None
    title: str | None = None
    proxy_location: ProxySetting | None = None
    webhook_url: str | None = None
    totp_url: str | None = None
    totp_identifier: str | None = None
    browser_session_id: str | None = None
    browser_profile_id: str | None = None
    reuse_browser_session: bool | None = None
    start_fresh_browser: bool | None = None
    max_screenshot_scrolls: int | None = None
    max_elapsed_time_minutes: int | None = Field(default=None, ge=1, le=480)
    extra_http_headers: dict[str, str] | None = None
    cdp_connect_headers: dict[str, str] | None = None
    browser_address: str | None = None
    ai_fallback: bool | None = None
    run_with: str | None = None
    run_metadata: dict[str, str] | None = None
    browser_type: str | None = None
    file_ids: list[str] | None = None

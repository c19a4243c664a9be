"""The body of ``POST /v1/run/tasks``, checked at DAG parse time."""

from __future__ import annotations

from typing import Any

from airflow_provider_skyvern.enums import RunEngine
from airflow_provider_skyvern.requests.base import PROXY_NULL_IS_MEANINGFUL, ProxySetting, RequestBody


class TaskRunRequest(RequestBody):
    """Body of ``POST /v1/run/tasks``."""

    NULL_IS_MEANINGFUL = PROXY_NULL_IS_MEANINGFUL

    prompt: str
    url: str | None = None
    engine: RunEngine | None = None
    title: str | None = None
    proxy_location: ProxySetting | None = None
    data_extraction_schema: dict[str, Any] | list[Any] | str | None = None
    error_code_mapping: dict[str, str] | None = None
    max_steps: int | None = None
    webhook_url: str | None = None
    totp_identifier: str | None = None
    totp_url: str | None = None
    browser_session_id: str | None = None
    browser_profile_id: str | None = None
    start_fresh_browser: bool | None = None
    model: dict[str, Any] | None = None
    extra_http_headers: dict[str, str] | None = None
    cdp_connect_headers: dict[str, str] | None = None
    publish_workflow: bool | None = None
    include_action_history_in_verification: bool | None = None
    max_screenshot_scrolls: int | None = None
    browser_address: str | None = None
    run_with: str | None = None
    file_ids: list[str] | None = None

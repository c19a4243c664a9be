"""Pydantic models of Skyvern's wire format (API.md §2-§3).

Skyvern's server moves faster than any client: responses keep unknown fields (``extra="allow"``) and
enums are open (an unknown value is kept as a pseudo-member instead of failing validation), so a new
server release never breaks a running DAG. The enums (:mod:`.enums`) and request bodies
(:mod:`.requests`) live apart, for cheap DAG parsing, and are re-exported here.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from airflow_provider_skyvern.enums import (
    ArtifactType,
    OpenEnum,
    ProxyLocation,
    RunEngine,
    RunStatus,
    RunType,
)
from airflow_provider_skyvern.requests.base import (
    PROXY_NULL_IS_MEANINGFUL,
    GeoTarget,
    ProxySetting,
    RequestBody,
)
from airflow_provider_skyvern.requests.run_block import DownloadFilesRequest, LoginRequest
from airflow_provider_skyvern.requests.task import TaskRunRequest
from airflow_provider_skyvern.requests.workflow import WorkflowRunRequest

__all__ = [
    "Artifact",
    "ArtifactType",
    "BrowserSession",
    "CreateBrowserSessionRequest",
    "DownloadFilesRequest",
    "FileInfo",
    "GeoTarget",
    "LoginRequest",
    "OpenEnum",
    "ProxyLocation",
    "ProxySetting",
    "RunEngine",
    "RunListItem",
    "RunResponse",
    "RunStatus",
    "RunType",
    "SavedWorkflow",
    "ScriptRunResponse",
    "TaskRunRequest",
    "TaskRunResponse",
    "TimelineEntry",
    "UtcDatetime",
    "WebhookReplayResponse",
    "WorkflowRunRequest",
    "WorkflowRunResponse",
    "parse_run_response",
]


def _as_utc(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]
"""Skyvern sometimes serializes timestamps without an offset; they are UTC."""


class _Response(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, defer_build=True)


class CreateBrowserSessionRequest(RequestBody):
    """Body of ``POST /v1/browser_sessions``; ``timeout`` is in minutes (server caps it at 240)."""

    NULL_IS_MEANINGFUL = PROXY_NULL_IS_MEANINGFUL

    url: str | None = None
    timeout: int | None = Field(default=None, ge=5)
    proxy_location: ProxySetting | None = None
    proxy_session_id: str | None = None
    extensions: list[str] | None = None
    browser_type: str | None = None
    browser_profile_id: str | None = None
    generate_browser_profile: bool | None = None


class FileInfo(_Response):
    url: str
    checksum: str | None = None
    filename: str | None = None
    file_size: int | None = None
    modified_at: UtcDatetime | None = None
    artifact_id: str | None = None


class ScriptRunResponse(_Response):
    ai_fallback_triggered: bool = False
    script_id: str | None = None
    script_revision_id: str | None = None


class RunResponse(_Response):
    """Fields common to every run type (server ``BaseRunResponse``)."""

    run_id: str
    status: RunStatus
    run_type: RunType | None = None
    output: dict[str, Any] | list[Any] | str | None = None
    downloaded_files: list[FileInfo] | None = None
    recording_url: str | None = None
    recording_archived: bool | None = None
    screenshot_urls: list[str] | None = None
    failure_reason: str | None = None
    created_at: UtcDatetime
    modified_at: UtcDatetime
    queued_at: UtcDatetime | None = None
    started_at: UtcDatetime | None = None
    finished_at: UtcDatetime | None = None
    app_url: str | None = None
    browser_session_id: str | None = None
    browser_profile_id: str | None = None
    max_screenshot_scrolls: int | None = None
    script_run: ScriptRunResponse | None = None
    errors: list[dict[str, Any]] | None = None
    step_count: int | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def error_codes(self) -> list[str]:
        """Error codes Skyvern attached to a failed run (from ``errors`` entries)."""
        return [str(err["error_code"]) for err in self.errors or [] if err.get("error_code")]


class TaskRunResponse(RunResponse):
    TASK_RUN_TYPES: ClassVar[frozenset[str]] = frozenset(
        {"task_v1", "task_v2", "task_v3", "openai_cua", "anthropic_cua", "ui_tars", "yutori_navigator"}
    )
    run_request: dict[str, Any] | None = None


class WorkflowRunResponse(RunResponse):
    run_type: RunType | None = RunType.workflow_run
    run_with: str | None = None
    ai_fallback: bool | None = None
    script_id: str | None = None
    run_request: dict[str, Any] | None = None
    attempt: int | None = None
    retry_pending: bool | None = None
    next_attempt_at: UtcDatetime | None = None

    @property
    def is_terminal(self) -> bool:
        """A workflow waiting for an automatic retry is not finished yet."""
        return self.status.is_terminal and not self.retry_pending


def parse_run_response(payload: Any) -> RunResponse:
    """``GET /v1/runs/{id}``: the model is chosen by ``run_type``; an unknown run type still parses."""
    run_type = payload.get("run_type") if isinstance(payload, dict) else None
    if run_type == RunType.workflow_run:
        return WorkflowRunResponse.model_validate(payload)
    if run_type in TaskRunResponse.TASK_RUN_TYPES:
        return TaskRunResponse.model_validate(payload)
    return RunResponse.model_validate(payload)


class RunListItem(_Response):
    """One row of ``GET /v1/runs``."""

    task_run_id: str
    run_id: str
    task_run_type: RunType
    status: RunStatus
    title: str | None = None
    started_at: UtcDatetime | None = None
    finished_at: UtcDatetime | None = None
    created_at: UtcDatetime
    workflow_permanent_id: str | None = None
    workflow_deleted: bool | None = None
    trigger_type: str | None = None


class Artifact(_Response):
    artifact_id: str
    artifact_type: ArtifactType
    uri: str
    organization_id: str
    created_at: UtcDatetime
    modified_at: UtcDatetime
    run_id: str | None = None
    task_id: str | None = None
    step_id: str | None = None
    workflow_run_id: str | None = None
    browser_session_id: str | None = None
    checksum: str | None = None
    file_size: int | None = None
    signed_url: str | None = None
    archived: bool | None = None


class TimelineEntry(_Response):
    """One node of ``GET /v1/runs/{id}/timeline``; ``block`` and ``thought`` keep Skyvern's full objects."""

    type: Literal["thought", "block"] | str
    block: dict[str, Any] | None = None
    thought: dict[str, Any] | None = None
    children: list[TimelineEntry] | None = None
    created_at: UtcDatetime
    modified_at: UtcDatetime


class WebhookReplayResponse(_Response):
    run_id: str
    run_type: str
    default_webhook_url: str | None = None
    target_webhook_url: str | None = None
    payload: str
    headers: dict[str, str]
    status_code: int | None = None
    latency_ms: int | None = None
    response_body: str | None = None
    error: str | None = None


class BrowserSession(_Response):
    browser_session_id: str
    organization_id: str
    status: str | None = None
    timeout: int | None = None
    browser_address: str | None = None
    app_url: str | None = None
    created_at: UtcDatetime
    modified_at: UtcDatetime
    started_at: UtcDatetime | None = None
    completed_at: UtcDatetime | None = None
    warning: str | None = None


class SavedWorkflow(_Response):
    """A workflow (agent) as ``POST /v1/workflows`` and ``GET /v1/workflows`` answer: what finding one again
    needs (its id, title, age, and whether it was deleted)."""

    workflow_permanent_id: str
    title: str
    version: int | None = None
    created_at: UtcDatetime | None = None
    """The latest version's (a list answers each workflow's latest version)."""
    original_created_at: UtcDatetime | None = None
    """The first version's, in a list's answer."""
    deleted_at: UtcDatetime | None = None
    run_with: str | None = None
    cache_key: str | None = None

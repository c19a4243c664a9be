"""The endpoint table: each Skyvern endpoint the hook offers, described once as an :class:`ApiCall`.

A function here is named like the hook methods it becomes (``get_run`` gives ``SkyvernHook.get_run`` and
``SkyvernHook.aget_run``) and takes the same arguments, so the sync and async methods cannot disagree.
It only describes the request (method, path, body, parser, whether it creates a billable resource);
:mod:`.skyvern` sends it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from urllib.parse import quote

from pydantic import TypeAdapter

from airflow_provider_skyvern.models import (
    Artifact,
    ArtifactType,
    BrowserSession,
    CreateBrowserSessionRequest,
    RunListItem,
    RunResponse,
    RunStatus,
    RunType,
    SavedWorkflow,
    TaskRunRequest,
    TaskRunResponse,
    TimelineEntry,
    WebhookReplayResponse,
    WorkflowRunRequest,
    WorkflowRunResponse,
    parse_run_response,
)

if TYPE_CHECKING:
    from airflow_provider_skyvern.requests.run_block import DownloadFilesRequest, LoginRequest

T = TypeVar("T")
QueryParams = list[tuple[str, str | int | float | bool | None]]
ArtifactTypes = ArtifactType | str | Iterable[ArtifactType | str] | None
"""One artifact type or several (each sent as a repeated ``artifact_type`` query key)."""


@dataclass(frozen=True)
class ApiCall(Generic[T]):
    """One Skyvern request, independent of sync/async transport."""

    method: str
    path: str
    parse: Callable[[Any], T]
    json: Any = None
    params: QueryParams = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    creates: bool = False
    """Creates a billable resource: retried only when nothing can have been created."""
    deadline: float | None = None
    """Unix time by which the call gives up, retries included (None: only ``total_timeout`` binds)."""

    def request_arguments(self) -> dict[str, Any]:
        """Keyword arguments of ``httpx.Client.request`` for this call."""
        return {
            "method": self.method,
            "url": self.path,
            "json": self.json,
            "params": self.params,
            "headers": self.headers,
        }


def path_id(value: str, name: str) -> str:
    """An id as one path segment; an empty one is the caller's mistake, said before any request."""
    if not value or not value.strip():
        raise ValueError(f"{name} must be a non-empty string")
    return quote(value, safe="")


def _model_parser(adapter: TypeAdapter[T]) -> Callable[[Any], T]:
    return adapter.validate_python


def _none(_: Any) -> None:
    return None


_TASK_RUN = _model_parser(TypeAdapter(TaskRunResponse))
_WORKFLOW_RUN = _model_parser(TypeAdapter(WorkflowRunResponse))
_TIMELINE = _model_parser(TypeAdapter(list[TimelineEntry]))
_ARTIFACTS = _model_parser(TypeAdapter(list[Artifact]))
_ARTIFACT = _model_parser(TypeAdapter(Artifact))
_RUN_LIST = _model_parser(TypeAdapter(list[RunListItem]))
_WEBHOOK_REPLAY = _model_parser(TypeAdapter(WebhookReplayResponse))
_BROWSER_SESSION = _model_parser(TypeAdapter(BrowserSession))
_BROWSER_SESSIONS = _model_parser(TypeAdapter(list[BrowserSession]))
_WORKFLOW = _model_parser(TypeAdapter(SavedWorkflow))
_WORKFLOWS = _model_parser(TypeAdapter(list[SavedWorkflow]))


def _agent_headers(user_agent: str | None) -> dict[str, str]:
    return {"x-user-agent": user_agent} if user_agent else {}


def run_task(request: TaskRunRequest, *, user_agent: str | None = None) -> ApiCall[TaskRunResponse]:
    """Start a task run (``POST /v1/run/tasks``); never blindly retried, see :mod:`.retry`."""
    return ApiCall(
        "POST",
        "/v1/run/tasks",
        _TASK_RUN,
        json=request.to_wire(),
        headers=_agent_headers(user_agent),
        creates=True,
    )


def run_workflow(
    request: WorkflowRunRequest,
    *,
    user_agent: str | None = None,
    max_steps_override: int | None = None,
    template: bool | None = None,
) -> ApiCall[WorkflowRunResponse]:
    """
    Start a workflow (agent) run: ``POST /v1/run/agents``, the path of SDK 1.0.56 and the OpenAPI.

    ``template`` is sent as ``?template=true`` only when true: false is the server's default and the
    official SDK sends no query for it.
    """
    headers = _agent_headers(user_agent)
    if max_steps_override is not None:
        headers["x-max-steps-override"] = str(max_steps_override)
    # /v1/run/workflows (body key workflow_id) is a hidden alias on the server; this is the public route.
    return ApiCall(
        "POST",
        "/v1/run/agents",
        _WORKFLOW_RUN,
        json=request.to_wire(),
        params=[("template", "true")] if template else [],
        headers=headers,
        creates=True,
    )


def _run_block(
    block: str, request: LoginRequest | DownloadFilesRequest, user_agent: str | None
) -> ApiCall[WorkflowRunResponse]:
    return ApiCall(
        "POST",
        f"/v1/run/tasks/{block}",
        _WORKFLOW_RUN,
        json=request.to_wire(),
        headers=_agent_headers(user_agent),
        creates=True,
    )


def run_login(request: LoginRequest, *, user_agent: str | None = None) -> ApiCall[WorkflowRunResponse]:
    """
    Log in with a stored credential (``POST /v1/run/tasks/login``). Skyvern builds a one-block
    workflow for it: the answer is a workflow run (``wr_…``). Never blindly retried, like every create.
    """
    return _run_block("login", request, user_agent)


def run_download_files(
    request: DownloadFilesRequest, *, user_agent: str | None = None
) -> ApiCall[WorkflowRunResponse]:
    """Download files (``POST /v1/run/tasks/download_files``); a workflow run, as for :func:`run_login`."""
    return _run_block("download_files", request, user_agent)


def get_run(run_id: str, *, deadline: float | None = None) -> ApiCall[RunResponse]:
    """``deadline`` (Unix time) bounds the call, retries included, for a wait that must end on time."""
    return ApiCall("GET", f"/v1/runs/{path_id(run_id, 'run_id')}", parse_run_response, deadline=deadline)


def cancel_run(run_id: str) -> ApiCall[None]:
    return ApiCall("POST", f"/v1/runs/{path_id(run_id, 'run_id')}/cancel", _none)


def get_run_timeline(run_id: str, *, deadline: float | None = None) -> ApiCall[list[TimelineEntry]]:
    """Workflow runs and skyvern-2.0 tasks only: Skyvern answers 400 for a skyvern-1.0 task."""
    return ApiCall("GET", f"/v1/runs/{path_id(run_id, 'run_id')}/timeline", _TIMELINE, deadline=deadline)


def get_run_artifacts(run_id: str, artifact_types: ArtifactTypes = None) -> ApiCall[list[Artifact]]:
    """A run's artifacts; ``artifact_types`` (one type or several) filters them, ``None`` lists all."""
    # A str is itself an iterable (of letters): one type given bare must not become one filter per letter.
    types = (artifact_types,) if isinstance(artifact_types, str) else artifact_types or ()
    params: QueryParams = [("artifact_type", str(ArtifactType(t).value)) for t in types]
    return ApiCall("GET", f"/v1/runs/{path_id(run_id, 'run_id')}/artifacts", _ARTIFACTS, params=params)


def get_artifact(artifact_id: str) -> ApiCall[Artifact]:
    return ApiCall("GET", f"/v1/artifacts/{path_id(artifact_id, 'artifact_id')}", _ARTIFACT)


def retry_run_webhook(run_id: str, webhook_url: str | None = None) -> ApiCall[WebhookReplayResponse]:
    body = {"webhook_url": webhook_url} if webhook_url else None
    # Not `creates`, but a replay delivers a webhook: like a create, it is retried only when unsent.
    return ApiCall(
        "POST",
        f"/v1/runs/{path_id(run_id, 'run_id')}/retry_webhook",
        _WEBHOOK_REPLAY,
        json=body,
        creates=True,
    )


def list_runs(
    *,
    search_key: str | None = None,
    statuses: Sequence[RunStatus | str] = (),
    page: int = 1,
    page_size: int = 10,
    run_types: Sequence[RunType | str] = (),
    tags: Sequence[str] = (),
) -> ApiCall[list[RunListItem]]:
    """``tags``: ``key:value`` terms matched against a workflow run's ``run_metadata`` (AND'd)."""
    params: QueryParams = [("page", page), ("page_size", page_size)]
    params += [("status", str(RunStatus(s).value)) for s in statuses]
    params += [("run_type", str(RunType(t).value)) for t in run_types]
    params += [("tags", term) for term in tags]
    if search_key:
        params.append(("search_key", search_key))
    return ApiCall("GET", "/v1/runs", _RUN_LIST, params=params)


def create_browser_session(request: CreateBrowserSessionRequest | None = None) -> ApiCall[BrowserSession]:
    body = (request or CreateBrowserSessionRequest()).to_wire()
    return ApiCall("POST", "/v1/browser_sessions", _BROWSER_SESSION, json=body, creates=True)


def get_browser_session(browser_session_id: str) -> ApiCall[BrowserSession]:
    return ApiCall(
        "GET", f"/v1/browser_sessions/{path_id(browser_session_id, 'browser_session_id')}", _BROWSER_SESSION
    )


def list_browser_sessions() -> ApiCall[list[BrowserSession]]:
    """``GET /v1/browser_sessions``: the organisation's sessions as the server lists them."""
    return ApiCall("GET", "/v1/browser_sessions", _BROWSER_SESSIONS)


def close_browser_session(browser_session_id: str) -> ApiCall[None]:
    return ApiCall(
        "POST", f"/v1/browser_sessions/{path_id(browser_session_id, 'browser_session_id')}/close", _none
    )


def create_workflow(
    definition: dict[str, Any], *, idempotency_key: str | None = None
) -> ApiCall[SavedWorkflow]:
    """
    Save a workflow (``POST /v1/workflows``, body ``{"json_definition": ...}``). With ``idempotency_key``
    Skyvern derives the workflow's id from the key and answers a second create with the first workflow
    (even a deleted one), so the call is retried like a read; without one, never blindly.
    """
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    return ApiCall(
        "POST",
        "/v1/workflows",
        _WORKFLOW,
        json={"json_definition": definition},
        headers=headers,
        creates=idempotency_key is None,
    )


def list_workflows(*, search_key: str, page: int = 1, page_size: int = 10) -> ApiCall[list[SavedWorkflow]]:
    """Saved workflows (not deleted) whose title, folder or parameters hold ``search_key``, any case."""
    params: QueryParams = [("search_key", search_key), ("page", page), ("page_size", page_size)]
    return ApiCall("GET", "/v1/workflows", _WORKFLOWS, params=params)

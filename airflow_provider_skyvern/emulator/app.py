"""The emulator's HTTP routes: Skyvern's ``/v1`` API as the provider uses it, plus ``/_emulator`` controls.

Auth, paths, status codes and error bodies follow the real server (API.md §1-§4): a wrong or missing
``x-api-key`` is a 403, errors are ``{"detail": ...}`` (or ``{"error": ...}`` for a 500), request
validation errors are FastAPI's 422 list.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import html
import json
import re
import time
from email.utils import formatdate
from typing import Annotated, Any

import httpx
from fastapi import Body, Depends, FastAPI, Header, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field, HttpUrl, ValidationError
from starlette.concurrency import iterate_in_threadpool

from airflow_provider_skyvern import __version__
from airflow_provider_skyvern.emulator import run_blocks
from airflow_provider_skyvern.emulator.blobs import RangeNotSatisfiable, byte_range, paced
from airflow_provider_skyvern.emulator.faults import (
    AFTER_CREATE_SCOPE_KEY,
    ASGIApp,
    FaultMiddleware,
    FaultRule,
)
from airflow_provider_skyvern.emulator.lifecycle import DirectiveError, Lifecycle, iso, plan_from
from airflow_provider_skyvern.emulator.scripts import plan_scripts, timed
from airflow_provider_skyvern.emulator.state import (
    ORGANIZATION_ID,
    RUN_TYPE_BY_ENGINE,
    ArtifactFile,
    BrowserSessionRecord,
    EmulatedRun,
    EmulatedWorkflow,
    EmulatorSettings,
    EmulatorState,
)
from airflow_provider_skyvern.models import (
    CreateBrowserSessionRequest,
    DownloadFilesRequest,
    LoginRequest,
    ProxyLocation,
    RunEngine,
    TaskRunRequest,
    WorkflowRunRequest,
)

MAX_SESSION_MINUTES = 240
GENERATED_URL = "https://www.example.com/"
_URL_IN_TEXT = re.compile(r"https?://[^\s\])>\"']+")
WEBHOOK_TIMEOUT_SECONDS = 10.0


class SkyvernHTTPException(Exception):
    def __init__(self, status: int, detail: Any) -> None:
        self.status = status
        self.detail = detail


def _validation_detail(exc: ValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": ["body", *error["loc"]], "msg": error["msg"], "type": error["type"]} for error in exc.errors()
    ]


def _first_url(text: str) -> str | None:
    match = _URL_IN_TEXT.search(text)
    return str(HttpUrl(match.group(0))) if match else None


class ConcurrencyLimit(BaseModel):
    max_concurrent_runs: int | None = Field(default=None, ge=1)


def _parse(model: type[BaseModel], body: dict[str, Any]) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise SkyvernHTTPException(422, _validation_detail(exc)) from None


def _check_enums(body: dict[str, Any]) -> None:
    """The server's enums are closed: an unknown engine or proxy location is a 422."""
    problems = []
    engine = body.get("engine")
    if engine is not None and engine not in RunEngine.known_values():
        problems.append(("engine", engine, RunEngine.known_values()))
    proxy = body.get("proxy_location")
    if isinstance(proxy, str) and proxy not in ProxyLocation.known_values():
        problems.append(("proxy_location", proxy, ProxyLocation.known_values()))
    if problems:
        raise SkyvernHTTPException(
            422,
            [
                {
                    "loc": ["body", name],
                    "msg": f"Input should be {', '.join(map(repr, known))}",
                    "type": "enum",
                    "input": value,
                }
                for name, value, known in problems
            ],
        )


# Fields Skyvern 1.0.56 declares without ``| None`` (our models accept None and leave it out of the wire): the
# server answers an explicit null there with 422.
TASK_NOT_NULL = ("engine", "start_fresh_browser", "publish_workflow")
WORKFLOW_NOT_NULL = ("start_fresh_browser",)
SESSION_NOT_NULL = ("generate_browser_profile", "needs_live_view")


def _check_not_null(body: dict[str, Any], names: tuple[str, ...]) -> None:
    problems = [name for name in names if name in body and body[name] is None]
    if problems:
        raise SkyvernHTTPException(422, [_null_error(name) for name in problems])


def _null_error(name: str) -> dict[str, Any]:
    if name == "engine":
        known = RunEngine.known_values()
        return {
            "loc": ["body", name],
            "msg": f"Input should be {', '.join(map(repr, known))}",
            "type": "enum",
            "input": None,
        }
    return {
        "loc": ["body", name],
        "msg": "Input should be a valid boolean",
        "type": "bool_type",
        "input": None,
    }


def _has_tag(run_metadata: Any, term: str) -> bool:
    """Skyvern 1.0.56's ``?tags=`` term: ``label`` (a value in any group), ``key:*`` or ``key:value``; a
    workflow run's ``run_metadata`` is its tags, task runs have none."""
    metadata = run_metadata if isinstance(run_metadata, dict) else {}
    key, colon, value = term.partition(":")
    if not colon:
        return term in metadata.values()
    if value.strip() == "*":
        return key.strip() in metadata
    return metadata.get(key.strip()) == value.strip()


def create_app(settings: EmulatorSettings | None = None) -> tuple[ASGIApp, EmulatorState]:
    """The ASGI app (fault layer outermost) and the state behind it, for in-process use."""
    state = EmulatorState(settings or EmulatorSettings())
    api = FastAPI(
        title="Skyvern emulator",
        version=__version__,
        docs_url="/_emulator/docs",
        openapi_url="/_emulator/openapi.json",
    )

    @api.exception_handler(SkyvernHTTPException)
    async def _skyvern_error(request: Request, exc: SkyvernHTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)

    @api.middleware("http")
    async def _log_requests(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        # Skyvern stamps Date and created_at with one clock; so does the emulator (uvicorn's is off)
        response.headers["date"] = formatdate(state.now(), usegmt=True)
        if request.url.path.startswith("/v1/") and not request.scope.get(AFTER_CREATE_SCOPE_KEY):
            state.log_request(request.method, request.url.path, response.status_code)
        return response

    def authorized(x_api_key: Annotated[str | None, Header()] = None) -> None:
        if x_api_key is None:
            raise SkyvernHTTPException(403, "Invalid credentials")
        # bytes: compare_digest refuses a str with non-ASCII characters (a 500 where Skyvern answers 403)
        if not hmac.compare_digest(x_api_key.encode(), state.settings.api_key.encode()):
            raise SkyvernHTTPException(403, "Could not validate credentials")

    def base(request: Request) -> str:
        return str(request.base_url).rstrip("/")

    def get_run(run_id: str, detail: str = "Task run not found {}") -> EmulatedRun:
        run = state.runs.get(run_id)
        if run is None:
            raise SkyvernHTTPException(404, detail.format(run_id))
        return run

    async def create_run(
        prefix: str,
        run_type: str,
        wire: dict[str, Any],
        texts: list[str],
        max_steps: int | None,
        block: str | None = None,
        workflow: EmulatedWorkflow | None = None,
    ) -> EmulatedRun:
        session_id = wire.get("browser_session_id")
        if session_id and session_id not in state.sessions:
            raise SkyvernHTTPException(404, f"Browser session {session_id} not found")
        try:
            plan = plan_from(texts, state.settings.run_seconds, max_steps)
        except DirectiveError as exc:
            raise SkyvernHTTPException(400, str(exc)) from None
        if plan.create_seconds:  # the run's row appears only now, even if the client gave up meanwhile
            await asyncio.sleep(plan.create_seconds)
        with state.lock:
            script = None
            if workflow is not None and block is None:  # a saved workflow: agent, or replay as code
                saved = workflow
                script = plan_scripts(
                    saved.scripts,
                    wire,
                    plan.page_changed,
                    lambda key: state.latest_script(saved.workflow_permanent_id, key),
                )
                plan = timed(plan, script)
            run = EmulatedRun(
                state.new_id(prefix), run_type, wire, Lifecycle(plan, state.now()), block, workflow, script
            )
            state.runs[run.run_id] = run
            state.admit()
        return run

    v1 = [Depends(authorized)]

    @api.get("/v1/version")
    async def version() -> dict[str, str]:
        return {"version": f"skyvern-emulator-{__version__}"}

    @api.post("/v1/run/tasks", dependencies=v1)
    async def run_task(request: Request, body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        _check_not_null(body, TASK_NOT_NULL)
        _check_enums(body)
        task: TaskRunRequest = _parse(TaskRunRequest, body)
        wire = task.to_wire()
        engine = str(wire.get("engine") or "skyvern-1.0")
        run_type = RUN_TYPE_BY_ENGINE[engine]
        prefix = "tsk_v2" if run_type == "task_v2" else "tsk"
        texts = [task.prompt, task.title or ""]
        if wire.get("url"):
            wire["url"] = str(HttpUrl(wire["url"]))  # stored normalised, as Skyvern does
        elif run_type != "task_v2":  # v1-style runs without url: the LLM picks one inside the POST
            wire["url"] = _first_url(task.prompt) or GENERATED_URL
        run = await create_run(prefix, run_type, wire, texts, task.max_steps)
        return state.run_json(run, base(request))

    @api.post("/v1/run/agents", dependencies=v1)
    @api.post("/v1/run/workflows", dependencies=v1)  # Skyvern's hidden alias of /v1/run/agents
    async def run_workflow(
        request: Request,
        body: Annotated[dict[str, Any], Body()],
        x_max_steps_override: Annotated[int | None, Header()] = None,
    ) -> dict[str, Any]:
        body = dict(body)
        if "agent_id" in body:  # Skyvern takes either key; with both, agent_id wins (AliasChoices order)
            body.pop("workflow_id", None)
        _check_not_null(body, WORKFLOW_NOT_NULL)
        _check_enums(body)
        workflow: WorkflowRunRequest = _parse(WorkflowRunRequest, body)
        if not workflow.workflow_id.startswith("wpid_"):
            raise SkyvernHTTPException(404, f"Workflow not found {workflow.workflow_id}")
        saved = state.workflows.get(workflow.workflow_id)
        if saved is None or saved.deleted is not None:  # Skyvern 1.0.56's WorkflowNotFound
            raise SkyvernHTTPException(
                404, f"Workflow not found. workflow_permanent_id={workflow.workflow_id}"
            )
        texts = [workflow.title or "", json.dumps(workflow.parameters or {})]
        wire = workflow.to_wire()
        # Stored (and echoed in run_request) under workflow_id, the field's name, as Skyvern echoes it.
        wire = {"workflow_id": wire.pop("agent_id"), **wire}
        run = await create_run("wr", "workflow_run", wire, texts, x_max_steps_override, workflow=saved)
        return state.run_json(run, base(request))

    @api.post("/v1/workflows", dependencies=v1)
    async def create_workflow(
        body: Annotated[dict[str, Any], Body()],
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
    ) -> dict[str, Any]:
        """A saved workflow to run: its title, proxy location and code settings (``run_with``, ``ai_fallback``,
        ``cache_key``, ``code_version``...; the first block's url for the default cache key), and its blocks when
        the emulator models them (their outputs). With an ``Idempotency-Key`` the id is derived from the key
        and a second create answers the first workflow, even a deleted one (1.0.56 ``create_workflow``)."""
        definition = body.get("json_definition")
        if not isinstance(definition, dict) or not isinstance(definition.get("title"), str):
            raise SkyvernHTTPException(
                422,
                [
                    {
                        "loc": ["body", "json_definition"],
                        "msg": "a workflow definition with a title",
                        "type": "value_error",
                    }
                ],
            )
        _check_enums(definition)
        with state.lock:
            if idempotency_key is not None:
                digest = hashlib.sha256(f"create_workflow\0{ORGANIZATION_ID}\0{idempotency_key}".encode())
                workflow_permanent_id = f"wpid_{digest.hexdigest()}"
                known = state.workflows.get(workflow_permanent_id)
                if known is not None:
                    return known.to_json()
            else:
                workflow_permanent_id = state.new_id("wpid")
            saved = EmulatedWorkflow.saved(workflow_permanent_id, definition, state.now())
            state.workflows[saved.workflow_permanent_id] = saved
        return saved.to_json()

    @api.post("/v1/workflows/{workflow_permanent_id}/delete", dependencies=v1)
    async def delete_workflow(workflow_permanent_id: str) -> dict[str, Any]:
        """Soft delete: the id stays taken (an idempotent create answers the deleted workflow)."""
        with state.lock:
            saved = state.workflows.get(workflow_permanent_id)
            if saved is None or saved.deleted is not None:
                raise SkyvernHTTPException(
                    404, f"Workflow not found. workflow_permanent_id={workflow_permanent_id}"
                )
            state.workflows[workflow_permanent_id] = dataclasses.replace(saved, deleted=state.now())
        return {}

    @api.get("/v1/workflows", dependencies=v1)
    async def list_workflows(
        search_key: str | None = None, title: str = "", page: int = 1, page_size: int = 10
    ) -> list[dict[str, Any]]:
        """Saved workflows whose title holds ``search_key`` (else the deprecated ``title``), any case."""
        term = (search_key if search_key is not None else title).lower()
        with state.lock:
            found = [w for w in state.workflows.values() if term in w.title.lower() and w.deleted is None]
        found.sort(key=lambda w: w.created, reverse=True)
        start = (max(page, 1) - 1) * max(page_size, 1)
        return [w.to_json() for w in found[start : start + max(page_size, 1)]]

    async def run_block(request: Request, body: dict[str, Any], kind: str) -> dict[str, Any]:
        """A one-block workflow made for this request, and its run (``routes/run_blocks.py``)."""
        _check_not_null(body, WORKFLOW_NOT_NULL)
        _check_enums(body)
        try:
            if kind == "login":
                made = run_blocks.login(_parse(LoginRequest, body), state.new_id("wpid"))
            else:
                made = run_blocks.download_files(_parse(DownloadFilesRequest, body), state.new_id("wpid"))
        except run_blocks.Refused as refused:
            raise SkyvernHTTPException(refused.status, refused.detail) from None
        run = await create_run("wr", "workflow_run", made.wire, made.texts, made.max_steps, made.block)
        return state.run_json(run, base(request))

    @api.post("/v1/run/tasks/login", dependencies=v1)
    async def login(request: Request, body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        return await run_block(request, body, "login")

    @api.post("/v1/run/tasks/download_files", dependencies=v1)
    async def download_files(request: Request, body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
        return await run_block(request, body, "download_files")

    @api.get("/v1/runs/{run_id}", dependencies=v1)
    async def read_run(request: Request, run_id: str) -> dict[str, Any]:
        return state.run_json(get_run(run_id), base(request))

    @api.post("/v1/runs/{run_id}/cancel", dependencies=v1)
    async def cancel_run(run_id: str) -> None:
        run = get_run(run_id, "Run not found {}")
        with state.lock:
            run.lifecycle.cancel_requests += 1
            current = run.lifecycle.state_at(state.now())
            if current.is_terminal and run.run_type == "task_v2":
                return  # Skyvern 1.0.56 answers 200 and leaves a finished v2 run as it was
            if current.is_terminal:
                raise SkyvernHTTPException(
                    400, f"Invalid task status transition from {current.status} to canceled for {run_id}"
                )
            run.lifecycle.canceled_at = state.now()
            state.admit()

    @api.get("/v1/runs/{run_id}/timeline", dependencies=v1)
    async def timeline(run_id: str) -> list[dict[str, Any]]:
        run = get_run(run_id, "Run not found {}")
        if run.run_type not in ("task_v2", "workflow_run"):
            raise SkyvernHTTPException(400, f"Timeline not available for run type {run.run_type}")
        current = run.lifecycle.state_at(state.now())
        stamp = iso(current.started_at or run.lifecycle.created)
        thoughts: list[dict[str, Any]] = [
            {
                "type": "thought",
                "thought": {
                    "thought_id": f"ot_{run.number}{step}",
                    "task_id": run.run_id,
                    "organization_id": "o_emulator",
                    "thought": f"Step {step}: looking at the page",
                    "created_at": stamp,
                    "modified_at": stamp,
                },
                "block": None,
                "children": [],
                "created_at": stamp,
                "modified_at": stamp,
            }
            for step in range(1, current.step_count + 1)
        ]
        if run.is_workflow:  # one entry per block reached, its thoughts under the running one
            blocks = state.workflow_blocks(run, current)
            return [
                _block_entry(run, index, block, thoughts if index == len(blocks) - 1 else [], stamp)
                for index, block in enumerate(blocks)
            ]
        block = {"label": "emulated_block", "block_type": "task_v2", "status": current.status, "output": None}
        return [_block_entry(run, 0, block, thoughts, stamp)]

    @api.get("/v1/runs/{run_id}/artifacts", dependencies=v1)
    async def run_artifacts(
        request: Request, run_id: str, artifact_type: Annotated[list[str] | None, Query()] = None
    ) -> list[dict[str, Any]]:
        run = get_run(run_id, "Run not found {}")
        wanted = set(artifact_type or [])
        return [
            state.artifact_json(run, f, base(request))
            for f in state.artifacts(run)
            if not wanted or f.artifact_type in wanted
        ]

    @api.get("/v1/artifacts/{artifact_id}", dependencies=v1)
    async def artifact(request: Request, artifact_id: str) -> dict[str, Any]:
        found = state.find_artifact(artifact_id)
        if found is None:
            raise SkyvernHTTPException(404, f"Artifact not found {artifact_id}")
        return state.artifact_json(*found, base(request))

    @api.post("/v1/runs/{run_id}/retry_webhook", dependencies=v1)
    async def retry_webhook(
        run_id: str, request: Request, body: Annotated[dict[str, Any] | None, Body()] = None
    ) -> dict[str, Any]:
        run = get_run(run_id, "Run not found {}")
        if not run.lifecycle.state_at(state.now()).is_terminal:
            raise SkyvernHTTPException(400, f"Run {run_id} is not in a terminal status yet.")
        default_url = run.request.get("webhook_url")
        target = (body or {}).get("webhook_url") or default_url
        if not target:
            raise SkyvernHTTPException(400, "No webhook URL configured for the run.")
        return await _deliver_webhook(state, run, base(request), default_url, str(target))

    @api.get("/v1/runs", dependencies=v1)
    async def list_runs(
        page: Annotated[int, Query(ge=1, le=100)] = 1,
        page_size: Annotated[int, Query(ge=1, le=100)] = 10,
        status: Annotated[list[str] | None, Query()] = None,
        run_type: Annotated[list[str] | None, Query()] = None,
        search_key: Annotated[str | None, Query()] = None,
        tags: Annotated[list[str] | None, Query()] = None,
    ) -> list[dict[str, Any]]:
        needle = (search_key or "").lower()
        terms = [term.strip() for group in tags or [] for term in group.split(",") if term.strip()]
        items = [
            state.list_item(run)
            for run in reversed(state.runs.values())
            if needle in run.searchable(run.lifecycle.state_at(state.now()).status)
            and all(_has_tag(run.request.get("run_metadata"), term) for term in terms)
        ]
        items = [
            item
            for item in items
            if (not status or item["status"] in status)
            and (not run_type or item["task_run_type"] in run_type)
        ]
        return items[(page - 1) * page_size : page * page_size]

    @api.post("/v1/browser_sessions", dependencies=v1)
    async def create_session(
        request: Request, body: Annotated[dict[str, Any] | None, Body()] = None
    ) -> dict[str, Any]:
        _check_not_null(body or {}, SESSION_NOT_NULL)
        _check_enums(body or {})
        wanted: CreateBrowserSessionRequest = _parse(CreateBrowserSessionRequest, body or {})
        minutes, warning = wanted.timeout or 60, None
        if minutes > MAX_SESSION_MINUTES:
            minutes, warning = MAX_SESSION_MINUTES, f"timeout capped at {MAX_SESSION_MINUTES} minutes"
        with state.lock:
            session = BrowserSessionRecord(
                state.new_id("pbs"), state.now(), minutes, wanted.to_wire(), warning=warning
            )
            state.sessions[session.browser_session_id] = session
        return state.session_json(session, base(request))

    def get_session(browser_session_id: str) -> BrowserSessionRecord:
        session = state.sessions.get(browser_session_id)
        if session is None:
            raise SkyvernHTTPException(404, f"Browser session {browser_session_id} not found")
        return session

    @api.get("/v1/browser_sessions", dependencies=v1)
    async def list_sessions(request: Request) -> list[dict[str, Any]]:
        """Skyvern 1.0.56 lists the organisation's active sessions only (its OpenAPI: "Get all active browser
        sessions"): a closed or timed-out one is read by id, never listed."""
        return [
            state.session_json(s, base(request))
            for s in state.sessions.values()
            if state.session_status(s) == "running"
        ]

    @api.get("/v1/browser_sessions/{browser_session_id}", dependencies=v1)
    async def read_session(request: Request, browser_session_id: str) -> dict[str, Any]:
        return state.session_json(get_session(browser_session_id), base(request))

    @api.post("/v1/browser_sessions/{browser_session_id}/close", dependencies=v1)
    async def close_session(browser_session_id: str) -> dict[str, str]:
        session = get_session(browser_session_id)
        with state.lock:
            session.closed = session.closed or state.now()
            session.close_requests += 1
        return {"message": "Browser session closed"}

    # ---- files, the run page, and the controls ----------------------------------------------------------

    @api.get("/_emulator/files/{artifact_id}/{filename:path}")
    async def file(
        request: Request, artifact_id: str, filename: str, expires: int = 0, sig: str = ""
    ) -> Response:
        """A presigned URL, as S3 serves one: no API key, the signature in the query, Range honoured."""
        found = state.find_artifact(artifact_id)
        if found is None or found[1].filename != filename:
            raise SkyvernHTTPException(404, f"Artifact not found {artifact_id}")
        if not state.signature_ok(artifact_id, expires, sig):
            raise SkyvernHTTPException(403, "Invalid or expired signed URL")
        return _file_response(state, request, found[1])

    @api.get("/v1/artifacts/{artifact_id}/content")
    async def artifact_content(
        request: Request,
        artifact_id: str,
        x_api_key: Annotated[str | None, Header()] = None,
        expiry: int = 0,
        sig: str = "",
    ) -> Response:
        """The artifact's bytes: with the API key, or a signed ``?expiry=&sig=`` URL (API.md §2)."""
        if sig:
            if not state.signature_ok(artifact_id, expiry, sig):
                raise SkyvernHTTPException(403, "Invalid or expired signed URL")
        else:
            authorized(x_api_key)
        found = state.find_artifact(artifact_id)
        if found is None:
            raise SkyvernHTTPException(404, f"Artifact not found {artifact_id}")
        return _file_response(state, request, found[1])

    @api.get("/runs/{run_id}", response_class=HTMLResponse)
    async def run_page(request: Request, run_id: str) -> str:
        """What ``app_url`` opens: the emulator's stand-in for Skyvern's run page."""
        run = get_run(run_id)
        body = state.run_json(run, base(request))
        rows = "".join(
            f"<tr><th>{html.escape(key)}</th><td><pre>{html.escape(json.dumps(body[key], indent=2))}</pre></td></tr>"
            for key in (
                "status",
                "step_count",
                "failure_reason",
                "output",
                "recording_url",
                "screenshot_urls",
                "downloaded_files",
            )
        )
        return (
            f"<!doctype html><html><head><title>Skyvern run {html.escape(run_id)}</title></head><body>"
            f"<h1>Skyvern run {html.escape(run_id)} (emulated)</h1><table>{rows}</table></body></html>"
        )

    @api.get("/_emulator/runs")
    async def emulator_runs() -> dict[str, Any]:
        """Every run created, oldest first: what tests count duplicates and cancels with."""
        runs = []
        for run in state.runs.values():
            current = run.lifecycle.state_at(state.now())
            runs.append(
                {
                    "run_id": run.run_id,
                    "run_type": run.run_type,
                    "status": run.status(current),
                    "step_count": current.step_count,
                    "title": run.request.get("title"),
                    "outcome": run.lifecycle.plan.outcome,
                    "cancel_requests": run.lifecycle.cancel_requests,
                    "created_at": iso(run.lifecycle.created),
                    "request": run.request,
                }
            )
        return {"runs": runs}

    @api.get("/v1/scripts/workflows/{workflow_permanent_id}", dependencies=v1)
    async def workflow_scripts(workflow_permanent_id: str) -> dict[str, Any]:
        """A workflow's cached scripts, newest first, one per cache key value (``routes/scripts.py``);
        ``total_runs`` and ``success_rate`` of the real answer are not modelled."""
        saved = state.workflows.get(workflow_permanent_id)
        if saved is None:
            raise SkyvernHTTPException(
                404, f"Workflow not found. workflow_permanent_id={workflow_permanent_id}"
            )
        by_script: dict[str, list[Any]] = {}
        for revision in state.script_revisions(state.now()):
            if revision.workflow_permanent_id == workflow_permanent_id:
                by_script.setdefault(revision.script_id, []).append(revision)
        scripts = [
            {
                "script_id": script_id,
                "cache_key": saved.scripts.cache_key,
                "cache_key_value": revisions[0].cache_key_value,
                "status": "published",
                "latest_version": revisions[-1].version,
                "version_count": len(revisions),
                "is_pinned": False,
                "created_at": iso(revisions[0].created),
                "modified_at": iso(revisions[-1].created),
            }
            for script_id, revisions in by_script.items()
        ]
        return {"scripts": scripts[::-1]}

    @api.get("/_emulator/scripts")
    async def emulator_scripts() -> dict[str, Any]:
        """The cached scripts recorded so far, one entry per revision, oldest first (replay as code)."""
        return {
            "scripts": [
                revision.to_json(iso(revision.created)) for revision in state.script_revisions(state.now())
            ]
        }

    @api.get("/_emulator/sessions")
    async def emulator_sessions() -> dict[str, Any]:
        """Every browser session opened, closed or not, oldest first: what tests prove none was left open with."""
        return {
            "sessions": [
                {
                    "browser_session_id": session.browser_session_id,
                    "status": state.session_status(session),
                    "timeout": session.timeout,
                    "created_at": iso(session.created),
                    "closed_at": iso(session.closed),
                    "close_requests": session.close_requests,
                    "request": session.request,
                }
                for session in state.sessions.values()
            ]
        }

    @api.get("/_emulator/requests")
    async def emulator_requests() -> dict[str, Any]:
        return {"requests": list(state.requests)}

    @api.get("/_emulator/file_requests")
    async def emulator_file_requests() -> dict[str, Any]:
        """Every file download asked for: its path, ``Range`` header, status, whether a key came along."""
        return {"file_requests": list(state.file_requests)}

    @api.get("/_emulator/faults")
    async def list_faults() -> dict[str, Any]:
        return {"faults": [rule.model_dump() for rule in state.faults.active()]}

    @api.post("/_emulator/faults")
    async def add_faults(rules: list[FaultRule]) -> dict[str, Any]:
        state.faults.add(rules)
        return {"faults": [rule.model_dump() for rule in state.faults.active()]}

    @api.delete("/_emulator/faults")
    async def clear_faults() -> dict[str, Any]:
        state.faults.clear()
        return {"faults": []}

    @api.put("/_emulator/concurrency")
    async def set_concurrency(limit: ConcurrencyLimit) -> dict[str, Any]:
        """The organisation's concurrent-run limit (Skyvern Cloud's plan), from now on; null: none."""
        with state.lock:
            state.max_concurrent_runs = limit.max_concurrent_runs
            state.admit()
        return limit.model_dump()

    @api.post("/_emulator/reset")
    async def reset() -> dict[str, str]:
        state.reset()
        return {"message": "emulator reset"}

    def on_fault(method: str, path: str, what: str) -> None:
        state.log_request(method, path, f"fault: {what}")

    return FaultMiddleware(api, state.faults, on_fault), state


def _file_response(state: EmulatorState, request: Request, found: ArtifactFile) -> Response:
    """The file, or the part a ``Range: bytes=...`` header asks for (206), or 416 outside the file."""
    blob, header = found.blob, request.headers.get("range")
    log = {
        "artifact_id": found.artifact_id,
        "path": request.url.path,
        "range": header,
        "api_key_sent": "x-api-key" in request.headers,
    }
    try:
        span = byte_range(header, blob.size)
    except RangeNotSatisfiable:
        state.log_file_request({**log, "status": 416})
        return Response(status_code=416, headers={"content-range": f"bytes */{blob.size}"})
    start, end = span or (0, blob.size)
    headers = {"accept-ranges": "bytes", "content-length": str(end - start)}
    if span is not None:
        headers["content-range"] = f"bytes {start}-{end - 1}/{blob.size}"
    status = 206 if span is not None else 200
    state.log_file_request({**log, "status": status})
    chunks = blob.chunks(start, end)
    if found.bytes_per_second:
        chunks = paced(chunks, found.bytes_per_second)
    return StreamingResponse(
        iterate_in_threadpool(chunks),
        status_code=status,
        media_type=found.media_type,
        headers=headers,
    )


async def _deliver_webhook(
    state: EmulatorState, run: EmulatedRun, base_url: str, default_url: str | None, target: str
) -> dict[str, Any]:
    """One signed delivery, reported like Skyvern's replay endpoint (API.md §6)."""
    payload = json.dumps(state.run_json(run, base_url), separators=(",", ":"), ensure_ascii=False)
    signature = hmac.new(state.settings.api_key.encode(), payload.encode(), hashlib.sha256).hexdigest()
    headers = {
        "x-skyvern-signature": signature,
        "x-skyvern-timestamp": str(int(state.now())),
        "content-type": "application/json",
    }
    result: dict[str, Any] = {
        "run_id": run.run_id,
        "run_type": run.run_type,
        "default_webhook_url": default_url,
        "target_webhook_url": target,
        "payload": payload,
        "headers": headers,
        "status_code": None,
        "latency_ms": None,
        "response_body": None,
        "error": None,
    }
    started = time.monotonic()
    try:
        async with httpx.AsyncClient(timeout=WEBHOOK_TIMEOUT_SECONDS, follow_redirects=False) as client:
            response = await client.post(target, content=payload, headers=headers)
    except httpx.HTTPError as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    else:
        result["status_code"] = response.status_code
        result["response_body"] = response.text[:2048]
    result["latency_ms"] = int((time.monotonic() - started) * 1000)
    return result


def _block_entry(
    run: EmulatedRun, index: int, block: dict[str, Any], children: list[dict[str, Any]], stamp: str | None
) -> dict[str, Any]:
    """A ``type: block`` timeline node (Skyvern's ``WorkflowRunTimeline`` with a ``WorkflowRunBlock``)."""
    return {
        "type": "block",
        "block": {
            "workflow_run_block_id": f"wrb_{run.number}{index}",
            "workflow_run_id": run.run_id,
            "organization_id": "o_emulator",
            **block,
            "created_at": stamp,
            "modified_at": stamp,
        },
        "thought": None,
        "children": children,
        "created_at": stamp,
        "modified_at": stamp,
    }

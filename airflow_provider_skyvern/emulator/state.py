"""The emulator's memory: runs, browser sessions, the request log, and the JSON Skyvern would send for them."""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import json
import math
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_skyvern.emulator.blobs import Blob, BytesBlob, PatternBlob
from airflow_provider_skyvern.emulator.content import (
    invoice_pdf,
    output_csv,
    recording_webm,
    sample_output,
    screenshot_png,
)
from airflow_provider_skyvern.emulator.faults import Faults
from airflow_provider_skyvern.emulator.lifecycle import (
    FAILURE_REASONS,
    RETRIED_ATTEMPT_REASON,
    Attempt,
    Lifecycle,
    RunState,
    iso,
)
from airflow_provider_skyvern.emulator.scripts import (
    SCRIPT_BLOCK_ERROR,
    SCRIPT_FAILURE,
    ScriptPlan,
    ScriptRevision,
    ScriptSettings,
    fallback_at,
)

ORGANIZATION_ID = "o_emulator"
FIRST_ID = 495_000_000_000_000_000  # Skyvern ids are <prefix>_<64-bit int>
# Presigned URL lifetimes of the real server (API.md §9): sensitive types 1 h, others 24 h.
SENSITIVE_URL_SECONDS = 3600
DEFAULT_URL_SECONDS = 24 * 3600
DEFAULT_MAX_STEPS = 10
TASK_REQUEST_FIELDS = (
    "prompt",
    "url",
    "engine",
    "title",
    "proxy_location",
    "data_extraction_schema",
    "error_code_mapping",
    "max_steps",
    "webhook_url",
    "totp_identifier",
    "totp_url",
    "browser_session_id",
    "browser_profile_id",
    "start_fresh_browser",
    "model",
    "extra_http_headers",
    "cdp_connect_headers",
    "publish_workflow",
    "include_action_history_in_verification",
    "max_screenshot_scrolls",
    "browser_address",
    "run_with",
    "file_ids",
)
WORKFLOW_REQUEST_FIELDS = (
    "workflow_id",
    "parameters",
    "title",
    "proxy_location",
    "webhook_url",
    "totp_url",
    "totp_identifier",
    "browser_session_id",
    "browser_profile_id",
    "reuse_browser_session",
    "start_fresh_browser",
    "max_screenshot_scrolls",
    "max_elapsed_time_minutes",
    "extra_http_headers",
    "cdp_connect_headers",
    "browser_address",
    "ai_fallback",
    "run_with",
    "run_metadata",
    "browser_type",
    "file_ids",
)
WORKFLOW_ECHOED = (
    "proxy_location",
    "webhook_url",
    "totp_url",
    "totp_identifier",
    "max_screenshot_scrolls",
    "browser_address",
    "browser_profile_id",
    "browser_session_id",
    "browser_type",
)
"""What Skyvern 1.0.56 keeps of a workflow run's request and echoes (``get_workflow_run_response``): not
the title (the workflow's own is shown), headers, run metadata or the time limit."""
WORKFLOW_BLOCKS = (("open_portal", "goto_url"), ("extract_report", "extraction"))
MODELED_BLOCKS = frozenset({"task", "extraction", "goto_url"})
"""Block types whose output the emulator models; a saved workflow made only of them reports its own blocks."""
"""The emulated workflow's blocks (label, block type): each reports ``<label>_output``."""
RUN_BLOCKS = {"login": ("Login", "login"), "file_download": ("File Download", "file_download")}
"""The one-block workflows Skyvern builds for ``/v1/run/tasks/login`` and ``/download_files``: the
workflow's title, and the block's label (also its type)."""
RUN_TYPE_BY_ENGINE = {
    "skyvern-1.0": "task_v1",
    "skyvern-2.0": "task_v2",
    "skyvern-3.0": "task_v3",
    "openai-cua": "openai_cua",
    "anthropic-cua": "anthropic_cua",
    "ui-tars": "ui_tars",
    "yutori-navigator": "yutori_navigator",
}
ENGINE_BY_RUN_TYPE = {run_type: engine for engine, run_type in RUN_TYPE_BY_ENGINE.items()}


KNOWN_WORKFLOWS = ("wpid_42", "wpid_123456789")
"""Workflows the emulator knows from the start: the one its tests run, and the placeholder id of
``example_dags/skyvern_workflow_scheduled.py``. Others are a 404, as on Skyvern, until made with
``POST /v1/workflows`` or named in :attr:`EmulatorSettings.workflows`."""


@dataclass(frozen=True)
class EmulatorSettings:
    api_key: str = "emulator-key"
    run_seconds: float = 10.0
    """How long a run takes unless its ``[emulator seconds=N]`` directive says otherwise."""
    seed: int = 0
    clock: Callable[[], float] = time.time
    workflows: tuple[str, ...] = KNOWN_WORKFLOWS
    """The workflow ids (``wpid_…``) that exist from the start; any other is answered 404."""
    max_concurrent_runs: int | None = None
    """Skyvern Cloud's concurrent-run limit per organisation (Free 1, Hobby 10, Pro 25): runs beyond it wait
    ``queued`` until one ends, first come first served. None: no limit, as a self-hosted server."""


@dataclass(frozen=True)
class EmulatedWorkflow:
    """A saved workflow, as far as running it matters: its id, title, saved proxy location, code settings."""

    workflow_permanent_id: str
    title: str
    proxy_location: Any = None
    """Applies to a run whose request says ``"proxy_location": null`` (a missing one means RESIDENTIAL)."""
    created: float = 0.0
    scripts: ScriptSettings = field(default_factory=ScriptSettings)
    """``run_with``, ``ai_fallback``, ``cache_key``, ``code_version``...: replay as code (scripts.py)."""
    blocks: tuple[SavedBlock, ...] = ()
    """Its blocks, when the emulator models every one (else runs report :data:`WORKFLOW_BLOCKS`)."""
    deleted: float | None = None

    @classmethod
    def saved(
        cls, workflow_permanent_id: str, definition: dict[str, Any], created: float
    ) -> EmulatedWorkflow:
        return cls(
            workflow_permanent_id,
            definition["title"],
            definition.get("proxy_location"),
            created,
            ScriptSettings.of(definition),
            SavedBlock.all_of(definition),
        )

    def to_json(self) -> dict[str, Any]:
        """What ``POST /v1/workflows`` answers (the fields of Skyvern's ``Workflow`` a client reads)."""
        return {
            "workflow_id": self.workflow_permanent_id.replace("wpid_", "w_", 1),
            "workflow_permanent_id": self.workflow_permanent_id,
            "organization_id": ORGANIZATION_ID,
            "title": self.title,
            "version": 1,
            "proxy_location": self.proxy_location,
            "created_at": iso(self.created),
            "modified_at": iso(self.created),
            "deleted_at": iso(self.deleted),
            **self.scripts.to_json(),
        }


@dataclass(frozen=True)
class SavedBlock:
    """A block of a saved workflow, as far as its output goes: what it extracts, by which schema."""

    label: str
    block_type: str
    goal: str = ""
    data_schema: Any = None

    @classmethod
    def all_of(cls, definition: dict[str, Any]) -> tuple[SavedBlock, ...]:
        """Every block when the emulator models each one's output (task, extraction, goto_url); else none."""
        blocks = (definition.get("workflow_definition") or {}).get("blocks") or []
        if not blocks or not all(
            isinstance(b, dict) and b.get("block_type") in MODELED_BLOCKS for b in blocks
        ):
            return ()
        return tuple(
            cls(
                str(b.get("label")),
                str(b["block_type"]),
                str(b.get("data_extraction_goal") or b.get("navigation_goal") or ""),
                b.get("data_schema"),
            )
            for b in blocks
        )


@dataclass
class EmulatedRun:
    run_id: str
    run_type: str
    request: dict[str, Any]
    lifecycle: Lifecycle
    block: str | None = None
    """``login`` or ``file_download`` for a run-block run (a one-block workflow made for it)."""
    workflow: EmulatedWorkflow | None = None
    """The saved workflow a workflow run runs."""
    script: ScriptPlan | None = None
    """What a run of a saved workflow does with cached scripts (None: runs of no saved workflow)."""

    @property
    def number(self) -> int:
        return int(self.run_id.rsplit("_", 1)[1])

    @property
    def is_workflow(self) -> bool:
        return self.run_type == "workflow_run"

    def status(self, state: RunState) -> str:
        """A skyvern-2.0 run is answered ``queued`` from the start (it has no ``created`` phase)."""
        return "queued" if self.run_type == "task_v2" and state.status == "created" else state.status

    def title(self, status: str) -> str | None:
        """The title Skyvern shows: v2 runs start as "New Workflow", then get an LLM-made one."""
        if self.run_type == "workflow_run":
            if self.block is not None:
                return RUN_BLOCKS[self.block][0]
            if self.workflow is not None:
                return self.workflow.title
            return f"Emulated workflow {self.request.get('workflow_id')}"
        if self.run_type == "task_v2":
            return "New Workflow" if status in ("created", "queued") else "Emulated v2 task"
        return self.request.get("title")

    def searchable(self, status: str) -> str:
        """What ``search_key`` matches (Skyvern's ``searchable_text``): title + url, and the ids."""
        parts = [self.run_id, self.title(status) or "", str(self.request.get("url") or "")]
        if self.is_workflow:
            parts += [
                str(self.request.get(key) or "") for key in ("workflow_id", "parameters", "webhook_url")
            ]
            parts.append(str(self.request.get("extra_http_headers") or ""))
        return " ".join(parts).lower()

    def run_request(self) -> dict[str, Any]:
        """The request as ``GET /v1/runs/{id}`` echoes it: only what the run type stores, the rest null."""
        if self.is_workflow:
            fresh = bool(self.request.get("start_fresh_browser"))
            echo: dict[str, Any] = dict.fromkeys(WORKFLOW_REQUEST_FIELDS)
            echo.update({key: self.request.get(key) for key in WORKFLOW_ECHOED})
            echo.update(
                workflow_id=self.request["workflow_id"],
                title=self.title("running"),
                parameters=dict(self.request.get("parameters") or {}),
                proxy_location=self._workflow_proxy(),
                start_fresh_browser=fresh,
            )
            if fresh:
                echo.update(browser_profile_id=None, browser_session_id=None)
            return echo
        stored = ["engine", "prompt", "url", "webhook_url", "totp_identifier", "totp_url", "proxy_location"]
        stored += ["data_extraction_schema", "error_code_mapping"]
        if self.run_type != "task_v2":
            stored += ["max_steps", "max_screenshot_scrolls"]
        echoed: dict[str, Any] = dict.fromkeys(TASK_REQUEST_FIELDS)
        echoed.update(
            start_fresh_browser=False, publish_workflow=False, include_action_history_in_verification=False
        )
        echoed.update({key: self.request.get(key) for key in stored})
        echoed["engine"] = ENGINE_BY_RUN_TYPE.get(self.run_type, self.request.get("engine"))
        echoed["proxy_location"] = self.request.get("proxy_location") or "RESIDENTIAL"
        if self.run_type != "task_v2" and echoed["max_steps"] is None:
            echoed["max_steps"] = DEFAULT_MAX_STEPS
        return echoed

    def _workflow_proxy(self) -> Any:
        """Skyvern 1.0.56 reads a missing proxy_location as RESIDENTIAL and a null one as "the workflow's"."""
        given = self.request.get("proxy_location")
        if given is None and "proxy_location" in self.request and self.workflow is not None:
            return self.workflow.proxy_location
        return given or "RESIDENTIAL"


ARTIFACTS_PER_RUN = 100
"""Artifact ids are ``a_<run number * 100 + k>``: a run's artifact is found from its id alone."""
FIRST_DOWNLOAD, FIRST_EXTRA = 4, 60
MEBIBYTE = 1024 * 1024


@dataclass(frozen=True)
class ArtifactFile:
    artifact_id: str
    artifact_type: str
    filename: str
    media_type: str
    blob: Blob
    url_seconds: int
    bytes_per_second: float = 0.0
    """Serve no faster than this (0: unpaced): ``[emulator download_mbps=N]``."""


@dataclass
class BrowserSessionRecord:
    browser_session_id: str
    created: float
    timeout: int
    request: dict[str, Any]
    closed: float | None = None
    warning: str | None = None
    close_requests: int = 0


@dataclass
class EmulatorState:
    settings: EmulatorSettings
    runs: dict[str, EmulatedRun] = field(default_factory=dict)
    workflows: dict[str, EmulatedWorkflow] = field(default_factory=dict)
    sessions: dict[str, BrowserSessionRecord] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)
    file_requests: list[dict[str, Any]] = field(default_factory=list)
    faults: Faults = field(init=False)
    max_concurrent_runs: int | None = field(init=False)
    """The limit in force (``PUT /_emulator/concurrency`` changes it; a reset restores the setting's)."""
    lock: threading.RLock = field(default_factory=threading.RLock)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(FIRST_ID + 1))
    _url_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    def __post_init__(self) -> None:
        self.faults = Faults(self.settings.seed)
        self.max_concurrent_runs = self.settings.max_concurrent_runs
        self._known_workflows()

    def _known_workflows(self) -> None:
        self.workflows = {
            wpid: EmulatedWorkflow(wpid, f"Emulated workflow {wpid}", created=self.now())
            for wpid in self.settings.workflows
        }

    def now(self) -> float:
        return self.settings.clock()

    def admit(self) -> None:
        """When each run gets a slot of the concurrent-run limit (call with the lock held, after a run is
        created or canceled). A pure function of the runs' creation and cancel times and plans, so the slots
        of runs already started never move."""
        limit = self.max_concurrent_runs
        if limit is None:
            return
        holding: list[float] = []  # when each run holding a slot frees it
        for run in self.runs.values():  # creation order
            lifecycle = run.lifecycle
            slot_at = lifecycle.created
            while holding and holding[0] <= slot_at:
                heapq.heappop(holding)
            full = len(holding) >= limit
            if full:
                slot_at = max(slot_at, holding[0])
            if lifecycle.canceled_at is not None and lifecycle.canceled_at < slot_at:
                lifecycle.admitted = math.inf  # canceled while it waited: it never takes a slot
                continue
            if full:
                heapq.heappop(holding)
            lifecycle.admitted = slot_at
            heapq.heappush(holding, lifecycle.holds_slot_until())

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids)}"

    def reset(self) -> None:
        with self.lock:
            self.runs.clear()
            self._known_workflows()
            self.sessions.clear()
            self.requests.clear()
            self.file_requests.clear()
            self.faults.clear()
            self.max_concurrent_runs = self.settings.max_concurrent_runs

    def log_request(self, method: str, path: str, status: int | str) -> None:
        with self.lock:
            self.requests.append({"method": method, "path": path, "status": status, "at": iso(self.now())})

    def log_file_request(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.file_requests.append({**entry, "at": iso(self.now())})

    # ---- runs as Skyvern returns them ---------------------------------------------------------------

    def run_json(self, run: EmulatedRun, base_url: str) -> dict[str, Any]:
        state = run.lifecycle.state_at(self.now())
        files = self.artifacts(run, state)
        failure = self._failure_reason(run, state)
        body: dict[str, Any] = {
            "run_id": run.run_id,
            "run_type": run.run_type,
            "status": run.status(state),
            "output": self._output(run, state),
            "downloaded_files": [self._file_info(f, base_url) for f in files if f.artifact_type == "download"]
            or None,
            "recording_url": next(
                (self.signed_url(f, base_url) for f in files if f.artifact_type == "recording"), None
            ),
            "recording_archived": False,
            "screenshot_urls": None
            if run.run_type == "task_v2"  # Skyvern 1.0.56 reports none for v2 runs
            else [self.signed_url(f, base_url) for f in files if f.artifact_type == "screenshot_final"]
            or None,
            "failure_reason": failure,
            "errors": self._errors(run, state),
            "created_at": iso(run.lifecycle.created),
            "modified_at": iso(
                state.finished_at or state.started_at or state.queued_at or run.lifecycle.created
            ),
            "queued_at": iso(state.queued_at),
            "started_at": iso(state.started_at),
            "finished_at": iso(state.finished_at),
            "app_url": f"{base_url}/runs/{run.run_id}",
            "browser_session_id": run.request.get("browser_session_id"),
            "browser_profile_id": None,
            "max_screenshot_scrolls": run.request.get("max_screenshot_scrolls"),
            "script_run": self._script_run(run, state),
            "step_count": state.step_count,
            "run_request": run.run_request(),
        }
        if run.is_workflow:
            script_run = body["script_run"]
            body.update(
                run_with=run.script.run_with if run.script else run.request.get("run_with") or "agent",
                ai_fallback=run.script.ai_fallback if run.script else run.request.get("ai_fallback"),
                script_id=script_run["script_id"] if script_run else None,
                attempt=state.attempt,
                retry_pending=state.retry_pending,
                next_attempt_at=iso(state.next_attempt_at),
                attempts=[_attempt_json(a, state) for a in state.attempts],
            )
        return body

    def workflow_blocks(self, run: EmulatedRun, state: RunState) -> list[dict[str, Any]]:
        """The blocks reached so far (the second starts halfway through the steps): the earlier ones
        completed, the last one as the run is (running, failed, ...)."""
        kinds = _blocks_of(run)
        steps, count = max(run.lifecycle.plan.steps, 1), len(kinds)
        if state.status == "completed":
            reached = count
        else:
            reached = sum(1 for i in range(count) if state.step_count > steps * i // count)
        blocks = []
        for index, (label, block_type) in enumerate(kinds[:reached]):
            last = index == reached - 1
            status = state.status if last and state.status != "completed" else "completed"
            output = self._block_output(run, index) if status == "completed" else None
            blocks.append({"label": label, "block_type": block_type, "status": status, "output": output})
        return blocks

    def _block_output(self, run: EmulatedRun, index: int) -> Any:
        _, block_type = _blocks_of(run)[index]
        if block_type == "goto_url":
            return None  # a goto_url block records no output value
        if run.block is not None:  # a login or download block extracts nothing
            return {
                "task_id": f"tsk_{run.number}{index}",
                "status": "completed",
                "extracted_information": None,
                "failure_reason": None,
                "errors": [],
            }
        parameters = run.request.get("parameters") or {}
        saved = run.workflow.blocks[index] if run.workflow is not None and run.workflow.blocks else None
        if saved is not None:  # by the block's own schema, as its goal asks
            extracted = sample_output(saved.data_schema, saved.goal, run.run_id)
        else:
            extracted = sample_output(None, json.dumps(parameters, sort_keys=True), run.run_id)
        return {
            "task_id": f"tsk_{run.number}{index}",
            "status": "completed",
            "extracted_information": extracted,
            "failure_reason": None,
            "errors": [],
            "downloaded_files": None,
            "downloaded_file_urls": None,
            "task_screenshots": None,
            "workflow_screenshots": None,
        }

    def list_item(self, run: EmulatedRun) -> dict[str, Any]:
        state = run.lifecycle.state_at(self.now())
        return {
            "task_run_id": f"tr_{run.number}",
            "run_id": run.run_id,
            "task_run_type": run.run_type,
            "status": run.status(state),
            "title": run.title(state.status),
            "started_at": iso(state.started_at),
            "finished_at": iso(state.finished_at),
            "created_at": iso(run.lifecycle.created),
            "workflow_permanent_id": run.request.get("workflow_id"),
            "workflow_deleted": False,
            "script_run": False,  # 1.0.56 never sets task_runs.script_run: false even for a replay
            "trigger_type": "api",
        }

    def _output(self, run: EmulatedRun, state: RunState) -> Any:
        if state.status == "failed" and run.script is not None and run.script.mode == "script_failed":
            return self._failed_replay_output(run, state)
        if state.status != "completed":
            return None
        extracted = sample_output(
            run.request.get("data_extraction_schema"), str(run.request.get("prompt", "")), run.run_id
        )
        if run.is_workflow:
            blocks = self.workflow_blocks(run, state)
            outputs: dict[str, Any] = {f"{b['label']}_output": b["output"] for b in blocks}
            outputs["extracted_information"] = [
                b["output"]["extracted_information"]
                for b in blocks
                if isinstance(b["output"], dict) and b["output"]["extracted_information"] is not None
            ]
            return outputs
        return extracted

    def _failed_replay_output(self, run: EmulatedRun, state: RunState) -> dict[str, Any]:
        """A replay that failed without the AI reports its blocks, the failed one with the script's error
        (as 1.0.56 does: ``{"<label>_output": {"status": "failed", ...}, "extracted_information": []}``)."""
        outputs: dict[str, Any] = {}
        for index, block in enumerate(self.workflow_blocks(run, state)):
            output = block["output"]
            if block["status"] != "completed":
                output = {
                    "task_id": f"tsk_{run.number}{index}",
                    "status": "failed",
                    "extracted_information": None,
                    "failure_reason": SCRIPT_BLOCK_ERROR,
                    "errors": [],
                }
            outputs[f"{block['label']}_output"] = output
        outputs["extracted_information"] = []
        return outputs

    def _failure_reason(self, run: EmulatedRun, state: RunState) -> str | None:
        if state.status == "canceled" and run.lifecycle.canceled_at is not None:
            return "Run canceled by the user"
        if state.status == "failed" and run.script is not None and run.script.mode == "script_failed":
            return SCRIPT_FAILURE
        if state.retry_pending:
            return RETRIED_ATTEMPT_REASON.format(attempt=state.attempt)
        template = FAILURE_REASONS.get(state.status)
        if template is None:
            return None
        mapping = run.request.get("error_code_mapping") or {}
        if state.status == "failed" and mapping:
            return str(next(iter(mapping.values())))
        return template.format(steps=state.step_count)

    def _errors(self, run: EmulatedRun, state: RunState) -> list[dict[str, Any]]:
        mapping = run.request.get("error_code_mapping") or {}
        if state.status != "failed" or not mapping:
            return []
        code, reasoning = next(iter(mapping.items()))
        return [{"error_code": code, "reasoning": reasoning, "confidence_float": 0.9}]

    # ---- cached scripts (replay as code) ---------------------------------------------------------------

    def script_revisions(self, now: float) -> list[ScriptRevision]:
        """The scripts recorded by ``now``, oldest first: a pure function of the runs and the time.

        A run of a saved workflow that ended completed (or terminated, with ``generate_script_on_terminal``)
        records revision 1 of a new script for its cache key value when there is none yet."""
        ended: list[tuple[float, int, EmulatedRun, ScriptPlan]] = []
        with self.lock:
            runs = list(self.runs.values())
        for run in runs:
            plan = run.script
            if plan is None or not plan.records or run.workflow is None:
                continue
            state = run.lifecycle.state_at(now)
            if not state.is_terminal or state.finished_at is None or state.finished_at > now:
                continue
            if state.status == "completed" or (state.status == "terminated" and plan.generate_on_terminal):
                ended.append((state.finished_at, run.number, run, plan))
        ended.sort(key=lambda entry: entry[:2])
        revisions: list[ScriptRevision] = []
        latest: dict[tuple[str, str], ScriptRevision] = {}
        for finished, number, run, plan in ended:
            assert run.workflow is not None
            key = (run.workflow.workflow_permanent_id, plan.cache_key_value)
            if key in latest:  # another run recorded this key's script first; this one keeps it
                continue
            script_id, version = f"s_{number}", 1
            revision = ScriptRevision(
                script_id, f"sr_{number}", version, key[0], key[1], run.run_id, finished
            )
            revisions.append(revision)
            latest[key] = revision
        return revisions

    def latest_script(self, workflow_permanent_id: str, cache_key_value: str) -> ScriptRevision | None:
        """The revision a run starting now would load for this cache key value (None: a cache miss)."""
        found = None
        for revision in self.script_revisions(self.now()):
            if (revision.workflow_permanent_id, revision.cache_key_value) == (
                workflow_permanent_id,
                cache_key_value,
            ):
                found = revision
        return found

    def _script_run(self, run: EmulatedRun, state: RunState) -> dict[str, Any] | None:
        """Set when the run starts with a loaded script (``_mark_script_run_loaded``); the fallback flag
        flips once the replay's time is over and the agent has taken over."""
        plan = run.script
        if plan is None or plan.loaded is None or state.started_at is None:
            return None
        triggered = False
        if plan.mode == "fallback":
            lifecycle = run.lifecycle
            ends = lifecycle.begins + lifecycle.plan.seconds  # the planned end (a fallback has no retries)
            at = min(self.now(), state.finished_at or math.inf, lifecycle.canceled_at or math.inf)
            triggered = at >= fallback_at(state.started_at, ends)
        return plan.loaded.script_run(triggered)

    # ---- artifacts ------------------------------------------------------------------------------------

    def artifacts(self, run: EmulatedRun, state: RunState | None = None) -> list[ArtifactFile]:
        """The files of a run that has ended after starting: recording, 2 final screenshots, the downloads
        of a completed run, and one artifact of each other kind a run leaves (HAR, page PDF, HTML, log)."""
        state = state or run.lifecycle.state_at(self.now())
        if not state.is_terminal or state.started_at is None:
            return []
        number = run.number * ARTIFACTS_PER_RUN
        files = [
            ArtifactFile(
                f"a_{number + 1}",
                "recording",
                "recording.webm",
                "video/webm",
                BytesBlob(recording_webm()),
                SENSITIVE_URL_SECONDS,
            ),
            *(
                ArtifactFile(
                    f"a_{number + k}",
                    "screenshot_final",
                    f"screenshot_{k - 1}.png",
                    "image/png",
                    BytesBlob(screenshot_png(f"{run.run_id}/{k}")),
                    SENSITIVE_URL_SECONDS,
                )
                for k in (2, 3)
            ),
        ]
        if state.status == "completed":
            files += self._downloads(run, state, number + FIRST_DOWNLOAD)
        extras: tuple[tuple[str, str, str, bytes], ...] = (
            ("har", "network.har", "application/json", b'{"log": {"version": "1.2", "entries": []}}'),
            ("pdf", "page.pdf", "application/pdf", invoice_pdf(run.run_id)),
            (
                "html",
                "page.html",
                "text/html",
                f"<html><body>Emulated page {run.run_id}</body></html>".encode(),
            ),
            ("skyvern_log", "skyvern.log", "text/plain", f"emulated log of {run.run_id}\n".encode()),
        )
        for k, (kind, name, media_type, content) in enumerate(extras):
            extra_id = f"a_{number + FIRST_EXTRA + k}"
            files.append(
                ArtifactFile(extra_id, kind, name, media_type, BytesBlob(content), DEFAULT_URL_SECONDS)
            )
        return files

    def _downloads(self, run: EmulatedRun, state: RunState, first_id: int) -> list[ArtifactFile]:
        """``[emulator download_mb=N files=K filename=X]`` asks for K generated files (all named X when
        given); otherwise an invoice PDF for download runs and prompts about invoices or downloads, else
        the output as CSV. A login run downloads nothing."""
        if run.block == "login":
            return []
        plan = run.lifecycle.plan
        if plan.download_mb > 0 or plan.filename is not None:
            size = int(plan.download_mb * MEBIBYTE)
            count = min(plan.files, FIRST_EXTRA - FIRST_DOWNLOAD)
            return [
                ArtifactFile(
                    f"a_{first_id + k}",
                    "download",
                    plan.filename if plan.filename is not None else f"download-{k + 1}.bin",
                    "application/octet-stream",
                    PatternBlob(f"{run.run_id}/{k}", size) if size else BytesBlob(invoice_pdf(run.run_id)),
                    DEFAULT_URL_SECONDS,
                    plan.download_mbps * 1e6,
                )
                for k in range(count)
            ]
        prompt = str(run.request.get("prompt") or run.request.get("navigation_goal") or "").lower()
        if run.block == "file_download" or "invoice" in prompt or "download" in prompt:
            download = ("invoice.pdf", "application/pdf", BytesBlob(invoice_pdf(run.run_id)))
        else:
            download = ("extracted.csv", "text/csv", BytesBlob(output_csv(self._output(run, state))))
        return [ArtifactFile(f"a_{first_id}", "download", *download, DEFAULT_URL_SECONDS)]

    def find_artifact(self, artifact_id: str) -> tuple[EmulatedRun, ArtifactFile] | None:
        try:
            number = int(artifact_id.removeprefix("a_"))
        except ValueError:
            return None
        run = next((r for r in self.runs.values() if r.number == number // ARTIFACTS_PER_RUN), None)
        if run is None:
            return None
        found = next((f for f in self.artifacts(run) if f.artifact_id == artifact_id), None)
        return (run, found) if found else None

    def artifact_json(self, run: EmulatedRun, file: ArtifactFile, base_url: str) -> dict[str, Any]:
        finished = iso(run.lifecycle.state_at(self.now()).finished_at)
        return {
            "artifact_id": file.artifact_id,
            "artifact_type": file.artifact_type,
            "uri": f"file:///emulator/{run.run_id}/{file.filename}",
            "organization_id": ORGANIZATION_ID,
            "created_at": finished,
            "modified_at": finished,
            "run_id": run.run_id,
            "task_id": None if run.is_workflow else run.run_id,
            "workflow_run_id": run.run_id if run.is_workflow else None,
            "checksum": file.blob.sha256,
            "file_size": file.blob.size,
            "signed_url": self.signed_url(file, base_url),
            "archived": False,
        }

    def _file_info(self, file: ArtifactFile, base_url: str) -> dict[str, Any]:
        return {
            "url": self.signed_url(file, base_url),
            "checksum": file.blob.sha256,
            "filename": file.filename,
            "file_size": file.blob.size,
            "artifact_id": file.artifact_id,
        }

    def signed_url(self, file: ArtifactFile, base_url: str) -> str:
        """A fresh presigned URL on every read, as Skyvern mints them; it expires like the real ones."""
        expires = int(self.now()) + file.url_seconds
        name = urllib.parse.quote(file.filename, safe="")  # a website's name may hold "/" or "?"
        return f"{base_url}/_emulator/files/{file.artifact_id}/{name}?expires={expires}&sig={self._sign(file.artifact_id, expires)}"

    def signature_ok(self, artifact_id: str, expires: int, sig: str) -> bool:
        return hmac.compare_digest(self._sign(artifact_id, expires), sig) and expires >= self.now()

    def _sign(self, artifact_id: str, expires: int) -> str:
        return hmac.new(self._url_key, f"{artifact_id}:{expires}".encode(), hashlib.sha256).hexdigest()[:32]

    # ---- browser sessions -----------------------------------------------------------------------------

    def session_status(self, session: BrowserSessionRecord) -> str:
        expired = self.now() >= session.created + session.timeout * 60
        return "completed" if session.closed is not None else "timeout" if expired else "running"

    def session_json(self, session: BrowserSessionRecord, base_url: str) -> dict[str, Any]:
        status = self.session_status(session)
        ws_base = base_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        return {
            "browser_session_id": session.browser_session_id,
            "organization_id": ORGANIZATION_ID,
            "status": status,
            "timeout": session.timeout,
            "browser_address": f"{ws_base}/_emulator/cdp/{session.browser_session_id}",
            "app_url": f"{base_url}/browser-sessions/{session.browser_session_id}",
            "browser_type": session.request.get("browser_type"),
            "extensions": session.request.get("extensions"),
            "browser_profile_id": session.request.get("browser_profile_id"),
            "created_at": iso(session.created),
            "modified_at": iso(session.closed or session.created),
            "started_at": iso(session.created),
            "completed_at": iso(session.closed),
            "warning": session.warning,
        }


def _blocks_of(run: EmulatedRun) -> tuple[tuple[str, str], ...]:
    if run.block is not None:
        return ((run.block, run.block),)
    if run.workflow is not None and run.workflow.blocks:
        return tuple((b.label, b.block_type) for b in run.workflow.blocks)
    return WORKFLOW_BLOCKS


def _attempt_json(attempt: Attempt, state: RunState) -> dict[str, Any]:
    """One entry of ``attempts[]`` (Skyvern's ``WorkflowRunAttempt``)."""
    retried = attempt.next_attempt_at is not None and attempt.status == "failed"
    return {
        "attempt_number": attempt.number,
        "status": attempt.status,
        "failure_reason": RETRIED_ATTEMPT_REASON.format(attempt=attempt.number) if retried else None,
        "error_codes": [],
        "started_at": iso(attempt.started_at),
        "finished_at": iso(attempt.finished_at),
        "retry_decision": "retry" if retried else None,
        "decision_reason": "retry policy: failed attempt" if retried else None,
        "next_attempt_at": iso(attempt.next_attempt_at),
        "webhook_sent_at": None,
    }

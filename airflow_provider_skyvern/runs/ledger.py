"""Which Skyvern run belongs to this task instance, so retries, lost answers and crashes never pay twice.

Skyvern has no idempotency key, so a run is recognised by two things:

* **who** asked: a tag ``[airflow-<hash>]`` appended to the title, derived from the task instance
  (dag id, task id, run id, map index), the DAG run's start (different in every deployment sharing a
  Skyvern organisation) and ``max_tries`` (raised by every clear, unchanged by a retry). Skyvern keeps
  and searches titles only for title-keeping engines (skyvern-1.0, 3.0, the CUA engines); skyvern-2.0
  replaces the title, and every other field it keeps changes the run (prompt, url, webhook, TOTP
  endpoints, proxy, schema, error codes), so there the tag is known only to our own record;
* **what** was asked: the fields of the request the server echoes back in ``run_request``, compared by
  digest (never stored in clear: a request may hold header values or TOTP endpoints).

Workflow runs keep no request title (the workflow's own title is shown), so their tag rides in
``run_metadata`` under :data:`RUN_TAG_KEY`: Skyvern 1.0.56 stores it as a run tag that
``GET /v1/runs?tags=`` filters on, and does nothing else with it (it is not echoed in ``run_request``).
They are recognised by the echoed workflow id, parameters and endpoints.

Login and download_files runs cannot be recognised at all: Skyvern makes a new workflow for each request
(titled ``Login`` / ``File Download``, so no tag survives) and echoes none of what tells two apart (url,
goal, credential). Their record is :attr:`Submission.findable` False: a run id it holds is adopted as for
any run, but a submission whose answer was lost can never be resolved by looking, so the task says it
could not tell whether a run was created rather than risk a second one.

On Airflow 3.3+ a :class:`Submission` is written to the task state store *before* the POST and
completed with the run id right after, so a later try knows exactly whether a submission was in flight,
and when. Without a store (Airflow < 3.3), later tries can only find title-keeping runs still going.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, HttpUrl, ValidationError, model_validator

from airflow_provider_skyvern.exceptions import SkyvernError
from airflow_provider_skyvern.models import (
    RunEngine,
    RunResponse,
    TaskRunRequest,
    WorkflowRunRequest,
)
from airflow_provider_skyvern.requests.base import RequestBody

STATE_KEY = "skyvern_run_kept_for_retries"
"""What a person sees in the UI (Browse, Task State): the run a retry reattaches to. Deleting it while the task
can still retry makes that retry start a second run; see docs/exactly-once.md."""
LEGACY_STATE_KEY = "skyvern_submission"
"""The key before 0.1.0's records had phases: still read, so a retry across the upgrade reattaches."""
TITLE_DROPPING_ENGINES = frozenset({RunEngine.skyvern_v2})
DEFAULT_SERVER_ENGINE = RunEngine.skyvern_v1  # what Skyvern 1.0.56 uses when no engine is sent
RUN_TAG_KEY = "airflow"
"""The ``run_metadata`` key a workflow run's tag rides on: Skyvern 1.0.56 stores ``run_metadata`` as run
tags, filterable with ``GET /v1/runs?tags=airflow:<tag>``, and does nothing else with it."""
RUN_METADATA_MAX_KEYS = 20  # Skyvern 1.0.56 refuses more (forge/sdk/workflow/models/validators.py)

TagKeptIn = Literal["title", "run_metadata"]
"""Where Skyvern keeps (and lets a later try search for) the tag: the request's title (title-keeping task
engines), a workflow run's ``run_metadata``; None: nowhere (skyvern-2.0 tasks, login, download_files)."""


UNRECOGNISABLE = (
    "Skyvern's login and download_files runs each get a new ad-hoc workflow and echo nothing that tells "
    "them apart, so an earlier submission's run cannot be found by looking"
)


class RunStateUnknown(SkyvernError):
    """An earlier submission may have created a run this try cannot see: fail the try, never submit."""

    retryable = True

    def __init__(self, known: str, *, next_step: str | None = None, run_id: str | None = None) -> None:
        super().__init__(f"{known}; {next_step}" if next_step else known)
        self.known = known
        """What is known and what is not, without what a later try does about it."""
        self.next_step = next_step
        self.run_id = run_id
        """The run this is about, when its id is known (it could not be read): the last try cancels it."""

    def without_retry(self, why: str) -> str:
        """The message for a try no later try follows up (``why``): it says to look and clear, not what the
        next try would do (there is none, or it would find nothing and start a second run)."""
        return (
            f"{self.known}; {why}, so the task fails without retrying: look for it among Skyvern's runs, then "
            "clear the task to start a new one"
        )


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _normal_url(value: Any) -> Any:
    """The server stores ``str(HttpUrl(url))``; the same pydantic normalisation on both sides."""
    if not isinstance(value, str):
        return value
    try:
        return str(HttpUrl(value))
    except ValidationError:
        return value


def _echoed_fields(wire: dict[str, Any], engine: RunEngine) -> dict[str, Any]:
    """The request fields Skyvern 1.0.56 echoes unchanged in ``run_request`` for this engine."""
    fields = {
        name: wire[name]
        for name in ("error_code_mapping", "webhook_url", "totp_identifier", "totp_url")
        if wire.get(name) is not None
    }
    fields["engine"] = engine.value
    # A v1-style run without url lets the LLM write the goal, url and schema inside the POST.
    if wire.get("url") or engine in TITLE_DROPPING_ENGINES:
        fields["prompt"] = wire.get("prompt")
        if wire.get("data_extraction_schema") is not None:
            fields["data_extraction_schema"] = wire["data_extraction_schema"]
    if wire.get("url"):
        fields["url"] = _normal_url(wire["url"])
    return fields


WORKFLOW_ECHOED_FIELDS = (
    "webhook_url",
    "totp_url",
    "totp_identifier",
    "max_screenshot_scrolls",
    "browser_address",
    "browser_profile_id",
    "browser_session_id",
)
"""What Skyvern 1.0.56 echoes unchanged in a workflow run's ``run_request``, besides the workflow id and
the parameters (``services/workflow_service.py::get_workflow_run_response``); a fresh-browser run echoes
no session or profile."""


def _workflow_echoed_fields(wire: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {"workflow_id": wire["agent_id"]}
    names: tuple[str, ...] = WORKFLOW_ECHOED_FIELDS
    if wire.get("start_fresh_browser"):
        names = tuple(n for n in names if n not in ("browser_profile_id", "browser_session_id"))
    fields.update({name: wire[name] for name in names if wire.get(name) is not None})
    # The echo also holds the defaults of parameters not sent: only the ones sent are compared.
    for key, value in (wire.get("parameters") or {}).items():
        fields[f"parameters.{key}"] = _parameter_value(value)
    return fields


def _parameter_value(value: Any) -> Any:
    """Skyvern stores a parameter typed by its definition (``5`` for a string parameter becomes "5")."""
    return value if isinstance(value, (dict, list)) or value is None else str(value)


def _echoed_value(name: str, run_request: dict[str, Any]) -> Any:
    if name.startswith("parameters."):
        parameters = run_request.get("parameters")
        key = name.removeprefix("parameters.")
        return _parameter_value(parameters.get(key)) if isinstance(parameters, dict) else None
    value = run_request.get(name)
    return _normal_url(value) if name == "url" else value


def effective_engine(request: TaskRunRequest) -> RunEngine:
    """The engine Skyvern will run: its default when none is sent, 2.0 for published workflows."""
    if request.publish_workflow:
        return RunEngine.skyvern_v2
    return RunEngine(request.engine) if request.engine else DEFAULT_SERVER_ENGINE


def keeps_title(request: TaskRunRequest) -> bool:
    """Skyvern keeps (and searches) the title: a later try can find the run by its tag."""
    return effective_engine(request) not in TITLE_DROPPING_ENGINES


RECORD_VERSION = 2
"""Version 1 records (no ``version`` key) had no phase: a run id meant submitted, none submitting."""

Phase = Literal["submitting", "submitted", "handed_on", "ended"]
"""Where one run's life stands, each written before the step's side effect:

* ``submitting``: a run-creating POST may be in flight since ``since`` (written before it is sent);
* ``submitted``: the POST answered ``run_id`` (or an earlier try's run was adopted); somebody waits for it;
* ``handed_on``: ``wait_for_completion=False`` handed the id on: whoever waits for it owns it, so a clear
  never cancels it and a retry returns the same id;
* ``ended``: the run was seen final (``ended_status``) and its result is being handed on. Airflow pushes
  the return value after ``execute`` returns, and that push can fail, so the record stays: a retry of the
  same clear generation hands the same completed run on again instead of buying a second one.
"""
BAD_OUTPUT = "output_rejected"
"""``ended_status`` of a completed run whose output failed the task's own check: it ended badly."""


class Submission(BaseModel):
    """What one submission asked for and when; the state store keeps it across tries (JSON only)."""

    version: int = RECORD_VERSION
    phase: Phase = "submitting"
    ended_status: str | None = None
    tag: str
    fingerprint: str
    """Digest of the whole request (title aside): an edited DAG makes a different one."""
    echoed: dict[str, str]
    """Digests of the fields the server echoes, to recognise the run among others."""
    tag_kept_in: TagKeptIn | None = None
    since: float
    """Unix time just before the POST was sent."""
    try_number: int | None = None
    """The try that sent it (None in records written before 0.1.0 kept it): whom its run's cost is told of."""
    run_id: str | None = None
    search_key: str | None = None
    """What ``GET /v1/runs?search_key=`` narrows the candidates by when the title keeps no tag: a workflow
    id, or a skyvern-2.0 task's url as Skyvern stores it (its ``searchable_text`` is title + url)."""
    findable: bool = True
    """False when nothing on the server can recognise the run (login, download_files): only ``run_id`` counts."""

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, data: Any) -> Any:
        """A version 1 record (written before phases existed) reads as the phase it stood for."""
        if isinstance(data, dict) and "version" not in data:
            data = {
                **data,
                "version": RECORD_VERSION,
                "phase": "submitted" if data.get("run_id") else "submitting",
            }
        if isinstance(data, dict) and "keeps_title" in data:  # its name before workflow runs kept a tag
            kept = data["keeps_title"]
            data = {k: v for k, v in data.items() if k != "keeps_title"}
            data.setdefault("tag_kept_in", "title" if kept else None)
        return data

    @property
    def is_workflow(self) -> bool:
        return "workflow_id" in self.echoed

    @property
    def ended_well(self) -> bool:
        return self.phase == "ended" and self.ended_status == "completed"

    def at(self, phase: Phase, **fields: Any) -> Submission:
        return self.model_copy(update={"phase": phase, **fields})

    @classmethod
    def of(cls, request: TaskRunRequest, tag: str) -> Submission:
        wire = request.to_wire()
        engine = effective_engine(request)
        wire.pop("title", None)
        echoed = {name: _digest(value) for name, value in _echoed_fields(wire, engine).items()}
        return cls(
            tag=tag,
            fingerprint=_digest(wire),
            echoed=echoed,
            tag_kept_in="title" if keeps_title(request) else None,
            since=time.time(),
            search_key=None if keeps_title(request) or not wire.get("url") else _normal_url(wire["url"]),
        )

    @classmethod
    def of_workflow(cls, request: WorkflowRunRequest, tag: str, **options: Any) -> Submission:
        """``options`` (header and query values such as ``max_steps_override``) count in the fingerprint."""
        wire = request.to_wire()
        wire.pop("title", None)  # Skyvern shows the workflow's own title, never the request's
        echoed = {name: _digest(value) for name, value in _workflow_echoed_fields(wire).items()}
        return cls(
            tag=tag,
            fingerprint=_digest({"body": wire, **options}),
            echoed=echoed,
            tag_kept_in="run_metadata" if metadata_has_room(request.run_metadata) else None,
            since=time.time(),
            search_key=request.workflow_id,
        )

    @classmethod
    def of_run_block(cls, request: RequestBody, tag: str, block: str) -> Submission:
        """A login or download_files request: fingerprinted like any, but not findable (see the module)."""
        return cls(
            tag=tag,
            fingerprint=_digest({"block": block, "body": request.to_wire()}),
            echoed={},
            since=time.time(),
            findable=False,
        )

    def same_request(self, other: Submission) -> bool:
        """Same task instance, same clear generation, same deployment, same request."""
        return (self.tag, self.fingerprint) == (other.tag, other.fingerprint)

    def describes(self, run: RunResponse) -> bool:
        """The run's echoed request agrees with this submission on every field the server keeps."""
        run_request = getattr(run, "run_request", None)
        if not isinstance(run_request, dict):
            return False
        return all(_digest(_echoed_value(name, run_request)) == d for name, d in self.echoed.items())


def run_tag(context: Any) -> str:
    """Stable across retries of one task instance; new after a clear; different in every deployment."""
    ti = context["ti"]
    dag_run = context.get("dag_run") if hasattr(context, "get") else None
    started = getattr(dag_run, "start_date", None)
    identity = "\x1f".join(
        str(part)
        for part in (
            ti.dag_id,
            ti.task_id,
            ti.run_id,
            getattr(ti, "map_index", -1),
            started.isoformat() if isinstance(started, datetime) else "",
            getattr(ti, "max_tries", ""),
        )
    )
    return "airflow-" + hashlib.sha256(identity.encode()).hexdigest()[:16]


def metadata_has_room(run_metadata: dict[str, str] | None) -> bool:
    """The tag can join the user's ``run_metadata`` without replacing a key or passing Skyvern's limit."""
    user = run_metadata or {}
    return RUN_TAG_KEY not in user and len(user) < RUN_METADATA_MAX_KEYS


def tagged_metadata(run_metadata: dict[str, str] | None, tag: str) -> dict[str, str]:
    return {**(run_metadata or {}), RUN_TAG_KEY: tag}


def tagged_title(title: str | None, default: str, tag: str) -> str:
    """The user's title is kept as is; the tag is appended in brackets."""
    return f"{title or default} [{tag}]"


class SubmissionLedger:
    """The :class:`Submission` of this task instance in the task state store (Airflow 3.3+)."""

    def __init__(self, context: Any) -> None:
        self._store = context.get("task_state_store") if hasattr(context, "get") else None

    @property
    def available(self) -> bool:
        return self._store is not None

    def read(self) -> Submission | None:
        if self._store is None:
            return None
        value = self._store.get(STATE_KEY)
        if value is None:
            value = self._store.get(LEGACY_STATE_KEY)
        if value is None:
            return None
        try:
            return Submission.model_validate(value)
        except ValidationError:
            raise RunStateUnknown(
                f"the task state store holds an unreadable {STATE_KEY!r} ({str(value)[:80]!r}); delete it "
                "once you know no Skyvern run of this task is still going"
            ) from None

    def write(self, submission: Submission) -> None:
        if self._store is not None:
            self._store.set(STATE_KEY, submission.model_dump(mode="json"))
            if self._store.get(LEGACY_STATE_KEY) is not None:
                self._store.delete(LEGACY_STATE_KEY)

    def clear(self) -> None:
        if self._store is not None:
            self._store.delete(STATE_KEY)
            self._store.delete(LEGACY_STATE_KEY)

    def ended(self, run_id: str, status: str) -> None:
        """The run was seen final: the record stays (see :data:`Phase`), saying how it ended."""
        try:
            record = self.read()
        except RunStateUnknown:  # unreadable: the next try says so; the run's end is no reason to fail
            return
        if record is not None and record.run_id == run_id:
            self.write(record.at("ended", ended_status=status))

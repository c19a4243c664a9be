"""Which Skyvern run belongs to this task instance, so retries, lost answers and crashes never pay twice.

Skyvern has no idempotency key, so a run is recognised by two things:

* **who** asked: a tag ``[airflow-<hash>]`` appended to the title, derived from the task instance
  (dag id, task id, run id, map index), the DAG run's start (different in every deployment sharing a
  Skyvern organisation) and ``max_tries`` (raised by every clear, unchanged by a retry). Skyvern keeps
  and searches titles only for title-keeping engines (skyvern-1.0, 3.0, the CUA engines); skyvern-2.0
  replaces the title, so there the tag is known only to our own record;
* **what** was asked: the fields of the request the server echoes back in ``run_request``, compared by
  digest (never stored in clear: a request may hold header values or TOTP endpoints).

Workflow runs keep no request title (the workflow's own title is shown), so for them the tag lives only in
our own record; their runs are looked for by the workflow id (which ``search_key`` matches) and recognised
by the echoed workflow id, parameters and endpoints.

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, HttpUrl, ValidationError, model_validator

from airflow_provider_skyvern.exceptions import SkyvernError
from airflow_provider_skyvern.hooks.skyvern import SkyvernHook
from airflow_provider_skyvern.models import (
    RunEngine,
    RunListItem,
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
CLOCK_SLACK_SECONDS = 300.0
"""Skyvern's ``created_at`` vs this worker's clock: candidates are looked for this much earlier."""
SETTLE_SECONDS = 120.0
"""After a POST's own timeout plus this, a run it created is listed (a v1 run without url asks the LLM
inside the POST, so its row can appear seconds after the client gave up)."""
LIST_PAGE_SIZE = 100  # Skyvern's maximum
MAX_LIST_PAGES = 10
RECONCILE_ATTEMPTS = 4
RECONCILE_WAIT_SECONDS = 2.0


UNRECOGNISABLE = (
    "Skyvern's login and download_files runs each get a new ad-hoc workflow and echo nothing that tells "
    "them apart, so an earlier submission's run cannot be found by looking"
)


class RunStateUnknown(SkyvernError):
    """An earlier submission may have created a run this try cannot see: fail the try, never submit."""

    retryable = True


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
    keeps_title: bool
    since: float
    """Unix time just before the POST was sent."""
    run_id: str | None = None
    search_key: str | None = None
    """What ``GET /v1/runs?search_key=`` narrows the candidates by when the title keeps no tag (a workflow id)."""
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
        return data

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
            keeps_title=keeps_title(request),
            since=time.time(),
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
            keeps_title=False,
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
            keeps_title=False,
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


@dataclass
class RunFinder:
    """Finds the runs a submission created, through what the real server can search."""

    hook: SkyvernHook
    sleep: Callable[[float], None]

    def created_by(self, submission: Submission) -> list[RunResponse]:
        """Runs created since the submission that carry its tag (where kept) and its request."""
        if not submission.findable:
            raise RunStateUnknown(UNRECOGNISABLE)
        since = submission.since - CLOCK_SLACK_SECONDS
        if submission.keeps_title:
            items = [item for item in self.tagged(submission) if _created_at(item) >= since]
        else:
            listed = self._listed_since(since, submission.search_key)
            items = [item for item in listed if _may_be(item, submission)]
        runs = [self.hook.get_run(item.run_id) for item in items]
        return [run for run in runs if submission.describes(run)]

    def tagged(self, submission: Submission) -> list[RunListItem]:
        """Listed runs whose title carries the submission's tag (title-keeping engines), newest first."""
        listed = self.hook.list_runs(search_key=submission.tag, page_size=LIST_PAGE_SIZE)
        return [item for item in listed if submission.tag in (item.title or "")]

    def settled(self, submission: Submission, request_timeout: float) -> bool:
        """Long enough after the POST that any run it created is listed by now."""
        return time.time() >= submission.since + request_timeout + SETTLE_SECONDS

    def reconcile(self, submission: Submission) -> list[RunResponse]:
        """Right after an ambiguous POST: a few looks, since Skyvern may list the run a moment later."""
        for attempt in range(RECONCILE_ATTEMPTS):
            found = self.created_by(submission)
            if found or attempt == RECONCILE_ATTEMPTS - 1:
                return found
            self.sleep(RECONCILE_WAIT_SECONDS)
        return []  # pragma: no cover - the loop always returns

    def _listed_since(self, since: float, search_key: str | None) -> Iterable[RunListItem]:
        for page in range(1, MAX_LIST_PAGES + 1):
            items = self.hook.list_runs(search_key=search_key, page=page, page_size=LIST_PAGE_SIZE)
            yield from (item for item in items if _created_at(item) >= since)
            if len(items) < LIST_PAGE_SIZE or (items and _created_at(items[-1]) < since):
                return
        raise RunStateUnknown(
            f"more than {MAX_LIST_PAGES * LIST_PAGE_SIZE} Skyvern runs were created in the "
            f"{CLOCK_SLACK_SECONDS:g} s around the earlier submission; could not look through them all"
        )


def _created_at(item: RunListItem) -> float:
    return item.created_at.astimezone(timezone.utc).timestamp()


def _may_be(item: RunListItem, submission: Submission) -> bool:
    """A listed run of a title-keeping engine cannot be a skyvern-2.0 submission's run; a workflow
    submission's run is a run of that workflow."""
    if submission.search_key is not None:
        return item.task_run_type.value == "workflow_run" and item.workflow_permanent_id in (
            None,
            submission.search_key,
        )
    return item.task_run_type.value in ("task_v2", "workflow_run")

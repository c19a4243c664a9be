"""What every simulator test shares: the run kinds (task skyvern-2.0 and skyvern-1.0, workflow, login,
download_files) and their configurations, one schedule of one task instance, the invariants; the same with
runs that fail and a retry delay they end in, for what a task instance spent (:class:`UsageSchedule`,
:func:`usage_violations`); and for a browser session's setup task and its teardown (:class:`SessionSchedule`,
:func:`session_violations`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from airflow_provider_skyvern.emulator.server import EmulatorServer
from airflow_provider_skyvern.operators.browser_session import (
    SkyvernCloseBrowserSessionOperator,
    SkyvernCreateBrowserSessionOperator,
)
from airflow_provider_skyvern.operators.download_files import SkyvernDownloadFilesOperator
from airflow_provider_skyvern.operators.login import SkyvernLoginOperator
from airflow_provider_skyvern.operators.task import SkyvernRunTaskOperator
from airflow_provider_skyvern.operators.workflow import SkyvernRunWorkflowOperator
from airflow_provider_skyvern.runs.usage import USAGE_KEY
from tests.operator_support import FakeTaskInstance, make_context
from tests.simulator.airflow_model import Boundaries, Outcome, TaskInstanceModel, http_boundaries

LONG = os.environ.get("SKYVERN_SIMULATOR") == "long"
BAD_ENDS = {"failed", "terminated", "canceled", "timed_out"}
TOLD = ("could not tell", "may have created", "look for it among skyvern's runs")
"""How the task's error says a run may exist that it could not find or read: the user is told."""


class EmulatedTime:
    """The emulator's clock; every wait of the provider advances it instead of sleeping."""

    def __init__(self) -> None:
        import time

        self.now = time.time()

    def __call__(self) -> float:
        return self.now


KINDS: dict[str, Callable[..., Any]] = {
    "task skyvern-2.0": lambda **kw: SkyvernRunTaskOperator(
        task_id="extract",
        prompt="Extract the top 3 products",
        url="https://shop.test/",
        engine="skyvern_v2",
        **kw,
    ),
    "task skyvern-1.0": lambda **kw: SkyvernRunTaskOperator(
        task_id="extract",
        prompt="Extract the top 3 products",
        url="https://shop.test/",
        engine="skyvern_v1",
        **kw,
    ),
    "workflow": lambda **kw: SkyvernRunWorkflowOperator(
        task_id="report", workflow_id="wpid_42", parameters={"report_date": "2026-12-06"}, **kw
    ),
    "login": lambda **kw: SkyvernLoginOperator(
        task_id="log_in",
        url="https://shop.test/login",
        credential_type="skyvern",
        credential_id="cred_123",
        **kw,
    ),
    "download_files": lambda **kw: SkyvernDownloadFilesOperator(
        task_id="download",
        url="https://shop.test/invoices",
        navigation_goal="Download the latest invoice",
        **kw,
    ),
}
FOUND_ONLY_BY_THE_STORE = ("login", "download_files")
"""Run kinds nothing can find again without a state store (they keep no title and echo nothing a later try
could recognise): before Airflow 3.3 a retry after a try died past their POST starts a second run, as
docs/airflow-versions.md (linked from README) and docs/exactly-once.md ("Windows that remain") say; no
schedule checks them there."""
CONFIGS = [
    (kind, deferrable, store)
    for kind in KINDS
    for deferrable in (True, False)
    for store in (True, False)
    if store or kind not in FOUND_ONLY_BY_THE_STORE
]


RUNNING: list[TaskInstanceModel] = []
"""The schedule running now, whose task instance state a trigger's ``on_kill`` asks the API server for."""


@dataclass
class Schedule:
    kind: str
    deferrable: bool
    store: bool
    die_at: int | None = None
    act: str | None = None

    def run(self, emulator: EmulatorServer) -> tuple[Outcome, list[str], list[dict[str, Any]]]:
        boundaries = Boundaries(die_at=self.die_at, act=self.act)

        def make() -> Any:
            return KINDS[self.kind](deferrable=self.deferrable, poll_interval=2)

        model = TaskInstanceModel(make, boundaries, with_state_store=self.store)
        RUNNING[:] = [model]
        with http_boundaries(boundaries, emulator.base_url):
            outcome = model.run()
        emulator.control.delete("/_emulator/faults").raise_for_status()  # the reads below are the test's own
        runs = list(emulator.control.get("/_emulator/runs").json()["runs"])
        for run in runs:
            run["output"] = (
                emulator.control.get(f"/v1/runs/{run['run_id']}", headers={"x-api-key": emulator.api_key})
                .json()
                .get("output")
            )
        return outcome, boundaries.passed, runs


def violations(
    outcome: Outcome, runs: list[dict[str, Any]], *, killed: bool = False, generations: int = 1
) -> list[str]:
    """The invariants; ``killed``: the user marked the task failed, so no run may be left going;
    ``generations``: how many clear generations the task instance went through (one run each at most, and
    an earlier generation's run may have completed before the clear reached it)."""
    if killed:
        return [
            f"run {run['run_id']} is left {run['status']} after the task was marked failed"
            for run in runs
            if run["status"] not in BAD_ENDS | {"completed"} and not run["cancel_requests"]
        ]
    found = []
    settled = [r for r in runs if r["status"] not in BAD_ENDS and r["cancel_requests"] == 0]
    if len(settled) > generations:
        found.append(
            f"invariant 1: {len(settled)} runs neither canceled nor ended badly: {[r['run_id'] for r in settled]}"
        )
    handed_on = [r for r in runs if outcome.state == "success" and r["output"] == outcome.return_value]
    told = outcome.state == "failed" and any(
        phrase in error.lower() for error in outcome.errors for phrase in TOLD
    )
    for run in runs:
        if run in handed_on or run["cancel_requests"] or run["status"] in BAD_ENDS:
            continue
        if generations > 1 and run["status"] == "completed":
            continue  # an earlier generation's run that ended before the clear reached it
        if not told:
            found.append(
                f"invariant 2: run {run['run_id']} ({run['status']}) is left with nobody waiting for it"
            )
    if outcome.state == "success" and not any(r["status"] == "completed" for r in handed_on):
        found.append(
            f"invariant 4: the task handed on {outcome.return_value!r:.80}, no completed run's output"
        )
    return found


# ---- what a task instance spent ---------------------------------------------------------------------------

FAILING = "[emulator outcome=failed steps=7]"
"""Every run fails after 7 steps: each retry starts a new run, and none adopts a run that ended."""
FAILING_KINDS: dict[str, Callable[..., Any]] = {
    "task skyvern-2.0": lambda **kw: SkyvernRunTaskOperator(
        task_id="extract",
        prompt=f"Extract the top 3 products {FAILING}",
        url="https://shop.test/",
        engine="skyvern_v2",
        **kw,
    ),
    "task skyvern-1.0": lambda **kw: SkyvernRunTaskOperator(
        task_id="extract",
        prompt=f"Extract the top 3 products {FAILING}",
        url="https://shop.test/",
        engine="skyvern_v1",
        **kw,
    ),
    "workflow": lambda **kw: SkyvernRunWorkflowOperator(
        task_id="report", workflow_id="wpid_42", parameters={"report_date": FAILING}, **kw
    ),
    "login": lambda **kw: SkyvernLoginOperator(
        task_id="log_in",
        url="https://shop.test/login",
        prompt=f"Log in {FAILING}",
        credential_type="skyvern",
        credential_id="cred_123",
        **kw,
    ),
}
RETRY_DELAY = 300.0
"""Airflow's default ``retry_delay``: an earlier try's run has ended (failed) when the next try looks."""


@dataclass
class UsageSchedule:
    """A task instance (with the state store) whose every run fails: Airflow retries it after ``retry_delay``
    to its last try; its process dies at ``die_at``. Also gives the runs that existed when the last try
    began: every one of them was started by an earlier try, so the last try has run after it."""

    kind: str
    deferrable: bool
    die_at: int | None = None
    retries: int = 1

    def run(
        self, emulator: EmulatorServer, clock: EmulatedTime
    ) -> tuple[Outcome, list[str], list[dict[str, Any]], list[str], dict[str, Any] | None]:
        import time

        import time_machine

        boundaries = Boundaries(die_at=self.die_at)
        before_last_try: list[str] = []
        delays: list[Any] = []

        def make() -> Any:
            return FAILING_KINDS[self.kind](deferrable=self.deferrable, poll_interval=2)

        def retry_delay() -> None:
            with emulator.state.lock:  # read in process: a request here would cross a step boundary
                before_last_try[:] = list(emulator.state.runs)
            clock.now += RETRY_DELAY  # the server's clock and the worker's move on together
            delays.append(time_machine.travel(time.time() + RETRY_DELAY, tick=True))
            delays[-1].start()

        model = TaskInstanceModel(make, boundaries, retries=self.retries, on_retry=retry_delay)
        RUNNING[:] = [model]
        try:
            with http_boundaries(boundaries, emulator.base_url):
                outcome = model.run()
        finally:
            for delay in reversed(delays):
                delay.stop()
        runs = list(emulator.control.get("/_emulator/runs").json()["runs"])
        usage = model.store.get(USAGE_KEY) if model.store is not None else None
        return outcome, boundaries.passed, runs, before_last_try, usage


def usage_violations(
    outcome: Outcome, runs: list[dict[str, Any]], before_last_try: list[str], usage: dict[str, Any] | None
) -> list[str]:
    """Every run a task instance started is counted in its usage record (the store's, as Airflow keeps it)
    once a later try has run, and all of them once its last try ended without dying; unless the task said it
    could not tell whether a run was created (then nothing knows the run). A counted run's steps, once known,
    are the steps it took."""
    counted = (usage or {}).get("runs", {})
    told = outcome.state == "failed" and any(
        phrase in error.lower() for error in outcome.errors for phrase in TOLD
    )
    last_try_died = bool(outcome.errors) and outcome.errors[-1].startswith("died at")
    found = []
    for run in runs:
        looked_for = run["run_id"] in before_last_try or not last_try_died
        if run["run_id"] not in counted and looked_for and not told:
            found.append(f"run {run['run_id']} ({run['status']}, {run['step_count']} steps) is not counted")
        steps = counted.get(run["run_id"], {}).get("steps")
        if steps is not None and run["status"] in BAD_ENDS | {"completed"} and steps != run["step_count"]:
            found.append(f"run {run['run_id']} took {run['step_count']} steps, counted as {steps}")
    return found


# ---- browser sessions -----------------------------------------------------------------------------------

SESSION_CONFIGS = [True, False]
"""A browser session's setup task, with and without the state store (it has no deferrable mode)."""
SESSION_TOLD = ("could not tell", "may be left open")
"""How the setup task's error says a session may be open that it could not find or close: the user is told."""


@dataclass
class SessionSchedule:
    """The setup task of :func:`~airflow_provider_skyvern.operators.browser_session.skyvern_browser_session`
    through Airflow's tries (dying, or the user acting, at ``die_at``), then its teardown as Airflow runs it:
    only once the setup succeeded (``ALL_DONE_SETUP_SUCCESS``: a failed setup makes it upstream_failed), with
    the session id pulled from the setup's XCom."""

    store: bool
    die_at: int | None = None
    act: str | None = None

    def run(self, emulator: EmulatorServer) -> tuple[Outcome, list[str], list[dict[str, Any]]]:
        boundaries = Boundaries(die_at=self.die_at, act=self.act)

        def make() -> SkyvernCreateBrowserSessionOperator:
            return SkyvernCreateBrowserSessionOperator(
                task_id="portal_session_create", session_timeout=30, url="https://shop.test/"
            )

        model = TaskInstanceModel(make, boundaries, with_state_store=self.store)
        RUNNING[:] = [model]
        with http_boundaries(boundaries, emulator.base_url):
            outcome = model.run()
        emulator.control.delete("/_emulator/faults").raise_for_status()
        if outcome.state == "success" and model.ti is not None:
            close = SkyvernCloseBrowserSessionOperator(
                task_id="portal_session_close", browser_session_id=model.ti.xcoms.get("browser_session_id")
            )
            close.execute(make_context(ti=FakeTaskInstance(task_id="portal_session_close")))
        sessions = list(emulator.control.get("/_emulator/sessions").json()["sessions"])
        return outcome, boundaries.passed, sessions


def session_violations(
    outcome: Outcome, sessions: list[dict[str, Any]], *, generations: int = 1
) -> list[str]:
    """Every session opened is closed once the teardown ran (or the setup failed telling the user one may be
    open); at most one session per clear generation was opened; a successful setup handed on an open one."""
    found = []
    if len(sessions) > generations:
        found.append(
            f"{len(sessions)} sessions opened for {generations} clear generation(s): "
            f"{[s['browser_session_id'] for s in sessions]}"
        )
    told = outcome.state == "failed" and any(
        phrase in error.lower() for error in outcome.errors for phrase in SESSION_TOLD
    )
    for session in sessions:
        if session["status"] != "completed" and not told:
            found.append(f"session {session['browser_session_id']} is left {session['status']}")
    if outcome.state == "success" and outcome.return_value not in [s["browser_session_id"] for s in sessions]:
        found.append(f"the setup handed on {outcome.return_value!r}, no session it opened")
    return found

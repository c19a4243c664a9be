"""Every crash point of a run's life, for every run kind, mode and Airflow generation, against the emulator.

For each configuration a schedule first runs with no crash, recording the step boundaries it passes (see
:mod:`.airflow_model`); then one schedule per boundary runs with the process dying exactly there, and
Airflow's retries (and, for the triggerer, another triggerer) carrying on. After each schedule the
invariants of DESIGN.md "Exactly once" are checked on what the emulator saw:

1. at most one run that did not end badly per task instance and clear generation;
2. every run created is handed on by the task, canceled, ended badly on its own, or reported: the task
   failed saying it could not tell whether a run was created (the only honest answer where Skyvern keeps
   nothing that tells this task's run from others);
3. another task instance's run (same request, started just before) is never adopted nor canceled;
4. a successful task hands on its own run's output.

``SKYVERN_SIMULATOR=long`` adds the clear-while-deferred interleavings for every boundary too.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from airflow_provider_skyvern.emulator.server import EmulatorServer, EmulatorSettings
from airflow_provider_skyvern.hooks.clock import Clock
from airflow_provider_skyvern.operators.login import SkyvernLoginOperator
from airflow_provider_skyvern.operators.task import SkyvernRunTaskOperator
from airflow_provider_skyvern.operators.workflow import SkyvernRunWorkflowOperator
from tests.conftest import set_connection
from tests.simulator.airflow_model import Boundaries, Outcome, TaskInstanceModel, http_boundaries

LONG = os.environ.get("SKYVERN_SIMULATOR") == "long"
BAD_ENDS = {"failed", "terminated", "canceled", "timed_out"}
COULD_NOT_TELL = "could not tell"


class EmulatedTime:
    """The emulator's clock; every wait of the provider advances it instead of sleeping."""

    def __init__(self) -> None:
        import time

        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def emulated_time() -> EmulatedTime:
    return EmulatedTime()


@pytest.fixture(scope="module")
def emulator(emulated_time: EmulatedTime) -> Iterator[EmulatorServer]:
    settings = EmulatorSettings(api_key="sim-key-0123456789", run_seconds=4.0, clock=emulated_time)
    with EmulatorServer(settings) as server:
        yield server


@pytest.fixture(autouse=True)
def wired(emulator: EmulatorServer, emulated_time: EmulatedTime, monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, host=emulator.base_url, password=emulator.api_key, extra={"max_retries": 2})

    def sleep(_: Clock, seconds: float) -> None:
        emulated_time.now += max(seconds, 0.0)

    async def asleep(_: Clock, seconds: float) -> None:
        emulated_time.now += max(seconds, 0.0)

    monkeypatch.setattr(Clock, "sleep", sleep)
    monkeypatch.setattr(Clock, "asleep", asleep)
    emulator.control.post("/_emulator/reset").raise_for_status()


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
}
CONFIGS = [
    (kind, deferrable, store)
    for kind in KINDS
    for deferrable in (True, False)
    for store in (True, False)
    if not (kind == "login" and not store)  # nothing can find a login run again without a store: see README
]


RUNNING: list[TaskInstanceModel] = []
"""The schedule running now, whose task instance state a trigger's ``on_kill`` asks the API server for."""


@pytest.fixture(autouse=True)
def api_server_states(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    def get_task_states(*, dag_id: str, task_ids: list[str], run_ids: list[str], **_: Any) -> dict[str, Any]:
        return {run_ids[0]: {task_ids[0]: RUNNING[-1].state}}

    monkeypatch.setattr(RuntimeTaskInstance, "get_task_states", staticmethod(get_task_states))


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
    told = outcome.state == "failed" and any(COULD_NOT_TELL in error.lower() for error in outcome.errors)
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


def in_known_window(kind: str, store: bool, passed: list[str], index: int) -> bool:
    """The window README "Airflow versions" documents: before Airflow 3.3 there is no state store, and a
    skyvern-2.0 task or a workflow run keeps nothing a later try could find it by, so a try that dies once
    Skyvern created its run (its answer lost or not) is retried with a second run."""
    if store or kind not in ("task skyvern-2.0", "workflow"):
        return False
    created = next(i for i, name in enumerate(passed) if name.startswith("worker: answer POST"))
    return index >= created


def _enumerate(
    kind: str, deferrable: bool, store: bool, emulator: EmulatorServer
) -> tuple[int, list[str], list[int]]:
    """(crash points, violations outside the documented window, crash points inside it)."""
    clean, passed, runs = Schedule(kind, deferrable, store).run(emulator)
    assert clean.state == "success", clean.errors
    assert violations(clean, runs) == []
    found: list[str] = []
    known: list[int] = []
    for index, boundary in enumerate(passed):
        emulator.control.post("/_emulator/reset").raise_for_status()
        outcome, _, runs = Schedule(kind, deferrable, store, die_at=index).run(emulator)
        problems = violations(outcome, runs)
        if problems and in_known_window(kind, store, passed, index):
            known.append(index)
            continue
        found += [
            f"died at #{index} ({boundary}): {problem}; errors: {outcome.errors}" for problem in problems
        ]
    return len(passed), found, known


def _user_acts(
    kind: str, deferrable: bool, store: bool, act: str, emulator: EmulatorServer
) -> tuple[int, list[str]]:
    """The user marks the task failed (``kill``) or clears it (``clear``) at every boundary of a clean schedule."""
    _, passed, _ = Schedule(kind, deferrable, store).run(emulator)
    found: list[str] = []
    acted = 0
    for index, boundary in enumerate(passed):
        if boundary.startswith("triggerer") and not store:
            continue  # before 3.3 no on_kill reaches a trigger: the clear's new try is what cancels
        emulator.control.post("/_emulator/reset").raise_for_status()
        outcome, _, runs = Schedule(kind, deferrable, store, die_at=index, act=act).run(emulator)
        if not any(error.startswith(act) for error in outcome.errors):
            continue  # a boundary on the POST's own thread: no signal lands there
        acted += 1
        problems = violations(outcome, runs, killed=act == "kill", generations=2 if act == "clear" else 1)
        if problems and act == "clear" and in_known_window(kind, store, passed, index):
            continue
        found += [
            f"{act} at #{index} ({boundary}): {problem}; errors: {outcome.errors}" for problem in problems
        ]
    return acted, found


@pytest.mark.parametrize("act", ["kill", "clear"])
@pytest.mark.parametrize(
    ("kind", "deferrable", "store"),
    CONFIGS if LONG else [c for c in CONFIGS if c[2]],
    ids=[
        f"{k}-{'deferrable' if d else 'blocking'}-{'3.3' if s else 'pre-3.3'}"
        for k, d, s in CONFIGS
        if LONG or s
    ],
)
def test_a_kill_or_a_clear_at_any_point_leaves_no_run_going(
    kind: str,
    deferrable: bool,
    store: bool,
    act: str,
    emulator: EmulatorServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    acted, found = _user_acts(kind, deferrable, store, act, emulator)
    with capsys.disabled():
        print(
            f"\n[simulator] {act} at every point: {kind}, {'deferrable' if deferrable else 'blocking'}, "
            f"{'state store' if store else 'no state store'}: {acted} schedules, {len(found)} violations"
        )
    assert acted > 3
    assert found == []


@pytest.mark.parametrize(
    ("kind", "deferrable", "store"),
    CONFIGS,
    ids=[f"{k}-{'deferrable' if d else 'blocking'}-{'3.3' if s else 'pre-3.3'}" for k, d, s in CONFIGS],
)
def test_no_crash_point_pays_twice_or_leaves_a_run_going(
    kind: str, deferrable: bool, store: bool, emulator: EmulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    crash_points, found, known = _enumerate(kind, deferrable, store, emulator)
    with capsys.disabled():
        print(
            f"\n[simulator] {kind}, {'deferrable' if deferrable else 'blocking'}, "
            f"{'state store' if store else 'no state store'}: {crash_points} crash points, {len(found)} "
            f"violations, {len(known)} in the window documented for Airflow < 3.3"
        )
    assert crash_points > 5
    assert found == []

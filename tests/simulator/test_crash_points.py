"""Every crash point of a run's life, for every run kind, mode and Airflow generation, against the emulator.

The run kinds are :data:`.schedules.KINDS` (task skyvern-2.0 and skyvern-1.0, workflow, login,
download_files), deferrable and blocking, with and without the state store (login and download_files with it
only: :data:`.schedules.FOUND_ONLY_BY_THE_STORE`). A browser session's setup task has its own module,
:mod:`.test_session_crash_points`.

For each configuration a schedule first runs with no crash, recording the step boundaries it passes (see
:mod:`.airflow_model`); then one schedule per boundary runs with the process dying exactly there, and
Airflow's retries (and, for the triggerer, another triggerer) carrying on. After each schedule the
invariants of DESIGN.md "Exactly once" are checked on what the emulator saw (:func:`.schedules.violations`).
The same is done with the user marking the task failed, or clearing it, at every boundary.

``SKYVERN_SIMULATOR=long`` adds the kill and clear schedules of the configurations without a state store.
"""

from __future__ import annotations

import pytest

from airflow_provider_skyvern.emulator.server import EmulatorServer
from tests.simulator.schedules import CONFIGS, LONG, Schedule, violations


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

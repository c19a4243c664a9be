"""Every crash point of a task instance whose runs fail, for what it spent (XCom ``usage``, ``max_steps_total``).

Skyvern bills each run's steps, so a run that a try started and then lost track of still cost money. Here
every run fails and Airflow retries after ``retry_delay`` (by then an earlier try's run has ended, so no try
adopts it: each retry starts a new one); the process dies once at each step boundary of the clean schedule.
The invariant (:func:`.schedules.usage_violations`): every run the emulator saw created is counted in the
task instance's usage record once a later try has run, whichever write the death came between (the
submission record's and the usage record's), unless the task said it could not tell whether a run was
created. Two tries (one retry) by default; ``SKYVERN_SIMULATOR=long`` gives three, and runs both modes of
every kind (by default each kind in one mode: the windows are the worker's, around the POST). The
exactly-once invariants (:func:`.schedules.violations`) hold as well, unless the death came in
the last try (nothing follows it to wait for or cancel its run: Airflow runs no ``on_kill`` on a SIGKILL).
"""

from __future__ import annotations

import pytest

from airflow_provider_skyvern.emulator.server import EmulatorServer
from tests.simulator.schedules import (
    FAILING_KINDS,
    LONG,
    EmulatedTime,
    UsageSchedule,
    usage_violations,
    violations,
)

USAGE_CONFIGS = [
    (kind, deferrable)
    for number, kind in enumerate(FAILING_KINDS)
    for deferrable in (True, False)
    if LONG or deferrable == bool(number % 2)
]
RETRIES = 2 if LONG else 1


@pytest.mark.parametrize(
    ("kind", "deferrable"),
    USAGE_CONFIGS,
    ids=[f"{k}-{'deferrable' if d else 'blocking'}" for k, d in USAGE_CONFIGS],
)
def test_no_crash_point_loses_a_run_from_what_the_task_instance_spent(
    kind: str,
    deferrable: bool,
    emulator: EmulatorServer,
    emulated_time: EmulatedTime,
    capsys: pytest.CaptureFixture[str],
) -> None:
    clean, passed, runs, _, usage = UsageSchedule(kind, deferrable, retries=RETRIES).run(
        emulator, emulated_time
    )
    assert (clean.state, clean.tries) == ("failed", RETRIES + 1), clean.errors
    assert [run["status"] for run in runs] == ["failed"] * (RETRIES + 1)
    assert usage_violations(clean, runs, [], usage) == []
    found: list[str] = []
    for index, boundary in enumerate(passed):
        emulator.control.post("/_emulator/reset").raise_for_status()
        schedule = UsageSchedule(kind, deferrable, die_at=index, retries=RETRIES)
        outcome, _, runs, before_last_try, usage = schedule.run(emulator, emulated_time)
        problems = usage_violations(outcome, runs, before_last_try, usage)
        if not outcome.errors[-1].startswith("died at"):  # no try follows a death in the last one
            problems += violations(outcome, runs)
        found += [
            f"died at #{index} ({boundary}): {problem}; errors: {outcome.errors}" for problem in problems
        ]
    with capsys.disabled():
        print(
            f"\n[simulator] usage, {kind}, {'deferrable' if deferrable else 'blocking'}: {len(passed)} crash "
            f"points, {len(found)} violations"
        )
    assert found == [], "\n".join(found)

"""Property-based search over faults on top of the crash points: hypothesis picks a run kind, a mode, and how
many of each fault the emulator serves (GETs answering 500 or 429 or dropping the connection, run-creating
POSTs whose answer is lost after the run was created, or refused with 503 "no run was created"), and a crash
point; every schedule it tries must keep the invariants.

The faults are counted (``times``), not random: a failing example replays exactly and shrinks. CI tries 25
examples; ``SKYVERN_SIMULATOR=long`` 400.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_skyvern.emulator.server import EmulatorServer
from tests.simulator.schedules import CONFIGS, LONG, Schedule, violations

TAGGED_OR_STORED = [config for config in CONFIGS if config[2] or config[0] == "task skyvern-1.0"]
"""Configurations the promise covers whatever dies when (docs/exactly-once.md: the others' window is known)."""


@st.composite
def faults(draw: st.DrawFn) -> list[dict[str, Any]]:
    rules = []
    for rule, most in (
        ({"method": "GET", "path": "/v1/runs/*", "status": 500}, 6),
        ({"method": "GET", "path": "/v1/runs/*", "status": 429, "retry_after": 1}, 3),
        ({"method": "GET", "path": "/v1/runs/*", "reset": True}, 3),
        ({"method": "POST", "path": "/v1/run/*", "reset": True, "after_create": True}, 2),
        ({"method": "POST", "path": "/v1/run/*", "status": 503}, 2),
    ):
        times = draw(st.integers(min_value=0, max_value=most))
        if times:
            rules.append({**rule, "times": times})
    return rules


@settings(
    max_examples=400 if LONG else 25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    config=st.sampled_from(TAGGED_OR_STORED),
    rules=faults(),
    die_at=st.one_of(st.none(), st.integers(min_value=0, max_value=40)),
)
def test_no_fault_pattern_pays_twice_or_leaves_a_run_going(
    emulator: EmulatorServer, config: tuple[str, bool, bool], rules: list[dict[str, Any]], die_at: int | None
) -> None:
    kind, deferrable, store = config
    emulator.control.post("/_emulator/reset").raise_for_status()
    emulator.control.post("/_emulator/faults", json=rules).raise_for_status()
    outcome, passed, runs = Schedule(kind, deferrable, store, die_at=die_at).run(emulator)
    assert violations(outcome, runs) == [], (passed, outcome.errors)

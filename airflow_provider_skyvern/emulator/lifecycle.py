"""How an emulated run unfolds: its plan (from an ``[emulator ...]`` directive) and its state at any time.

A run's state is a pure function of its plan, its creation time, a possible cancel time and "now", so
the emulator needs no background task and tests can drive it with a fake clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal, get_args

from airflow_provider_skyvern.models import RunStatus

Outcome = Literal["completed", "failed", "terminated", "timed_out", "canceled", "paused", "slow"]
OUTCOMES: tuple[str, ...] = get_args(Outcome)
DIRECTIVE_KEYS = ("outcome", "seconds", "steps", "create_seconds")
DEFAULT_STEPS = 5
DIRECTIVE = re.compile(r"\[emulator(?P<body>[^\]]*)\]")

# Fractions of the run's duration spent before each phase starts.
QUEUED_AT = 0.05
RUNNING_AT = 0.15


class DirectiveError(ValueError):
    """A malformed ``[emulator ...]`` directive; the message says what is accepted."""


@dataclass(frozen=True)
class Plan:
    outcome: Outcome
    seconds: float
    steps: int
    create_seconds: float = 0.0
    """Time the POST spends before the run exists (Skyvern asks the LLM inside a v1 POST without url)."""


def plan_from(texts: list[str], default_seconds: float, max_steps: int | None) -> Plan:
    """The first ``[emulator key=value ...]`` directive found in ``texts`` (prompt, title, ...) wins."""
    values: dict[str, str] = {}
    for text in texts:
        match = DIRECTIVE.search(text)
        if match:
            values = _parse_pairs(match.group("body"))
            break
    outcome = values.get("outcome", "completed")
    if outcome not in OUTCOMES:
        raise DirectiveError(f"emulator directive: outcome={outcome!r}; use one of {', '.join(OUTCOMES)}")
    seconds = _number(values, "seconds", default_seconds)
    steps = int(_number(values, "steps", DEFAULT_STEPS)) or 1
    if max_steps is not None and outcome == "completed" and max_steps < steps:
        outcome, steps = "timed_out", max_steps  # Skyvern ends a run that hits max_steps as timed_out
    return Plan(outcome, seconds, steps, _number(values, "create_seconds", 0.0))  # type: ignore[arg-type]


def _parse_pairs(body: str) -> dict[str, str]:
    values = {}
    for token in body.split():
        key, sep, value = token.partition("=")
        if not sep or key not in DIRECTIVE_KEYS:
            raise DirectiveError(
                f"emulator directive: {token!r} is not key=value with a key among {', '.join(DIRECTIVE_KEYS)}"
            )
        values[key] = value
    return values


def _number(values: dict[str, str], key: str, default: float) -> float:
    if key not in values:
        return default
    try:
        number = float(values[key])
    except ValueError:
        raise DirectiveError(f"emulator directive: {key}={values[key]!r} is not a number") from None
    if number < 0:
        raise DirectiveError(f"emulator directive: {key} must be >= 0")
    return number


FAILURE_REASONS: dict[str, str] = {
    "failed": "Emulated failure: the page never showed what the prompt asked for",
    "terminated": "Emulated termination: the goal cannot be achieved on this site",
    "timed_out": "Reached the maximum number of steps ({steps}) before the goal was achieved",
    "canceled": "Emulated cancellation by Skyvern",
}


@dataclass
class RunState:
    status: str
    step_count: int
    queued_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def is_terminal(self) -> bool:
        return RunStatus(self.status).is_terminal


@dataclass
class Lifecycle:
    """A run's clock: created at ``created``, canceled at ``canceled_at`` if someone asked."""

    plan: Plan
    created: float
    canceled_at: float | None = None
    cancel_requests: int = 0

    def state_at(self, now: float) -> RunState:
        natural = self._natural_state(now)
        if self.canceled_at is not None and not self._natural_state(self.canceled_at).is_terminal:
            cut = self._natural_state(self.canceled_at)
            return RunState("canceled", cut.step_count, cut.queued_at, cut.started_at, self.canceled_at)
        return natural

    def _natural_state(self, now: float) -> RunState:
        duration = self.plan.seconds
        elapsed = max(0.0, now - self.created)
        queued, started, ends = (self.created + duration * f for f in (QUEUED_AT, RUNNING_AT, 1.0))
        if elapsed >= duration and self.plan.outcome not in ("slow", "paused"):
            return RunState(self.plan.outcome, self.plan.steps, queued, started, ends)
        if elapsed < duration * QUEUED_AT:
            return RunState("created", 0)
        if elapsed < duration * RUNNING_AT:
            return RunState("queued", 0, queued)
        step_seconds = max(duration * (1 - RUNNING_AT) / self.plan.steps, 1e-6)
        steps = 1 + int((elapsed - duration * RUNNING_AT) / step_seconds)
        if self.plan.outcome == "paused" and elapsed >= duration:
            return RunState("paused", self.plan.steps, queued, started)
        if self.plan.outcome != "slow":
            steps = min(steps, self.plan.steps)
        return RunState("running", steps, queued, started)


def iso(timestamp: float | None) -> str | None:
    """Naive UTC ISO time, as Skyvern often sends it (clients must read it as UTC)."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).replace(tzinfo=None).isoformat()

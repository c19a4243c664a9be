"""How an emulated run unfolds: its plan (from an ``[emulator ...]`` directive) and its state at any time.

A run's state is a pure function of its plan, its creation time, a possible cancel time and "now", so
the emulator needs no background task and tests can drive it with a fake clock.
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal, get_args

from airflow_provider_skyvern.models import RunStatus

Outcome = Literal["completed", "failed", "terminated", "timed_out", "canceled", "paused", "slow"]
OUTCOMES: tuple[str, ...] = get_args(Outcome)
DIRECTIVE_KEYS = (
    "outcome",
    "seconds",
    "steps",
    "create_seconds",
    "attempts",
    "retry_seconds",
    "download_mb",
    "files",
    "filename",
    "download_mbps",
    "page_changed",
)
DEFAULT_RETRY_SECONDS = 2.0
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
    attempts: int = 1
    """A workflow retry policy: every attempt but the last ends ``failed`` with a retry pending."""
    retry_seconds: float = DEFAULT_RETRY_SECONDS
    """How long a failed attempt waits (``retry_pending``, ``next_attempt_at``) before the next starts."""
    download_mb: float = 0.0
    """Size of each generated download in MiB (``download_mb=200``); 0 keeps the small invoice or CSV."""
    files: int = 1
    """How many generated downloads (with ``download_mb`` or ``filename``)."""
    filename: str | None = None
    """The name every generated download reports, as a website chose it (``filename="../../x"``)."""
    download_mbps: float = 0.0
    """Pace of the generated downloads in MB/s, as a real link would be (0: as fast as the server goes)."""
    page_changed: bool = False
    """``page_changed=1``: the site no longer matches a workflow's cached script, so replaying it fails
    (the AI takes over when ``ai_fallback`` is on). No effect on runs that replay no script."""


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
    default_steps = DEFAULT_STEPS if max_steps is None else max(1, min(DEFAULT_STEPS, max_steps))
    steps = int(_number(values, "steps", default_steps)) or 1  # unplanned, a run fits its max_steps
    if max_steps is not None and outcome == "completed" and max_steps < steps:
        outcome, steps = "timed_out", max_steps  # Skyvern ends a run that hits max_steps as timed_out
    attempts = max(1, int(_number(values, "attempts", 1)))
    return Plan(
        outcome,  # type: ignore[arg-type]
        seconds,
        steps,
        _number(values, "create_seconds", 0.0),
        attempts,
        _number(values, "retry_seconds", DEFAULT_RETRY_SECONDS),
        _number(values, "download_mb", 0.0),
        max(1, int(_number(values, "files", 1))),
        values.get("filename"),
        _number(values, "download_mbps", 0.0),
        _number(values, "page_changed", 0.0) > 0,
    )


def _parse_pairs(body: str) -> dict[str, str]:
    values = {}
    lexer = shlex.shlex(body, posix=True)  # filename="my invoice.pdf" keeps its space
    lexer.whitespace_split, lexer.commenters, lexer.escape = True, "", ""  # and C:\x its backslash
    try:
        tokens = list(lexer)
    except ValueError as exc:
        raise DirectiveError(f"emulator directive: {exc}") from None
    for token in tokens:
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
RETRIED_ATTEMPT_REASON = "Emulated failure of attempt {attempt}: the site answered 503; retrying"


@dataclass(frozen=True)
class Attempt:
    """One finished attempt of a workflow run with a retry policy, as ``attempts[]`` reports it."""

    number: int
    status: str
    started_at: float | None
    finished_at: float | None
    next_attempt_at: float | None


@dataclass
class RunState:
    status: str
    step_count: int
    queued_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    attempt: int = 1
    retry_pending: bool = False
    next_attempt_at: float | None = None
    attempts: tuple[Attempt, ...] = ()
    """The attempts so far (workflow runs with a retry policy), the current one last."""

    @property
    def is_terminal(self) -> bool:
        return RunStatus(self.status).is_terminal and not self.retry_pending


@dataclass
class Lifecycle:
    """A run's clock: created at ``created``, canceled at ``canceled_at`` if someone asked, and started at
    ``admitted`` when the organisation's concurrent-run limit made it wait ``queued`` (``inf``: canceled
    before a slot came)."""

    plan: Plan
    created: float
    canceled_at: float | None = None
    cancel_requests: int = 0
    admitted: float | None = None

    @property
    def begins(self) -> float:
        return self.created if self.admitted is None else self.admitted

    def holds_slot_until(self) -> float:
        """When this run frees its slot of the concurrent-run limit: its natural end, or its cancel."""
        if self.plan.outcome in ("slow", "paused"):
            ends = math.inf
        else:
            ends = self.begins + (self.plan.attempts - 1) * (self.plan.seconds + self.plan.retry_seconds)
            ends += self.plan.seconds
        return ends if self.canceled_at is None else min(ends, max(self.canceled_at, self.begins))

    def state_at(self, now: float) -> RunState:
        natural = self._natural_state(now)
        if self.canceled_at is not None and not self._natural_state(self.canceled_at).is_terminal:
            cut = self._natural_state(self.canceled_at)
            return RunState("canceled", cut.step_count, cut.queued_at, cut.started_at, self.canceled_at)
        return natural

    def _natural_state(self, now: float) -> RunState:
        """Attempts follow each other ``seconds + retry_seconds`` apart; each but the last fails."""
        if now < self.begins:  # waiting for a slot of the organisation's concurrent-run limit
            return RunState("queued", 0, self.created)
        period = self.plan.seconds + self.plan.retry_seconds
        elapsed = max(0.0, now - self.begins)
        index = min(int(elapsed // period) if period > 0 else 0, self.plan.attempts - 1)
        done = []
        for k in range(index):
            began = self.begins + k * period
            ended = began + self.plan.seconds
            started = began + self.plan.seconds * RUNNING_AT
            done.append(Attempt(k + 1, "failed", started, ended, ended + self.plan.retry_seconds))
        start = self.begins + index * period
        last = index == self.plan.attempts - 1
        state = self._attempt_state(now - start, start, "failed" if not last else self.plan.outcome)
        state.attempt = index + 1
        if index > 0 and state.status == "created":  # a retry is queued at once, it is not created again
            state.status, state.queued_at = "queued", start
        if self.begins > self.created and state.status in ("created", "queued"):  # it has waited queued
            state.status, state.queued_at = "queued", self.created
        if not last and state.status == "failed":
            assert state.finished_at is not None
            state.retry_pending = True
            state.next_attempt_at = state.finished_at + self.plan.retry_seconds
        if self.plan.attempts > 1:
            current = Attempt(
                index + 1, state.status, state.started_at, state.finished_at, state.next_attempt_at
            )
            state.attempts = (*done, current)
        return state

    def _attempt_state(self, elapsed: float, begin: float, outcome: str) -> RunState:
        duration = self.plan.seconds
        elapsed = max(0.0, elapsed)
        queued, started, ends = (begin + duration * f for f in (QUEUED_AT, RUNNING_AT, 1.0))
        if elapsed >= duration and outcome not in ("slow", "paused"):
            return RunState(outcome, self.plan.steps, queued, started, ends)
        if elapsed < duration * QUEUED_AT:
            return RunState("created", 0)
        if elapsed < duration * RUNNING_AT:
            return RunState("queued", 0, queued)
        step_seconds = max(duration * (1 - RUNNING_AT) / self.plan.steps, 1e-6)
        steps = 1 + int((elapsed - duration * RUNNING_AT) / step_seconds)
        if outcome == "paused" and elapsed >= duration:
            return RunState("paused", self.plan.steps, queued, started)
        if outcome != "slow":
            steps = min(steps, self.plan.steps)
        return RunState("running", steps, queued, started)


def iso(timestamp: float | None) -> str | None:
    """Naive UTC ISO time, as Skyvern often sends it (clients must read it as UTC)."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).replace(tzinfo=None).isoformat()

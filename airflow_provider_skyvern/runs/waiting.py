"""The waiting policy shared by the deferrable trigger and blocking mode: what to log, when to stop,
and when to look again."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

from airflow_provider_skyvern.exceptions import SkyvernHTTPError, one_line
from airflow_provider_skyvern.hooks.clock import SYSTEM_CLOCK, Clock
from airflow_provider_skyvern.hooks.retry import is_retryable
from airflow_provider_skyvern.models import RunResponse, RunStatus
from airflow_provider_skyvern.runs.events import RunEvent

AGE_FRACTION = 0.1
"""A finished run is noticed within about a tenth of its age: soon for short runs, few polls for long ones."""
MIN_GAP_SECONDS = 1.0
JITTER = 0.2
"""Each gap is shortened by up to this fraction at random, so thousands of triggers never poll in step."""
QUEUED_NOTICE_SECONDS = 30.0
"""A run queued this long is said to wait for a slot of the organisation's concurrent-run limit."""
NOT_STARTED = frozenset({RunStatus.created, RunStatus.queued})


@dataclass(frozen=True)
class StartLimit:
    """``queue_timeout``: the run may wait to start until ``queued_until`` (Unix time); once started it has
    ``timeout`` seconds. Skyvern Cloud queues runs beyond the plan's concurrent-run limit, so a fan-out's
    last runs can wait longer than they run; without this, that wait counts toward ``timeout``."""

    queued_until: float
    queue_timeout: float
    timeout: float

    def to_kwargs(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any] | None) -> StartLimit | None:
        return None if kwargs is None else cls(**{k: float(v) for k, v in kwargs.items()})


class RunWatch:
    """
    Fed each poll's answer (a run or an exception), logs one line per change of status or step count (the
    user's progress view in the task log) and returns the event that ends the wait, if any. Transient
    errors never end it; any other exception does (the operator then decides about the run); unknown and
    paused statuses never count as success.

    Polls are adaptive (:meth:`pause`): the gap is ~10 % of the run's age, at least 1 s, at most
    ``poll_interval``, a little less at random, and never shorter than a ``Retry-After`` Skyvern asked for.

    :param deadline: Unix time the wait ends at; None when something else bounds it (a sensor's deferral
        timeout, enforced by Airflow's scheduler).
    :param limit: what the deadline stands for, in the user's words (``timeout=1800s``).
    :param start: ``queue_timeout`` and ``timeout`` apart (:class:`StartLimit`); ``deadline`` still binds.
    """

    def __init__(
        self,
        log: Any,
        run_id: str,
        deadline: float | None,
        *,
        limit: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
        start: StartLimit | None = None,
    ) -> None:
        self._log = log
        self.run_id = run_id
        self._hard_deadline = deadline
        self._hard_limit = limit
        self._start = start
        self._started_at: float | None = None
        self._queued_since: float | None = None
        self._queued_told = False
        self._clock = clock
        self._status: str | None = None
        self._step_count: int | None = None
        self._logged: tuple[Any, ...] | None = None
        self._last_error: str | None = None
        self._any_poll_ok = False
        self._first_seen = clock.time()
        self._created_at: float | None = None
        self._rate_limited = False
        self._retry_after: float | None = None

    @property
    def deadline(self) -> float | None:
        return self._bound()[0]

    @property
    def limit(self) -> str | None:
        return self._bound()[1]

    def _bound(self) -> tuple[float | None, str | None]:
        """The deadline in force and what it stands for: with a :class:`StartLimit`, ``queue_timeout`` until
        the run starts, then ``timeout`` from its start; the hard deadline (``execution_timeout``) if sooner."""
        hard = (self._hard_deadline, self._hard_limit)
        if self._start is None:
            return hard
        if self._started_at is None:
            soft = (self._start.queued_until, f"queue_timeout={self._start.queue_timeout:g}s")
        else:
            soft = (
                self._started_at + self._start.timeout,
                f"timeout={self._start.timeout:g}s after it started",
            )
        return soft if hard[0] is None or soft[0] < hard[0] else hard

    def observe(
        self, *, run: RunResponse | None = None, error: BaseException | None = None
    ) -> RunEvent | None:
        self._rate_limited, self._retry_after = False, None
        if run is not None:
            self._any_poll_ok = True
            self._last_error = None
            self._created_at = run.created_at.timestamp()
            self._note_start(run)
            self._report(run)
            if run.is_terminal:
                return RunEvent("terminal", self.run_id, run.status.value, run.step_count)
        elif error is not None:
            self._last_error = _describe(error)
            if isinstance(error, SkyvernHTTPError):  # the poll's own retries already waited as asked
                self._rate_limited, self._retry_after = error.http_status == 429, error.retry_after
            if not is_retryable(error):
                return self._event("error", self._last_error)
            self._log.warning(
                "Skyvern run %s: still waiting after a transient error: %s", self.run_id, self._last_error
            )
        if self.deadline is not None and self._clock.time() >= self.deadline:
            return self._event("deadline", self._why_no_status())
        return None

    def pause(self, poll_interval: float) -> float:
        """Seconds to sleep before the next poll (see the class docstring), cut short by the deadline."""
        now = self._clock.time()
        age = max(0.0, now - (self._created_at if self._created_at is not None else self._first_seen))
        gap = min(poll_interval, max(MIN_GAP_SECONDS, AGE_FRACTION * age))
        gap *= 1 - JITTER * random.random()  # noqa: S311 - spreading load, not security
        if self._rate_limited:
            gap = max(gap, poll_interval)
        if self._retry_after is not None:
            gap = max(gap, self._retry_after)
        return max(0.0, gap if self.deadline is None else min(gap, self.deadline - now))

    def _note_start(self, run: RunResponse) -> None:
        """When the run left the queue (Skyvern's ``started_at``, never later than now), and a word when it
        has waited queued long: Skyvern Cloud starts runs beyond the plan's concurrent-run limit as others end."""
        now = self._clock.time()
        if run.status not in NOT_STARTED:
            if self._started_at is None:
                began = run.started_at.timestamp() if run.started_at is not None else now
                self._started_at = min(began, now)
            return
        if self._queued_since is None:
            self._queued_since = run.created_at.timestamp() if run.created_at is not None else now
        waited = now - self._queued_since
        if self._queued_told or waited < QUEUED_NOTICE_SECONDS:
            return
        self._queued_told = True
        if self._start is None:
            counts = (
                f"this wait counts toward {self.limit} (queue_timeout counts it apart)" if self.limit else ""
            )
        else:
            counts = f"it may wait until {self.limit} ({self._time_left()})"
        self._log.warning(
            "Skyvern run %s is still %s after %s: Skyvern starts runs beyond the organisation's concurrent-run "
            "limit (Skyvern Cloud plans: Free 1, Hobby 10, Pro 25) as earlier ones end; %s. An Airflow pool "
            "sized to the plan keeps tasks from queueing here (docs/scale.md)",
            self.run_id,
            run.status.value,
            format_duration(waited),
            counts or "the wait has no deadline",
        )

    def _event(self, kind: Any, message: str | None) -> RunEvent:
        return RunEvent(kind, self.run_id, self._status, self._step_count, message, self.limit)

    def _why_no_status(self) -> str | None:
        """For a deadline: the failing polls, so a dead server does not read like a slow run."""
        if self._last_error is None:
            return None
        if not self._any_poll_ok:
            return f"every poll failed, the last with: {self._last_error}"
        return f"the last poll failed: {self._last_error}"

    def _report(self, run: RunResponse) -> None:
        self._status, self._step_count = run.status.value, run.step_count
        seen = (self._status, self._step_count, getattr(run, "attempt", None), _retry_pending(run))
        if self._logged != seen:
            self._logged = seen
            self._log.info(format_progress(run, self._time_left()))

    def _time_left(self) -> str | None:
        """``29m 40s left before timeout=1800s``: how long the wait still has, in the user's words."""
        if self.limit is None or self.deadline is None:
            return None
        return f"{format_duration(max(0.0, self.deadline - self._clock.time()))} left before {self.limit}"


def _describe(error: BaseException) -> str:
    text = one_line(str(error))
    if is_retryable(error) or type(error).__module__.startswith("airflow_provider_skyvern"):
        return text or type(error).__name__
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _retry_pending(run: RunResponse) -> bool:
    return bool(getattr(run, "retry_pending", False))


def format_duration(seconds: float) -> str:
    """``45s``, ``12m 05s``, ``2h 03m``: short enough for a progress line."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def format_progress(run: RunResponse, time_left: str | None = None) -> str:
    step = f" (step {run.step_count})" if run.step_count else ""
    attempt = getattr(run, "attempt", None)
    of = f", attempt {attempt}" if isinstance(attempt, int) and attempt > 1 else ""
    line = f"Skyvern run {run.run_id}: {run.status.value}{step}{of}"
    if run.status.is_terminal and _retry_pending(run):
        when = getattr(run, "next_attempt_at", None)
        at = f" at {when:%Y-%m-%d %H:%M:%S} UTC" if when is not None else ""
        line += f" - attempt {attempt or 1} ended, Skyvern retries the workflow{at}; still waiting"
    elif run.status is RunStatus.paused:
        where = f" at {run.app_url}" if run.app_url else " in the Skyvern app"
        line += f" - paused at a Human Interaction block: a person must act{where}; the timeout still applies"
    elif not run.status.is_known:
        line += " - status unknown to this provider, treated as still running"
    if time_left is not None and not run.is_terminal:
        line += f" ({time_left})"
    return line

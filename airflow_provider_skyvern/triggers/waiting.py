"""The waiting policy shared by the deferrable trigger and blocking mode: what to log, when to stop."""

from __future__ import annotations

import time
from typing import Any

from airflow_provider_skyvern.exceptions import SkyvernError
from airflow_provider_skyvern.models import RunResponse, RunStatus
from airflow_provider_skyvern.triggers.events import RunEvent


class RunWatch:
    """
    Fed each poll's answer (a run or an error), logs one line per change of status or step count (the
    user's progress view in the task log) and returns the event that ends the wait, if any. Transient
    errors never end it; unknown and paused statuses never count as success.
    """

    def __init__(self, log: Any, run_id: str, deadline: float) -> None:
        self._log = log
        self.run_id = run_id
        self.deadline = deadline
        self._status: str | None = None
        self._step_count: int | None = None
        self._logged: tuple[str, int | None] | None = None

    def observe(
        self, *, run: RunResponse | None = None, error: SkyvernError | None = None
    ) -> RunEvent | None:
        if run is not None:
            self._report(run)
            if run.is_terminal:
                return RunEvent("terminal", self.run_id, run.status.value, run.step_count)
        elif error is not None:
            if not error.retryable:
                return RunEvent("error", self.run_id, self._status, self._step_count, str(error))
            self._log.warning("Skyvern run %s: still waiting after a transient error: %s", self.run_id, error)
        if time.time() >= self.deadline:
            return RunEvent("deadline", self.run_id, self._status, self._step_count)
        return None

    def pause(self, poll_interval: float) -> float:
        """Seconds to sleep before the next poll: the interval, cut short by the deadline."""
        return max(0.0, min(poll_interval, self.deadline - time.time()))

    def _report(self, run: RunResponse) -> None:
        self._status, self._step_count = run.status.value, run.step_count
        if self._logged != (self._status, self._step_count):
            self._logged = (self._status, self._step_count)
            self._log.info(format_progress(run))


def format_progress(run: RunResponse) -> str:
    step = f" (step {run.step_count})" if run.step_count else ""
    line = f"Skyvern run {run.run_id}: {run.status.value}{step}"
    if run.status is RunStatus.paused:
        line += " - waiting for human interaction in Skyvern; the timeout still applies"
    elif not run.status.is_known:
        line += " - status unknown to this provider, treated as still running"
    return line

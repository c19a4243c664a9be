"""The waiting policy shared by the deferrable trigger and blocking mode: when to stop, what to log."""

from __future__ import annotations

from typing import Any

from airflow_provider_skyvern.exceptions import SkyvernError
from airflow_provider_skyvern.models import RunResponse, RunStatus
from airflow_provider_skyvern.triggers.events import RunEvent


class ProgressLog:
    """Logs one line per change of status or step count: the user's progress view in the task log."""

    def __init__(self, log: Any, run_id: str) -> None:
        self._log = log
        self._run_id = run_id
        self._last: tuple[str, int | None] | None = None
        self.status: str | None = None
        self.step_count: int | None = None

    def report(self, run: RunResponse) -> None:
        self.status, self.step_count = run.status.value, run.step_count
        if (self.status, self.step_count) == self._last:
            return
        self._last = (self.status, self.step_count)
        self._log.info(format_progress(run))

    def report_error(self, error: SkyvernError) -> None:
        self._log.warning("Skyvern run %s: still waiting after a transient error: %s", self._run_id, error)


def format_progress(run: RunResponse) -> str:
    step = f" (step {run.step_count})" if run.step_count else ""
    line = f"Skyvern run {run.run_id}: {run.status.value}{step}"
    if run.status is RunStatus.paused:
        line += " - waiting for human interaction in Skyvern; the timeout still applies"
    elif not run.status.is_known:
        line += " - status unknown to this provider, treated as still running"
    return line


def decide(
    run_id: str,
    progress: ProgressLog,
    *,
    run: RunResponse | None,
    error: SkyvernError | None,
    now: float,
    deadline: float,
) -> RunEvent | None:
    """The event that ends the wait, or None to poll again. Unknown and paused statuses never succeed."""
    if error is not None and not error.retryable:
        return RunEvent("error", run_id, progress.status, progress.step_count, str(error))
    if run is not None and run.is_terminal:
        return RunEvent("terminal", run_id, run.status.value, run.step_count)
    if now >= deadline:
        return RunEvent("deadline", run_id, progress.status, progress.step_count)
    return None

"""What a task instance's Skyvern runs cost across its tries: steps per run, kept in the task state store.

Skyvern bills about one credit per browser action, so a task instance's cost is the steps of every run its
tries started (a retry after a failed run pays again). Each try records its run when it starts and its steps
when it ends; a clear starts counting afresh (a new clear generation, as for the run record). Without a
state store (Airflow < 3.3) only the run of the try at hand is known.

No run is lost between the two records (:mod:`.claim` writes both): a try records its run here *before* the
run record says "submitted", and a later try that finds an earlier try's run in the run record (by its id, or
by looking for what a submission whose answer was lost created) and does not adopt it records it here
(:meth:`UsageLedger.found`) before that record is cleared. A run nothing can find (login and download_files
whose POST's answer was lost) stays uncounted: the task then fails saying it could not tell.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, ValidationError

from airflow_provider_skyvern.models import RunResponse, RunStatus

USAGE_KEY = "skyvern_usage_kept_for_retries"
RUNS_SHOWN = 5
"""How many runs a budget message names."""


class RunCost(BaseModel):
    try_number: int | None = None
    steps: int | None = None
    """None until the run is seen again (a try that died before its run ended)."""
    status: str | None = None
    replayed_as_code: bool = False


class UsageRecord(BaseModel):
    version: int = 1
    tag: str
    """The clear generation the runs belong to (``run_tag``)."""
    runs: dict[str, RunCost] = Field(default_factory=dict)

    def totals(self) -> dict[str, Any]:
        """The XCom ``usage``: steps spent (known so far), runs started, tries that started or took one over,
        runs that replayed cached code."""
        tries = {cost.try_number for cost in self.runs.values() if cost.try_number is not None}
        return {
            "steps": self.steps,
            "runs": len(self.runs),
            "tries": len(tries),
            "replayed_as_code": sum(1 for cost in self.runs.values() if cost.replayed_as_code),
        }

    @property
    def steps(self) -> int:
        return sum(cost.steps or 0 for cost in self.runs.values())

    def largest_run(self) -> int:
        return max((cost.steps or 0 for cost in self.runs.values()), default=0)

    def described(self) -> str:
        """``tsk_1: 40, tsk_2: 35``: which runs spent what."""
        shown = [
            f"{run_id}: {cost.steps if cost.steps is not None else '?'}" for run_id, cost in self.runs.items()
        ]
        more = len(shown) - RUNS_SHOWN
        return ", ".join(shown[:RUNS_SHOWN]) + (f" and {more} more" if more > 0 else "")


def replayed_as_code(run: RunResponse) -> bool:
    """Skyvern ran a cached script to the end, without the AI taking over."""
    return run.script_run is not None and not run.script_run.ai_fallback_triggered


class UsageLedger:
    """The record in Airflow 3.3's task state store; without one, what this try saw."""

    def __init__(self, context: Any, tag: str) -> None:
        self._store = context.get("task_state_store") if hasattr(context, "get") else None
        self._try_number = getattr(context["ti"], "try_number", None)
        self._tag = tag
        self._memory = UsageRecord(tag=tag)

    @property
    def kept_across_tries(self) -> bool:
        return self._store is not None

    def read(self) -> UsageRecord:
        if self._store is None:
            return self._memory
        value = self._store.get(USAGE_KEY)
        try:
            record = UsageRecord.model_validate(value) if value is not None else None
        except ValidationError:  # a cost record is never a reason to fail a run: start counting again
            record = None
        return record if record is not None and record.tag == self._tag else UsageRecord(tag=self._tag)

    def started(self, run_id: str) -> UsageRecord:
        """A run this try started or took over; one already counted is left as it is (nothing is written)."""
        record = self.read()
        if run_id in record.runs:
            return record
        record.runs[run_id] = RunCost(try_number=self._try_number)
        return self._write(record)

    def found(self, run: RunResponse, try_number: int | None) -> UsageRecord:
        """A run an earlier try (``try_number``, when known) started, which this try found and does not wait
        for (it ended badly, or it is being canceled): counted, with its steps once it ended."""
        record = self.read()
        cost = record.runs.get(run.run_id) or RunCost(try_number=try_number)
        record.runs[run.run_id] = _seen(cost, run) if run.is_terminal else cost
        return self._write(record)

    def ended(self, run: RunResponse) -> UsageRecord:
        record = self.read()
        cost = record.runs.get(run.run_id) or RunCost(try_number=self._try_number)
        record.runs[run.run_id] = _seen(cost, run)
        return self._write(record)

    def stopped(self, run_id: str, steps: int | None, status: str) -> UsageRecord:
        """A run this try stopped waiting for (canceled at its deadline): its steps as last seen."""
        record = self.read()
        cost = record.runs.get(run_id) or RunCost(try_number=self._try_number)
        record.runs[run_id] = cost.model_copy(update={"steps": steps or 0, "status": status})
        return self._write(record)

    def settle(self, read_run: Any) -> UsageRecord:
        """Fill in the runs an earlier try never saw end (it died, or moved on): one read each, best effort."""
        record = self.read()
        for run_id, cost in record.runs.items():
            if cost.steps is not None and cost.status is not None and RunStatus(cost.status).is_terminal:
                continue
            try:
                run: RunResponse = read_run(run_id)
            except Exception:  # noqa: S112 - unknown stays unknown; the budget counts what is known
                continue
            record.runs[run_id] = _seen(cost, run)
        return self._write(record)

    def _write(self, record: UsageRecord) -> UsageRecord:
        if self._store is None:
            self._memory = record
        else:
            self._store.set(USAGE_KEY, record.model_dump(mode="json"))
        return record


def _seen(cost: RunCost, run: RunResponse) -> RunCost:
    return cost.model_copy(
        update={
            "steps": run.step_count or 0,
            "status": run.status.value,
            "replayed_as_code": replayed_as_code(run),
        }
    )


def cost_line(run: RunResponse, record: UsageRecord, *, across_tries: bool) -> str:
    """The run story's last line: what this run and, across tries, the task instance spent."""
    how = " (replayed cached code)" if replayed_as_code(run) else ""
    if run.script_run is not None and run.script_run.ai_fallback_triggered:
        how = " (the AI took over from cached code)"
    line = f"Skyvern cost: run {run.run_id} took {run.step_count or 0} step{'s' if run.step_count != 1 else ''}{how}"
    totals = record.totals()
    if across_tries and (totals["runs"] > 1 or totals["tries"] > 1):
        line += f"; this task instance: {totals['steps']} steps over {totals['runs']} runs in {totals['tries']} tries"
    return line

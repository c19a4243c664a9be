"""One try's way to its Skyvern run: the run an earlier try started, or exactly one new submission.

The rules (README, *No duplicate runs*): a run is adopted only when it carries this task instance's tag
and this try's request; a run of an earlier clear or of an edited request is canceled, not adopted;
whenever an earlier submission may have created a run this try cannot see, the try fails with a
message saying so and nothing is submitted (Airflow retries; the next try looks again).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from airflow_provider_skyvern.exceptions import SkyvernError
from airflow_provider_skyvern.hooks.retry import may_have_created
from airflow_provider_skyvern.hooks.skyvern import SkyvernHook
from airflow_provider_skyvern.models import RunResponse, RunStatus
from airflow_provider_skyvern.operators.kinds import RunKind
from airflow_provider_skyvern.operators.reattach import (
    UNRECOGNISABLE,
    RunFinder,
    RunStateUnknown,
    Submission,
    SubmissionLedger,
    run_tag,
)

NOT_SUBMITTING = "not starting another run while that is unknown; the next try looks again"
NOT_SUBMITTING_BLIND = (
    "not starting another run, which could be a second one: look for it among Skyvern's runs, then clear "
    "the task to start a new run"
)


def cancel_run(hook: SkyvernHook, run_id: str, log: Any) -> str:
    """Best effort; returns what really happened, for the task's error message (also logged)."""
    try:
        hook.cancel_run(run_id)
    except Exception as exc:
        log.warning("Could not cancel Skyvern run %s: %s", run_id, exc)
        return f"canceling it failed ({exc}), it may still be going"
    log.info("Canceled Skyvern run %s", run_id)
    return "it was canceled"


def cancel_at_once(hook: SkyvernHook, run_id: str, log: Any) -> None:
    """
    ``on_kill``: the worker is being killed, so one bounded attempt on a fresh client (this runs in a
    signal handler, and SIGKILL follows soon); the kill goes on whatever happens, which is logged.
    """
    log.info("Task killed: canceling Skyvern run %s", run_id)
    try:
        hook.cancel_run_at_once(run_id)
    except Exception as exc:
        log.warning("Could not cancel Skyvern run %s: %s", run_id, exc)
    else:
        log.info("Canceled Skyvern run %s", run_id)


def _when(unix: float) -> str:
    return datetime.fromtimestamp(unix, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


class RunClaim:
    """
    Built once per try from the rendered request of any kind of run. ``reattach=False`` keeps no record,
    adds no tag and looks nothing up: every try submits, and an ambiguous POST failure fails the try.
    """

    def __init__(self, hook: SkyvernHook, context: Any, kind: RunKind, *, reattach: bool, log: Any) -> None:
        self.hook = hook
        self.log = log
        self.ledger = SubmissionLedger(context if reattach else {})
        self.finder = RunFinder(hook, hook.clock.sleep)
        self.kind = kind
        self.submission: Submission | None = None
        if reattach:
            ti = context["ti"]
            tag = run_tag(context)
            self.submission = kind.submission(tag)
            self.kind = kind.tagged(f"{ti.dag_id}.{ti.task_id}", tag)

    # ---- an earlier try's run ---------------------------------------------------------------------------

    def earlier_run(self) -> RunResponse | None:
        """The run to adopt, if any; cancels earlier runs nobody will wait for."""
        if self.submission is None:
            return None
        if self.ledger.available:
            record = self.ledger.read()
            return self._from_record(record) if record is not None else None
        return self._still_going_by_tag(self.submission)

    def _from_record(self, record: Submission) -> RunResponse | None:
        assert self.submission is not None
        if not record.findable and record.run_id is None and record.tag != self.submission.tag:
            self.log.warning(
                "A submission of this task before it was cleared (%s) may have created a Skyvern run that "
                "cannot be looked for; the task was cleared, so starting a new one",
                _when(record.since),
            )
            self.ledger.clear()
            return None
        run = self._resolve(record)
        if run is None:
            self.log.info(
                "The submission of an earlier try (%s) created no Skyvern run: none was listed in the "
                "time it would have taken; starting one",
                _when(record.since),
            )
            self.ledger.clear()
            return None
        if not record.same_request(self.submission):
            why = (
                "a cleared earlier run of this task"
                if record.tag != self.submission.tag
                else ("an earlier try with a different request (the DAG changed)")
            )
            if not run.is_terminal:
                self.log.warning(
                    "Skyvern run %s belongs to %s: canceling it, not adopting it", run.run_id, why
                )
                cancel_run(self.hook, run.run_id, self.log)
            self.ledger.clear()
            return None
        if not run.is_terminal or run.status is RunStatus.completed:
            self.log.info(
                "Reattaching to Skyvern run %s (%s) started by an earlier try", run.run_id, run.status.value
            )
            self.submission = record.model_copy(update={"run_id": run.run_id})
            self.ledger.write(self.submission)
            return run
        self.log.info(
            "Skyvern run %s of an earlier try ended %s; starting a fresh run", run.run_id, run.status.value
        )
        self.ledger.clear()
        return None

    def _resolve(self, record: Submission) -> RunResponse | None:
        """The run ``record`` stands for; None only when it is known that no run was created."""
        if record.run_id:
            try:
                return self.hook.get_run(record.run_id)
            except SkyvernError as exc:
                raise RunStateUnknown(
                    f"Could not read Skyvern run {record.run_id} started by an earlier try ({exc}); {NOT_SUBMITTING}"
                ) from None
        if not record.findable:
            raise RunStateUnknown(
                f"Could not tell whether an earlier try's submission ({_when(record.since)}) created a "
                f"Skyvern run: {UNRECOGNISABLE}; {NOT_SUBMITTING_BLIND}"
            )
        try:
            found = self.finder.created_by(record)
        except RunStateUnknown:
            raise
        except SkyvernError as exc:
            raise RunStateUnknown(
                f"An earlier try's submission ({_when(record.since)}) may have created a Skyvern run, and "
                f"looking for it failed ({exc}); {NOT_SUBMITTING}"
            ) from None
        if len(found) > 1:
            raise RunStateUnknown(self._ambiguous(found))
        if found:
            return found[0]
        if self.finder.settled(record, self.hook.settings.request_timeout):
            return None
        raise RunStateUnknown(
            f"Could not tell yet whether an earlier try's submission ({_when(record.since)}) created a "
            f"Skyvern run: none is listed so far; {NOT_SUBMITTING}"
        )

    def _still_going_by_tag(self, submission: Submission) -> RunResponse | None:
        """Airflow < 3.3 (no state store): a title-keeping run of this task instance still going. Runs
        that keep no title (skyvern-2.0 tasks, workflows) cannot be told from other DAGs' runs here."""
        if not submission.keeps_title:
            return None
        going = [
            self.hook.get_run(item.run_id)
            for item in self.finder.tagged(submission)
            if not item.status.is_terminal
        ]
        runs = [run for run in going if submission.describes(run)]
        for other in going:
            if other not in runs:
                self.log.warning(
                    "Skyvern run %s belongs to an earlier try with a different request (the DAG changed): "
                    "canceling it, not adopting it",
                    other.run_id,
                )
                cancel_run(self.hook, other.run_id, self.log)
        if not runs:
            return None
        adopted, *others = runs  # newest first
        for other in others:
            self.log.warning("Skyvern run %s of this task is a duplicate nobody waits for", other.run_id)
            cancel_run(self.hook, other.run_id, self.log)
        self.log.info(
            "Reattaching to Skyvern run %s (%s) found by its tag", adopted.run_id, adopted.status.value
        )
        return adopted

    # ---- a new submission ---------------------------------------------------------------------------

    def submit(self) -> RunResponse:
        """One POST; recorded before it is sent, so a try that dies mid-way leaves a trace."""
        if self.submission is not None:
            self.submission = self.submission.model_copy(update={"since": time.time(), "run_id": None})
            self.ledger.write(self.submission)
        run: RunResponse
        try:
            run = self.kind.start(self.hook)
        except SkyvernError as exc:
            if not may_have_created(exc):
                self.ledger.clear()
                raise
            run = self._after_ambiguous_failure(exc)
        else:
            self.log.info("Started Skyvern run %s: %s", run.run_id, run.app_url or "(no app URL)")
        self._remember(run.run_id)
        return run

    def _after_ambiguous_failure(self, exc: SkyvernError) -> RunResponse:
        if self.submission is None:
            raise RunStateUnknown(
                f"{exc}; could not tell whether a Skyvern run was created (reattach=False: not looking for it)"
            ) from None
        try:
            found = self.finder.reconcile(self.submission)
        except RunStateUnknown as unknown:  # nothing could find the run: say so, not that looking failed
            raise RunStateUnknown(
                f"{exc}; could not tell whether a Skyvern run was created: {unknown}; "
                f"{NOT_SUBMITTING if self.submission.findable else NOT_SUBMITTING_BLIND}"
            ) from None
        except SkyvernError as lookup:
            raise RunStateUnknown(
                f"{exc}; could not tell whether a Skyvern run was created: looking for it failed ({lookup}); "
                f"{NOT_SUBMITTING}"
            ) from None
        if len(found) > 1:
            raise RunStateUnknown(self._ambiguous(found)) from None
        if not found:
            raise RunStateUnknown(
                f"{exc}; could not tell whether a Skyvern run was created: none matching this request is "
                f"listed yet; {NOT_SUBMITTING}"
            ) from None
        self.log.warning(
            "Skyvern answered '%s' but created run %s: adopting it instead of submitting again",
            exc,
            found[0].run_id,
        )
        return found[0]

    def _remember(self, run_id: str) -> None:
        if self.submission is not None:
            self.submission = self.submission.model_copy(update={"run_id": run_id})
            self.ledger.write(self.submission)

    def handed_on(self) -> None:
        """The run's result reached XCom (or the run ended badly): a clear or retry starts afresh."""
        self.ledger.clear()

    @staticmethod
    def _ambiguous(found: list[RunResponse]) -> str:
        ids = ", ".join(run.run_id for run in found[:5])
        return (
            f"{len(found)} Skyvern runs ({ids}) match this task's submission; could not tell which one "
            f"it created; {NOT_SUBMITTING}"
        )

"""One try's way to its Skyvern run: the run an earlier try started, or exactly one new submission.

The rules (docs/reattach.md): a run is adopted only when it carries this task instance's tag
and this try's request; a run of an earlier clear or of an edited request is canceled, not adopted;
whenever an earlier submission may have created a run this try cannot see, the try fails with a
message saying so and nothing is submitted (Airflow retries; the next try looks again).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from airflow_provider_skyvern.compat import AirflowException
from airflow_provider_skyvern.exceptions import SkyvernError, SkyvernNotFoundError
from airflow_provider_skyvern.hooks.retry import may_have_created
from airflow_provider_skyvern.hooks.skyvern import KILL_CANCEL_TIMEOUT, SkyvernHook
from airflow_provider_skyvern.models import RunResponse, RunStatus
from airflow_provider_skyvern.runs.finder import RunFinder
from airflow_provider_skyvern.runs.kinds import RunKind
from airflow_provider_skyvern.runs.ledger import (
    UNRECOGNISABLE,
    RunStateUnknown,
    Submission,
    SubmissionLedger,
    run_tag,
)
from airflow_provider_skyvern.runs.moments import utc_text
from airflow_provider_skyvern.runs.usage import UsageLedger

READ_BEFORE_CANCEL_SECONDS = 10.0
KILL_WAIT_SECONDS = 3.0
"""How long ``on_kill`` waits for an in-flight POST's answer: inside the 5 s Airflow's supervisor allows
between SIGTERM and SIGKILL, with room for the cancel."""
NOT_SUBMITTING = "not starting another run while that is unknown; the next try looks again"
SETTLED_NEXT_STEP = "a try after then starts one if none is listed"
NOT_SUBMITTING_BLIND = (
    "not starting another run, which could be a second one: look for it among Skyvern's runs, then clear "
    "the task to start a new run"
)


def cancel_run(
    hook: SkyvernHook, run_id: str, log: Any, seen: RunResponse | None = None, *, read: bool = True
) -> str:
    """
    Best effort; returns what really happened, for the task's error message (also logged). The run is read
    first (``seen``: just read by the caller; ``read=False``: no time left to read it): a run already final
    is never canceled (Skyvern 1.0.56 answers 400 for a task run, and for a finished workflow run revokes its
    last attempt and sends its webhook again).
    """
    run = seen
    if run is None and read:
        try:
            run = hook.get_run(run_id, deadline=time.time() + READ_BEFORE_CANCEL_SECONDS)
        except Exception as exc:  # unknown: canceling is the safe side for money
            log.warning("Could not read Skyvern run %s before canceling it: %s", run_id, exc)
    if run is not None and run.is_terminal:
        log.info("Skyvern run %s had already ended %s: not canceling it", run_id, run.status.value)
        return f"it had already ended {run.status.value}"
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


def is_final_try(context: Any) -> bool:
    """No retry follows this try (Airflow retries while ``try_number <= max_tries``)."""
    ti = context["ti"]
    try_number, max_tries = getattr(ti, "try_number", None), getattr(ti, "max_tries", None)
    return not (isinstance(try_number, int) and isinstance(max_tries, int) and try_number <= max_tries)


def why_no_retry_finds(context: Any, *, reattach: bool, keeps_title: bool, store: bool) -> str | None:
    """Why no later try would find this try's run, for the one message that says what to do instead; None
    when a retry follows and finds it (by the state store's record, or by the title's tag)."""
    if is_final_try(context):
        return "this was the task's last try"
    if not reattach:
        return "with reattach=False no retry looks for it"
    if store or keeps_title:
        return None
    return "without Airflow 3.3's task state store no retry could find that run"


class KilledWhileStarting(AirflowException):
    """The kill came while the run-creating POST was in flight; the run it created was canceled."""


class RunClaim:
    """
    Built once per try from the rendered request of any kind of run. ``reattach=False`` adopts nothing, adds
    no tag and looks nothing up (every try submits, and an ambiguous POST failure fails the try), but still
    keeps the record, so a later try cancels an earlier try's run that nobody waits for any more.
    """

    def __init__(
        self,
        hook: SkyvernHook,
        context: Any,
        kind: RunKind,
        *,
        reattach: bool,
        log: Any,
        cancel_abandoned: bool = True,
    ) -> None:
        self.hook = hook
        self.log = log
        self.ledger = SubmissionLedger(context)
        self.finder = RunFinder(hook, hook.clock.sleep)
        self.kind = kind
        self.reattach = reattach
        self._posting: Future[RunResponse] | None = None
        self._killed = False
        self._cancels: dict[str, threading.Event] = {}
        self.cancel_abandoned = cancel_abandoned
        self._context = context
        ti = context["ti"]
        tag = run_tag(context)
        self.usage = UsageLedger(context, tag)
        """What this task instance's runs cost: told of every run this claim learns of before the run record
        can lose it (``runs/usage.py``)."""
        try_number = getattr(ti, "try_number", None)
        self._try_number = try_number if isinstance(try_number, int) else None
        self.submission: Submission = kind.submission(tag)
        if reattach:
            self.kind = kind.tagged(f"{ti.dag_id}.{ti.task_id}", tag)

    # ---- an earlier try's run ---------------------------------------------------------------------------

    def earlier_run(self) -> RunResponse | None:
        """The run to adopt, if any; cancels earlier runs nobody will wait for."""
        if not self.reattach:
            self._cancel_unwaited()
            return None
        if self.ledger.available:
            record = self.ledger.read()
            return self._from_record(record) if record is not None else None
        return self._by_tag(self.submission)

    def _cancel_unwaited(self) -> None:
        """``reattach=False``: an earlier try's run still going has nobody waiting for it once this try starts
        its own (a retry after a lost worker, or a clear while the old trigger is being moved or killed)."""
        record = self.ledger.read() if self.ledger.available else None
        self.ledger.clear()
        if record is None or record.run_id is None or record.phase != "submitted":
            return
        if not self.cancel_abandoned:
            self.log.info(
                "Skyvern run %s of an earlier try is left going (cancel_on_kill=False); reattach=False: starting "
                "a new run",
                record.run_id,
            )
            return
        self.log.warning(
            "Skyvern run %s of an earlier try has nobody waiting for it (reattach=False): canceling it",
            record.run_id,
        )
        cancel_run(self.hook, record.run_id, self.log)

    def _from_record(self, record: Submission) -> RunResponse | None:
        mine = record.same_request(self.submission)
        if record.phase == "handed_on" and not mine:
            self.log.info(
                "Skyvern run %s was handed on by an earlier try (wait_for_completion=False): it belongs to "
                "whoever waits for it, so it is left going; starting a new run",
                record.run_id,
            )
            self.ledger.clear()
            return None
        if record.phase == "ended" and not (mine and record.ended_well):
            self.log.info(
                "Skyvern run %s of an earlier try ended %s; starting a fresh run",
                record.run_id,
                record.ended_status,
            )
            self.ledger.clear()
            return None
        if not record.findable and record.run_id is None and record.tag != self.submission.tag:
            self.log.warning(
                "A submission of this task before it was cleared (%s) may have created a Skyvern run that "
                "cannot be looked for; the task was cleared, so starting a new one",
                utc_text(record.since),
            )
            self.ledger.clear()
            return None
        run = self._resolve(record, mine)
        if run is None:
            self.ledger.clear()
            return None
        adopted = mine and (
            record.phase in ("handed_on", "ended") or not run.is_terminal or run.status is RunStatus.completed
        )
        if not adopted and record.tag == self.submission.tag:  # its cost, before the record is cleared
            self.usage.found(run, record.try_number)
        if not mine:
            why = (
                "a cleared earlier run of this task"
                if record.tag != self.submission.tag
                else ("an earlier try with a different request (the DAG changed)")
            )
            if not run.is_terminal:
                self.log.warning(
                    "Skyvern run %s belongs to %s: canceling it, not adopting it", run.run_id, why
                )
                cancel_run(self.hook, run.run_id, self.log, run)
            self.ledger.clear()
            return None
        if adopted:
            self.log.info(
                "Reattaching to Skyvern run %s (%s) started by an earlier try", run.run_id, run.status.value
            )
            self.submission = record.model_copy(update={"run_id": run.run_id})
            if record.phase == "submitting":
                self.submission = self.submission.at("submitted")
            self.ledger.write(self.submission)
            return run
        self.log.info(
            "Skyvern run %s of an earlier try ended %s; starting a fresh run", run.run_id, run.status.value
        )
        self.ledger.clear()
        return None

    def _resolve(self, record: Submission, mine: bool) -> RunResponse | None:
        """The run ``record`` stands for; None only when it is known that no run was created (or, for a
        record of an earlier clear generation, that its run is gone)."""
        if record.run_id:
            try:
                return self.hook.get_run(record.run_id)
            except SkyvernNotFoundError as exc:
                if exc.no_such_endpoint:
                    raise RunStateUnknown(
                        f"Could not read Skyvern run {record.run_id} ({exc})", next_step=NOT_SUBMITTING
                    ) from None
                if not mine:
                    self.log.warning(
                        "Skyvern run %s recorded before the task was cleared is not found at %s (%s): "
                        "forgetting it and starting a new run",
                        record.run_id,
                        self.hook.settings.base_url,
                        exc,
                    )
                    return None
                raise RunStateUnknown(
                    f"Skyvern run {record.run_id} started by an earlier try is not found at "
                    f"{self.hook.settings.base_url} ({exc}): the connection may now point at another "
                    "organisation or server, or the run was deleted",
                    next_step="not starting a second run while it may exist elsewhere: point the connection "
                    "back to let the next try reattach, or clear the task to start a new run",
                ) from None
            except SkyvernError as exc:
                raise RunStateUnknown(
                    f"Could not read Skyvern run {record.run_id} started by an earlier try ({exc})",
                    next_step=NOT_SUBMITTING,
                    run_id=record.run_id,
                ) from None
        if not record.findable:
            raise RunStateUnknown(
                f"Could not tell whether an earlier try's submission ({utc_text(record.since)}) created a "
                f"Skyvern run: {UNRECOGNISABLE}",
                next_step=NOT_SUBMITTING_BLIND,
            )
        try:
            found = self.finder.created_by(record)
        except RunStateUnknown as unknown:
            raise RunStateUnknown(
                f"Could not tell whether an earlier try's submission ({utc_text(record.since)}) created a "
                f"Skyvern run: {unknown}",
                next_step=NOT_SUBMITTING,
            ) from None
        except SkyvernError as exc:
            raise RunStateUnknown(
                f"An earlier try's submission ({utc_text(record.since)}) may have created a Skyvern run, and "
                f"looking for it failed ({exc})",
                next_step=NOT_SUBMITTING,
            ) from None
        if found is not None:
            return found
        timeout = self.hook.settings.request_timeout
        if self.finder.settled(record, timeout):
            return None
        raise RunStateUnknown(
            f"Could not tell yet whether an earlier try's submission ({utc_text(record.since)}) created a "
            f"Skyvern run: none is listed so far, {self._settle_note(record)}",
            next_step=f"not starting another run before then; {SETTLED_NEXT_STEP}",
        )

    def _settle_note(self, record: Submission) -> str:
        settles = self.finder.settles_at(record, self.hook.settings.request_timeout)
        return f"and one it created would be listed by {utc_text(settles)}"

    def _read_tagged(self, run_id: str) -> RunResponse:
        try:
            return self.hook.get_run(run_id)
        except SkyvernError as exc:
            raise RunStateUnknown(
                f"Could not read Skyvern run {run_id}, found by this task's tag ({exc})",
                next_step=NOT_SUBMITTING,
                run_id=run_id,
            ) from None

    def _by_tag(self, submission: Submission) -> RunResponse | None:
        """Airflow < 3.3 (no state store): a title-keeping run of this task instance, going or completed
        (a completed one whose result could not be handed on, or whose files could not be copied, is handed
        on again). Runs that keep no title (skyvern-2.0 tasks, workflows) cannot be told from other DAGs'
        runs here."""
        if submission.tag_kept_in != "title":  # a run_metadata tag is only a filter, never proof
            return None
        listed = [
            item
            for item in self.finder.tagged(submission)
            if not item.status.is_terminal or item.status is RunStatus.completed
        ]
        runs = [self._read_tagged(item.run_id) for item in listed]
        going = [run for run in runs if not run.is_terminal]
        for other in going:
            if not submission.describes(other):
                self.log.warning(
                    "Skyvern run %s belongs to an earlier try with a different request (the DAG changed): "
                    "canceling it, not adopting it",
                    other.run_id,
                )
                cancel_run(self.hook, other.run_id, self.log, other)
        ours = [run for run in runs if submission.describes(run)]
        ours_going = [run for run in ours if not run.is_terminal]
        if ours_going:  # newest first
            adopted, *others = ours_going
            for other in others:
                self.log.warning("Skyvern run %s of this task is a duplicate nobody waits for", other.run_id)
                cancel_run(self.hook, other.run_id, self.log, other)
        elif ours:
            adopted = ours[0]
        else:
            return None
        self.log.info(
            "Reattaching to Skyvern run %s (%s) found by its tag", adopted.run_id, adopted.status.value
        )
        return adopted

    # ---- a new submission ---------------------------------------------------------------------------

    def submit(self) -> RunResponse:
        """
        One POST, recorded as in flight before it is sent, so a try that dies mid-way leaves a trace. The POST
        runs on a helper thread: a kill (``on_kill``, in the main thread's signal handler) can then wait for
        its answer and cancel the run it created (:meth:`abandon`).
        """
        self.submission = self.submission.model_copy(
            update={
                "since": time.time(),
                "run_id": None,
                "phase": "submitting",
                "try_number": self._try_number,
            }
        )
        self.ledger.write(self.submission)
        run: RunResponse
        try:
            run = self._post()
        except SkyvernError as exc:
            if not may_have_created(exc):
                self.ledger.clear()
                raise
            run = self._after_ambiguous_failure(exc)
        else:
            self.log.info("Started Skyvern run %s: %s", run.run_id, run.app_url or "(no app URL)")
        self._remember(run.run_id)
        if self._killed:  # the kill came while the POST was in flight: its run has nobody to wait for it
            self._cancel_once(run.run_id)
            raise KilledWhileStarting(
                f"The task was killed while starting Skyvern run {run.run_id}, which was canceled"
            )
        return run

    def _post(self) -> RunResponse:
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="skyvern-submit")
        try:
            self._posting = pool.submit(self.kind.start, self.hook)
            self._posting.add_done_callback(self._cancel_if_killed)
        finally:
            pool.shutdown(wait=False)
        return self._posting.result()

    def _cancel_if_killed(self, posting: Future[RunResponse]) -> None:
        """On the POST's thread as soon as it answers: a kill that came first cannot have waited for it."""
        if self._killed and not posting.cancelled() and posting.exception() is None:
            self._cancel_once(posting.result().run_id)

    def abandon(self, grace: float = KILL_WAIT_SECONDS) -> bool:
        """
        ``on_kill`` once this try has POSTed: waits up to ``grace`` seconds for an answer still in flight and
        cancels the run the POST created, also when the answer came but the operator has not taken the run
        over yet. True when this try POSTed (its run is handled here); never raises: the kill goes on.
        """
        posting = self._posting
        if posting is None:
            return False
        self._killed = True
        try:
            run = posting.result(timeout=grace)
        except FutureTimeout:
            self.log.warning(
                "Task killed while the POST starting its Skyvern run was in flight (since %s): its run, if "
                "it creates one, is canceled the moment it answers, while this process lives; the record in "
                "the task state store says a POST was in flight, for the next try to look",
                utc_text(self.submission.since),
            )
            return True
        except Exception:  # it failed: reported by the try itself, and no run to cancel is known
            return True
        self._cancel_once(run.run_id)
        return True

    def _cancel_once(self, run_id: str) -> None:
        """The POST's thread (its answer came after the kill), ``on_kill`` and the main thread may each get
        here: one sends the cancel, the others wait for it to be sent (no lock: a signal handler may
        interrupt its holder)."""
        sent = threading.Event()
        first = self._cancels.setdefault(run_id, sent)  # atomic: exactly one caller gets its own back
        if first is not sent:
            first.wait(KILL_CANCEL_TIMEOUT + 1.0)
            return
        try:
            cancel_at_once(self.hook, run_id, self.log)
        finally:
            sent.set()

    @property
    def run_id(self) -> str | None:
        return self.submission.run_id

    @property
    def why_no_retry_finds(self) -> str | None:
        """Why no later try would find this try's run (None: one follows and finds it)."""
        return why_no_retry_finds(
            self._context,
            reattach=self.reattach,
            keeps_title=self.kind.keeps_title,
            store=self.ledger.available,
        )

    def _after_ambiguous_failure(self, exc: SkyvernError) -> RunResponse:
        if not self.reattach:
            raise RunStateUnknown(f"{exc}; could not tell whether a Skyvern run was created") from None
        try:
            found = self.finder.reconcile(self.submission)
        except RunStateUnknown as unknown:  # nothing could find the run: say so, not that looking failed
            raise RunStateUnknown(
                f"{exc}; could not tell whether a Skyvern run was created: {unknown}",
                next_step=NOT_SUBMITTING if self.submission.findable else NOT_SUBMITTING_BLIND,
            ) from None
        except SkyvernError as lookup:
            raise RunStateUnknown(
                f"{exc}; could not tell whether a Skyvern run was created: looking for it failed ({lookup})",
                next_step=NOT_SUBMITTING,
            ) from None
        if found is None:
            raise RunStateUnknown(
                f"{exc}; could not tell whether a Skyvern run was created: none matching this request is "
                f"listed yet, {self._settle_note(self.submission)}",
                next_step=f"not starting another run before then; {SETTLED_NEXT_STEP}",
            ) from None
        self.log.warning(
            "Skyvern answered '%s' but created run %s: adopting it instead of submitting again",
            exc,
            found.run_id,
        )
        return found

    def _remember(self, run_id: str) -> None:
        """The usage record learns of the run first: a try that dies between the two writes leaves a run the
        usage record counts and the run record says may have been created (a later try looks for it). The run
        record is what keeps a retry from paying twice, so a failed cost write never stands in its way (a
        later try that finds the run there and does not adopt it counts it then)."""
        try:
            self.usage.started(run_id)
        except Exception as exc:
            self.log.warning("Could not count Skyvern run %s in this task's usage: %s", run_id, exc)
        self.submission = self.submission.model_copy(update={"run_id": run_id, "phase": "submitted"})
        self.ledger.write(self.submission)

    def handed_on(self) -> None:
        """``wait_for_completion=False`` handed the run id on: whoever waits owns the run (see ``Phase``)."""
        self.submission = self.submission.at("handed_on")
        self.ledger.write(self.submission)

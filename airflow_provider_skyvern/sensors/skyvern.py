"""SkyvernRunSensor: wait for a Skyvern run this task did not start (``wait_for_completion=False``,
Skyvern's own schedules, another system) and hand on its output like the run operators do.

Imported on every DAG parse: module level holds only what constructing and checking the sensor needs.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_provider_skyvern import DEFAULT_CONN_ID
from airflow_provider_skyvern.compat import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    conf,
)
from airflow_provider_skyvern.enums import RunStatus
from airflow_provider_skyvern.links.skyvern import SkyvernRunLink
from airflow_provider_skyvern.operators import validation as check
from airflow_provider_skyvern.version_compat import AIRFLOW_V_3_3_PLUS

if TYPE_CHECKING:
    from airflow.triggers.base import StartTriggerArgs

    from airflow_provider_skyvern.hooks.skyvern import SkyvernHook
    from airflow_provider_skyvern.models import RunResponse
    from airflow_provider_skyvern.runs.events import RunEvent
    from airflow_provider_skyvern.runs.waiting import RunWatch

FINAL_STATUSES = tuple(status.value for status in RunStatus if status.is_terminal)
TRIGGER = "airflow_provider_skyvern.triggers.skyvern.SkyvernRunTrigger"
DEFERRAL_GRACE = timedelta(seconds=60)
"""The scheduler's deferral timeout is a backstop: the trigger's own deadline (with the last status) comes first."""
TIMEOUT_MARGIN = 1.0
"""Poke modes: the sensor names the timeout (and cancels if asked) just before Airflow's own check would."""


class SkyvernRunSensorError(AirflowException):
    """The sensor stopped waiting without a final answer: a retry waits for the same run again."""


class SkyvernRunSensor(BaseSensorOperator):
    """
    Wait for an existing Skyvern run (task or workflow) to end; succeed, skip or fail by its final status.

    It pushes the same XComs as the operator that starts such a run: ``return_value`` (the run's output),
    ``run_id``, ``app_url``, ``status``, ``recording_url``, ``screenshot_urls``, ``downloaded_files``,
    ``step_count``, ``failure_reason``, and for workflow runs ``block_outputs`` and ``attempt``. A workflow
    run with a retry pending is not over. The sensor never cancels the run unless asked
    (``cancel_on_timeout``, ``cancel_on_kill``): someone else started it.

    Deferrable (the default follows ``[operators] default_deferrable``), it waits in the triggerer;
    ``start_from_trigger=True`` also starts it there, so a worker is only used to finish: push the XComs,
    fail or skip (a few seconds). With ``do_xcom_push=False`` a completed run ends the task right in the
    triggerer, so such a sensor never takes a worker slot at all.

    :param run_id: the Skyvern run id (``tsk_v2_…``, ``wr_…``), templated: e.g.
        ``"{{ ti.xcom_pull(task_ids='start') }}"`` or an upstream operator's ``.output``.
    :param success_statuses: final statuses that make the sensor succeed (default ``("completed",)``).
    :param skip_statuses: final statuses that skip the sensor (and, by trigger rule, its downstream tasks),
        e.g. ``("canceled",)`` for a run someone stopped on purpose. Any other final status fails the
        sensor (``soft_fail=True`` or ``never_fail=True`` skips instead, in every mode, also when the run
        had already ended or could not be read at the first look), without retries: the run's status will
        not change.
    :param skyvern_conn_id: Airflow connection of type ``skyvern``.
    :param deferrable: wait in the triggerer instead of a worker slot (default
        ``[operators] default_deferrable``); otherwise ``mode`` (``poke`` or ``reschedule``) applies.
    :param start_from_trigger: start in the triggerer, never on a worker (needs ``deferrable=True``; on
        Airflow < 3.3 only with a ``run_id`` known at parse time, else the sensor defers from a worker).
    :param cancel_on_timeout: cancel the run when ``timeout`` passes before it ends (default False).
    :param cancel_on_kill: cancel the run when the waiting task is killed, marked failed/success or cleared
        (default False).
    :param poke_interval: the longest gap between two looks at the run, in seconds (default 60);
        deferrable, the gaps start at 1 s and grow with the run's age up to this.
    :param timeout: seconds to wait for the run to end (Airflow's ``[sensors] default_timeout`` if
        unset), then the sensor fails with ``AirflowSensorTimeout`` (skips with ``soft_fail``).
    """

    template_fields: Sequence[str] = ("run_id",)
    operator_extra_links = (SkyvernRunLink(),)
    ui_color = "#e8f0fe"
    start_trigger_args: StartTriggerArgs | None = None
    """Built in ``__init__`` with ``start_from_trigger=True`` only: most DAG files need not import triggers."""
    start_from_trigger = False

    def __init__(
        self,
        *,
        run_id: str,
        success_statuses: Collection[str] = ("completed",),
        skip_statuses: Collection[str] = (),
        skyvern_conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        start_from_trigger: bool = False,
        cancel_on_timeout: bool = False,
        cancel_on_kill: bool = False,
        poke_interval: float = 60,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.run_id = run_id
        self.skyvern_conn_id = skyvern_conn_id
        self.deferrable = deferrable
        self.cancel_on_timeout = cancel_on_timeout
        self.cancel_on_kill = cancel_on_kill
        self.skyvern_app_url: str | None = None
        """The run's page in Skyvern's UI once seen: what :class:`SkyvernRunLink` shows."""
        self._run_watch: RunWatch | None = None
        self._last_status: str | None = None
        self._seen_going = False
        """The last look saw the run going: only then has ``on_kill`` something to cancel."""
        self._started: float | None = None
        try:
            self.success_statuses, self.skip_statuses = _check_statuses(success_statuses, skip_statuses)
            _check_run_id(run_id)
            if start_from_trigger and not deferrable:
                raise check.InvalidParameter("start_from_trigger", "needs deferrable=True")
            if cancel_on_kill and not deferrable and self.mode == "reschedule":
                raise check.InvalidParameter(
                    "cancel_on_kill",
                    "needs a process that waits for the run: with mode='reschedule' none exists between two "
                    "looks, so a kill, mark-failed or clear would cancel nothing; use deferrable=True or "
                    "mode='poke'",
                )
        except check.InvalidParameter as exc:
            raise ValueError(f"{type(self).__name__}(task_id={self.task_id!r}) {exc}") from None
        if start_from_trigger:
            self._start_from_trigger()

    def _start_from_trigger(self) -> None:
        """The trigger row is built by the scheduler from these kwargs; 3.3's triggerer renders ``run_id``."""
        run_id = _as_template(self.run_id)
        if isinstance(run_id, str) and "xcom_pull(" in run_id and "map_indexes" not in run_id:
            raise ValueError(
                f"{type(self).__name__}(task_id={self.task_id!r}) run_id: with start_from_trigger, an "
                "xcom_pull needs map_indexes=-1 (without it Airflow's triggerer asks for an XCom slice it "
                "cannot serve and the sensor hangs); or pass the upstream task's .output"
            )
        if not AIRFLOW_V_3_3_PLUS and check.is_unresolved(run_id):
            warnings.warn(
                f"{type(self).__name__}(task_id={self.task_id!r}): start_from_trigger with a templated "
                "run_id needs Airflow >= 3.3; this sensor defers from a worker instead",
                UserWarning,
                stacklevel=3,
            )
            return
        from airflow.triggers.base import StartTriggerArgs

        self.start_from_trigger = True
        self.start_trigger_args = StartTriggerArgs(
            trigger_cls=TRIGGER,
            next_method="execute_complete",
            next_kwargs=None,
            trigger_kwargs={
                "run_id": run_id,
                "deadline": None,  # the trigger ends at the deferral's timeout, set when the task starts
                "poll_interval": self.poke_interval,
                "skyvern_conn_id": self.skyvern_conn_id,
                "cancel_on_kill": self.cancel_on_kill,
                "limit": self._limit,
                "succeed_on": self._succeed_in_triggerer,
            },
            timeout=timedelta(seconds=self.timeout),
        )

    @cached_property
    def hook(self) -> SkyvernHook:
        from airflow_provider_skyvern.hooks.skyvern import SkyvernHook

        return SkyvernHook(self.skyvern_conn_id)

    @property
    def _succeed_in_triggerer(self) -> list[str]:
        """With no XComs wanted, success needs no worker; XComs must come from one (see the trigger)."""
        return [] if self.do_xcom_push else sorted(self.success_statuses)

    @property
    def _limit(self) -> str:
        return f"timeout={self.timeout:g}s"

    # ---- deferrable -----------------------------------------------------------------------------------

    def execute(self, context: Any) -> Any:
        self._check_rendered()
        if not self.deferrable:
            self._started = self._wait_started(context)
            return super().execute(context)

        event, run = self._look(self._watch(None))
        try:
            if event is not None and event.kind == "terminal" and run is not None:  # ended: no trigger needed
                return self._ended(context, run)
            if event is not None and event.kind == "error":
                raise AirflowFailException(f"Could not read Skyvern run {self.run_id}: {event.message}")
        except AirflowFailException as exc:
            self._skip_if_asked(exc)
            raise
        now = self.hook.clock.time()
        self._defer_until(now + self.timeout, now)

    def _defer_until(self, deadline: float, now: float | None = None) -> None:
        from airflow_provider_skyvern.triggers.skyvern import SkyvernRunTrigger

        left = max(deadline - (self.hook.clock.time() if now is None else now), 0.0)
        self.defer(
            trigger=SkyvernRunTrigger(
                run_id=self.run_id,
                deadline=deadline,
                poll_interval=self.poke_interval,
                skyvern_conn_id=self.skyvern_conn_id,
                cancel_on_kill=self.cancel_on_kill,
                limit=self._limit,
                succeed_on=self._succeed_in_triggerer,
            ),
            method_name="execute_complete",
            kwargs={"deadline": deadline},
            timeout=timedelta(seconds=left) + DEFERRAL_GRACE,
        )

    def execute_complete(self, context: Any, event: Any = None, deadline: float | None = None) -> Any:
        """The trigger's event: a final status the trigger did not end the task for, a timeout, an error.

        :param deadline: when the wait ends (Unix time), as this try deferred it."""
        from airflow_provider_skyvern.runs.events import RunEvent

        parsed = RunEvent.from_payload(event)
        if parsed.run_id != self.run_id:
            # An earlier trigger's event (the sensor, or the task its run_id comes from, was cleared while it
            # waited; SQLite reuses a deleted trigger's id): this try's run still needs waiting for.
            self.log.warning(
                "Event about Skyvern run %s (%s) comes from an earlier try's trigger; this try waits for run "
                "%s: waiting for it again",
                parsed.run_id,
                parsed.kind,
                self.run_id,
            )
            self._defer_until(deadline if deadline is not None else self._started_deadline(context))
        if parsed.kind == "terminal":
            run = self.hook.get_run(self.run_id)  # fresh presigned URLs
            if not run.is_terminal:
                raise SkyvernRunSensorError(
                    f"Skyvern run {run.run_id} is {run.status.value} although the trigger saw it final"
                )
            return self._ended(context, run)
        if parsed.kind == "deadline":
            self._timed_out(parsed.run_status, parsed.message)
        raise SkyvernRunSensorError(
            f"Stopped waiting for Skyvern run {self.run_id}: {parsed.message}; the run is left going"
        )

    def _started_deadline(self, context: Any) -> float:
        """``start_from_trigger`` keeps no deadline of its own: ``timeout`` from when the try started."""
        started = getattr(context["ti"], "start_date", None)
        since = started.timestamp() if isinstance(started, datetime) else self.hook.clock.time()
        return since + self.timeout

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Any) -> Any:
        """Airflow's own deferral timeout (the scheduler's backstop) cancels the run too, when asked."""
        if next_method == "__fail__" and (next_kwargs or {}).get("error") == "Trigger timeout":
            self._cancel_after_timeout()
        return super().resume_execution(next_method, next_kwargs, context)

    # ---- poke and reschedule --------------------------------------------------------------------------

    def poke(self, context: Any) -> bool | PokeReturnValue:
        event, run = self._look(self._watch(self._limit))
        if event is not None and event.kind == "terminal" and run is not None:
            return PokeReturnValue(is_done=True, xcom_value=self._ended(context, run))
        if event is not None and event.kind == "error":
            raise AirflowFailException(f"Could not read Skyvern run {self.run_id}: {event.message}")
        if self._elapsed() >= self.timeout - TIMEOUT_MARGIN:
            self._timed_out(self._last_status, None)
        return False

    # ---- shared ---------------------------------------------------------------------------------------

    def _watch(self, limit: str | None) -> RunWatch:
        """One watch per process: it logs a line when the status changes, and classifies errors."""
        from airflow_provider_skyvern.runs.waiting import RunWatch

        if self._run_watch is None:
            self._run_watch = RunWatch(self.log, self.run_id, None, limit=limit, clock=self.hook.clock)
        return self._run_watch

    def _look(self, watch: RunWatch) -> tuple[RunEvent | None, RunResponse | None]:
        """One look at the run: the watch's event (final, or an error waiting cannot cure) and the run."""
        try:
            run = self.hook.get_run(self.run_id)
        except Exception as exc:  # a transient one is waited out; the watch says which
            return watch.observe(error=exc), None
        self._last_status, self.skyvern_app_url = run.status.value, run.app_url or self.skyvern_app_url
        self._seen_going = not run.is_terminal
        return watch.observe(run=run), run

    def _ended(self, context: Any, run: RunResponse) -> Any:
        """Push the run's XComs, tell its story, then succeed (return its output), skip or fail."""
        from airflow_provider_skyvern.runs.results import (
            failure_message,
            identity_xcoms,
            log_full_reason,
            pushable,
            result_xcoms,
        )
        from airflow_provider_skyvern.runs.story import log_story

        self.skyvern_app_url = run.app_url or self.skyvern_app_url
        if self.do_xcom_push:
            for key, value in pushable({**identity_xcoms(run), **result_xcoms(run)}).items():
                context["ti"].xcom_push(key=key, value=value)
        log_story(self.hook, run, self.log)
        status = run.status.value
        if status in self.success_statuses:
            self.log.info("Skyvern run %s ended %s: the sensor succeeds", run.run_id, status)
            return run.output
        if status in self.skip_statuses:
            raise AirflowSkipException(f"Skyvern run {run.run_id} ended {status}, one of skip_statuses")
        log_full_reason(run, self.log)
        raise AirflowFailException(failure_message(run))

    def _skip_if_asked(self, exc: AirflowFailException) -> None:
        """
        The deferrable first look runs outside Airflow's poke loop and ``resume_execution``, which turn a
        failure into a skip under ``soft_fail``/``never_fail``: do the same here, so every mode agrees.
        """
        for flag in ("soft_fail", "never_fail"):  # never_fail: Airflow versions that have it
            if getattr(self, flag, False):
                raise AirflowSkipException(f"{exc}; skipped ({flag}=True)") from exc

    def _timed_out(self, last_status: str | None, problem: str | None) -> None:
        after = self._cancel_after_timeout() if self.cancel_on_timeout else "it is left going"
        last = f"last status {last_status}" if last_status else "its status was never read"
        if problem:
            last += f"; {problem}"
        raise AirflowSensorTimeout(
            f"Skyvern run {self.run_id} did not end within {self._limit} ({last}); {after}"
        )

    def _cancel_after_timeout(self) -> str:
        from airflow_provider_skyvern.runs.claim import cancel_run

        if not self.cancel_on_timeout:
            return "it is left going"
        return cancel_run(self.hook, self.run_id, self.log)

    def _wait_started(self, context: Any) -> float:
        """When the wait began, as Airflow's sensor counts it (reschedule mode: the first poke's date)."""
        if self.reschedule:
            first = context["ti"].get_first_reschedule_date(context)
            if first is not None:
                return float(first.timestamp())
        return self.hook.clock.time()

    def _elapsed(self) -> float:
        now = self.hook.clock.time()
        return now - (self._started if self._started is not None else now)

    def _check_rendered(self) -> None:
        try:
            _check_run_id(self.run_id, rendered=True)
        except check.InvalidParameter as exc:
            raise AirflowFailException(f"{type(self).__name__}: {exc} (after rendering templates)") from None

    def on_kill(self) -> None:
        """Poke mode, killed: cancel only when asked (someone else started the run)."""
        from airflow_provider_skyvern.runs.claim import cancel_at_once

        # Before the first look nothing is known of the run (and resolving the connection here, in the SIGTERM
        # handler, could wait on the supervisor until SIGKILL); a run seen final is never canceled.
        if self.cancel_on_kill and self._seen_going:
            cancel_at_once(self.hook, str(self.run_id), self.log)


def _check_statuses(success: Collection[str], skip: Collection[str]) -> tuple[frozenset[str], frozenset[str]]:
    chosen = {}
    for name, given in (("success_statuses", success), ("skip_statuses", skip)):
        if isinstance(given, str) or not isinstance(given, Collection):
            raise check.InvalidParameter(name, f"must be a list of statuses, got {given!r}")
        values = {str(getattr(status, "value", status)) for status in given}
        unknown = sorted(values - set(FINAL_STATUSES))
        if unknown:
            raise check.InvalidParameter(
                name, f"{unknown[0]!r} is not a final Skyvern status; use some of {', '.join(FINAL_STATUSES)}"
            )
        chosen[name] = frozenset(values)
    if not chosen["success_statuses"]:
        raise check.InvalidParameter("success_statuses", "must name at least one final status")
    both = sorted(chosen["success_statuses"] & chosen["skip_statuses"])
    if both:
        raise check.InvalidParameter("skip_statuses", f"{both[0]!r} is also in success_statuses")
    return chosen["success_statuses"], chosen["skip_statuses"]


def _check_run_id(value: Any, *, rendered: bool = False) -> None:
    if not rendered and check.is_unresolved(value):
        return
    if not isinstance(value, str) or not value.strip():
        raise check.InvalidParameter(
            "run_id", f"must be a Skyvern run id such as 'wr_…' or 'tsk_v2_…', got {value!r}"
        )


def _as_template(value: Any) -> Any:
    """An upstream ``.output`` as the template the triggerer can render (it cannot resolve an XComArg)."""
    operator, key = getattr(value, "operator", None), getattr(value, "key", None)
    task_id = getattr(operator, "task_id", None)
    if isinstance(value, str) or not isinstance(task_id, str) or not isinstance(key, str):
        return value
    return f"{{{{ ti.xcom_pull(task_ids={task_id!r}, key={key!r}, map_indexes=-1) }}}}"

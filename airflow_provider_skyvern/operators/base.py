"""SkyvernRunOperatorBase: the one way any kind of Skyvern run is submitted, remembered, waited for,
canceled and completed. Subclasses only say how to build and fingerprint their request
(:class:`~.kinds.RunKind`), what they check, and what XCom they add.

Airflow imports this module on every parse of a DAG file that uses an operator, so at module level it
imports only what constructing and checking an operator needs; the hook, the trigger and the reattach
machinery are imported where the task runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator

from airflow_provider_skyvern import DEFAULT_CONN_ID
from airflow_provider_skyvern.compat import AirflowException, AirflowFailException
from airflow_provider_skyvern.enums import RunStatus
from airflow_provider_skyvern.exceptions import SkyvernBadRequestError, SkyvernError, SkyvernNotFoundError
from airflow_provider_skyvern.links.skyvern import SkyvernRunLink
from airflow_provider_skyvern.operators import validation as check
from airflow_provider_skyvern.runs.lineage import SkyvernLineageMixin

if TYPE_CHECKING:
    from airflow_provider_skyvern.hooks.skyvern import SkyvernHook
    from airflow_provider_skyvern.models import RunResponse
    from airflow_provider_skyvern.runs.claim import RunClaim
    from airflow_provider_skyvern.runs.events import RunEvent
    from airflow_provider_skyvern.runs.kinds import RunKind
    from airflow_provider_skyvern.runs.ledger import RunStateUnknown, SubmissionLedger
    from airflow_provider_skyvern.runs.usage import UsageLedger, UsageRecord
    from airflow_provider_skyvern.runs.waiting import StartLimit


class SkyvernRunFailedError(AirflowException):
    """The Skyvern run ended failed, terminated, canceled or timed out, or did not finish in time."""


READ_AT_DEADLINE_SECONDS = 5.0
"""How long the last read of a run at its deadline may take, before it is canceled."""
RUN_TEMPLATE_FIELDS = ("artifacts_destination",)
"""Templated on every run operator (subclasses add them to their own ``template_fields``)."""


class SkyvernRunOperatorBase(SkyvernLineageMixin, BaseOperator):
    """
    Start one Skyvern run, wait for it (in the triggerer or blocking), return its output.

    Subclasses implement :meth:`_run_kind` (the rendered request), :meth:`_check_given` (the checks DAG
    parsing can make) and may add XComs (:meth:`_extra_xcoms`) and output checks (:meth:`_check_output`).

    Every run operator also takes (documented here once):

    :param artifacts_destination: copy the run's downloaded files, recording and screenshots there when
        it ends (a URI such as ``s3://bucket/prefix``, ``file:///data`` or an ``ObjectStoragePath``;
        templated): streamed, resumed, checked against Skyvern's SHA-256, under ``<run_id>/``; XCom
        ``artifacts`` then holds the manifest (durable URIs) instead of expiring URLs. A failed copy fails
        the task naming the file; its retry copies again without starting a new Skyvern run.
    :param artifacts_conn_id: Airflow connection of the object store, for a destination given as a URI.
    :param queue_timeout: seconds the run may wait to start (Skyvern Cloud queues runs beyond the plan's
        concurrent-run limit: Free 1, Hobby 10, Pro 25); with it, ``timeout`` counts from when the run
        started, so a fan-out's last runs are not timed out for waiting their turn. Default None: the wait
        counts toward ``timeout``, from the submission. ``execution_timeout`` binds either way.
    :param max_steps_total: the most steps (Skyvern bills about one credit each) all runs of this task
        instance may spend, across its retries: a try starts no run once the runs before it spent so much
        that another like them would pass it (Airflow 3.3's task state store keeps the count; without it,
        each try counts alone). XCom ``usage`` says what was spent: ``{steps, runs, tries, replayed_as_code}``.
    """

    checked_arguments: ClassVar[tuple[str, ...]] = ()
    """Argument names :meth:`_check_given` checks at DAG parse time (when not templated)."""
    operator_extra_links = (SkyvernRunLink(),)
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        wait_for_completion: bool,
        timeout: float,
        poll_interval: float,
        deferrable: bool,
        reattach: bool,
        cancel_on_kill: bool,
        skyvern_conn_id: str = DEFAULT_CONN_ID,
        artifacts_destination: Any = None,
        artifacts_conn_id: str | None = None,
        queue_timeout: float | None = None,
        max_steps_total: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        try:
            if queue_timeout is not None:
                check.check_positive("queue_timeout", queue_timeout, integer=False)
            if max_steps_total is not None:
                check.check_positive("max_steps_total", max_steps_total)
        except check.InvalidParameter as exc:
            raise ValueError(f"{type(self).__name__}(task_id={self.task_id!r}) {exc}") from None
        self.queue_timeout = queue_timeout
        self.max_steps_total = max_steps_total
        if (
            isinstance(artifacts_destination, str)
            and not check.is_unresolved(artifacts_destination)
            and "://" not in artifacts_destination
        ):
            raise ValueError(
                f"{type(self).__name__}(task_id={self.task_id!r}) artifacts_destination: "
                f"{artifacts_destination!r} is not a URI; use e.g. 'file:///data/skyvern' or 's3://bucket/prefix'"
            )
        if artifacts_destination is not None and not wait_for_completion:
            raise ValueError(
                f"{type(self).__name__}(task_id={self.task_id!r}) artifacts_destination: needs "
                "wait_for_completion=True (the files are copied when the run ends, and this task does not "
                "wait for that); copy them after the run ends with SkyvernCopyArtifactsOperator(run_id=...)"
            )
        self.artifacts_destination = artifacts_destination
        self.artifacts_conn_id = artifacts_conn_id
        self.wait_for_completion = wait_for_completion
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.deferrable = deferrable
        self.reattach = reattach
        self.cancel_on_kill = cancel_on_kill
        self.skyvern_conn_id = skyvern_conn_id
        self.skyvern_app_url: str | None = None
        """The run's page in Skyvern's UI once a run exists: what :class:`SkyvernRunLink` shows."""
        self._active_run_id: str | None = None
        self._claim: RunClaim | None = None
        self._ended = False
        """The run was seen final: nothing is left to cancel (and a finished run is never canceled)."""

    # ---- what a subclass says -------------------------------------------------------------------------

    def _run_kind(self) -> RunKind:
        """The rendered request; a bad value is a ``check.InvalidParameter`` naming the field."""
        raise NotImplementedError

    @classmethod
    def _check_given(cls, values: Mapping[str, Any]) -> None:
        """Checks the known values among ``checked_arguments`` (a ``check.InvalidParameter`` if bad)."""
        raise NotImplementedError

    def _extra_xcoms(self, run: RunResponse) -> dict[str, Any]:
        """XComs this kind of run adds to the common ones, pushed when the run ends."""
        return {}

    def _check_output(self, context: Any, run: RunResponse) -> None:
        """Raise to fail a completed run whose output is not acceptable."""

    def _most_steps_per_run(self) -> int | None:
        """The most steps one run of this request may take, when the request caps it (``max_steps``)."""
        return None

    def _prepare(self, context: Any) -> None:
        """What must exist at Skyvern before the request can be built (a prompt's replay workflow)."""

    def _keeps_title(self) -> bool:
        """Whether a later try could find the run by its title's tag (see :attr:`.RunKind.keeps_title`)."""
        return self._run_kind().keeps_title

    def _return_value(self, run: RunResponse) -> Any:
        """The task's return value once the run completed."""
        return run.output

    # ---- parse-time checks ----------------------------------------------------------------------------

    def _check_now(self) -> None:
        """Called at the end of a subclass ``__init__``: a bad known value fails the DAG's parse."""
        try:
            self._check_known({name: getattr(self, name) for name in self.checked_arguments})
        except check.InvalidParameter as exc:
            raise ValueError(f"{type(self).__name__}(task_id={self.task_id!r}) {exc}") from None

    @classmethod
    def _check_known(cls, values: Mapping[str, Any]) -> None:
        """What DAG parsing can check: the given values that are neither templates nor upstream XComs."""
        known = {name: value for name, value in values.items() if not check.is_unresolved(value)}
        for name in ("timeout", "poll_interval"):
            if name in known:
                check.check_positive(name, known[name], integer=False)
        cls._check_given(known)

    @classmethod
    def partial(cls, **kwargs: Any) -> Any:
        """``.partial(...).expand(...)`` builds no operator at parse time: check the partial values now."""
        try:
            cls._check_known({name: kwargs[name] for name in cls.checked_arguments if name in kwargs})
        except check.InvalidParameter as exc:
            raise ValueError(f"{cls.__name__}.partial(task_id={kwargs.get('task_id')!r}) {exc}") from None
        return super().partial(**kwargs)

    @cached_property
    def hook(self) -> SkyvernHook:
        from airflow_provider_skyvern.hooks.skyvern import SkyvernHook

        return SkyvernHook(self.skyvern_conn_id)

    # ---- execution ------------------------------------------------------------------------------------

    def execute(self, context: Any) -> Any:
        from airflow_provider_skyvern.runs.claim import RunClaim
        from airflow_provider_skyvern.runs.ledger import RunStateUnknown
        from airflow_provider_skyvern.runs.results import identity_xcoms

        try:
            self._prepare(context)
            kind = self._run_kind()
        except check.InvalidParameter as exc:
            self._leave_no_run_behind(context)
            raise AirflowFailException(f"{type(self).__name__}: {exc} (after rendering templates)") from None
        except Exception:
            self._leave_no_run_behind(context)
            raise
        if self.artifacts_destination is not None:  # a store that cannot be opened fails before a paid run
            from airflow_provider_skyvern.artifacts.storage import DestinationUnavailable, check_destination

            try:
                check_destination(self.artifacts_destination, self.artifacts_conn_id)
            except DestinationUnavailable as exc:
                raise AirflowFailException(f"{type(self).__name__}: {exc}") from None
        claim = RunClaim(
            self.hook,
            context,
            kind,
            reattach=self.reattach,
            log=self.log,
            cancel_abandoned=self.cancel_on_kill,
        )
        self._claim = claim
        try:
            run = claim.earlier_run()
        except RunStateUnknown as exc:  # already says what is known and what is not
            why = claim.why_no_retry_finds
            if why is None:
                raise
            raise self._unknown_for_good(exc, why) from None
        except SkyvernError as exc:
            message = f"Looking for a Skyvern run an earlier try of this task started failed: {exc}"
            raise exc.reworded(message) from None
        usage = self._usage(context)
        if run is None:
            if self.max_steps_total is not None:
                self._check_budget(usage.settle(self.hook.get_run))
            run = self._submit(claim)
        usage.started(run.run_id)
        self._active_run_id, self.skyvern_app_url = run.run_id, run.app_url
        self._push(context, identity_xcoms(run))

        if not self.wait_for_completion:
            claim.handed_on()  # whoever waits now owns the run: a clear starts a new one, never adopts it
            return run.run_id
        if run.is_terminal:
            return self._finish(context, run)
        deadline, limit, start = self._wait_limits(context)
        if self.deferrable:
            self._defer_on(run.run_id, run.app_url, deadline, limit, start)
        return self._handle_event(context, self._wait_blocking(run.run_id, deadline, limit, start))

    def _defer_on(
        self,
        run_id: str,
        app_url: str | None,
        deadline: float | None,
        limit: str | None,
        start: StartLimit | None,
    ) -> None:
        from airflow_provider_skyvern.triggers.skyvern import SkyvernRunTrigger

        start_limit = None if start is None else start.to_kwargs()
        self.defer(
            trigger=SkyvernRunTrigger(
                run_id=run_id,
                deadline=deadline,
                poll_interval=self.poll_interval,
                skyvern_conn_id=self.skyvern_conn_id,
                cancel_on_kill=self.cancel_on_kill,
                limit=limit,
                start_limit=start_limit,
            ),
            method_name="execute_complete",
            kwargs={
                "run_id": run_id,
                "app_url": app_url,
                "deadline": deadline,
                "limit": limit,
                "start_limit": start_limit,
            },
            timeout=None,  # the deadline lives in the trigger, so a timeout still reaches execute_complete
        )

    def execute_complete(
        self,
        context: Any,
        event: Any = None,
        run_id: str | None = None,
        app_url: str | None = None,
        deadline: float | None = None,
        limit: str | None = None,
        start_limit: dict[str, float] | None = None,
    ) -> Any:
        """:param run_id: the run this task deferred on; ``app_url`` its page; ``deadline`` and ``limit`` the
        wait's end (Unix time) and what it stands for; ``start_limit`` the ``queue_timeout`` apart."""
        from airflow_provider_skyvern.runs.events import RunEvent
        from airflow_provider_skyvern.runs.results import APP_URL_XCOM_KEY

        if run_id is None:  # dag.test() resumes with the event only: the XComs pushed before deferring
            run_id, app_url = self._pulled(context, "run_id"), self._pulled(context, APP_URL_XCOM_KEY)
        self.skyvern_app_url = app_url
        parsed = RunEvent.from_payload(event)
        if run_id is not None and parsed.run_id != run_id:
            # An earlier trigger's event (a clear while deferred; SQLite reuses the deleted trigger's id, so
            # it reaches this try): this try's run still needs waiting for.
            self.log.warning(
                "Event about Skyvern run %s (%s) comes from an earlier try's trigger; this try waits for run "
                "%s: waiting for it again",
                parsed.run_id,
                parsed.kind,
                run_id,
            )
            from airflow_provider_skyvern.runs.waiting import StartLimit

            start = StartLimit.from_kwargs(start_limit)
            if deadline is None and start is None:  # deferred before this provider passed its limits on
                deadline, limit, start = self._wait_limits(context)
            self._defer_on(run_id, app_url, deadline, limit, start)
        self._active_run_id = parsed.run_id
        return self._handle_event(context, parsed)

    def _pulled(self, context: Any, key: str) -> str | None:
        ti = context["ti"]
        value = ti.xcom_pull(task_ids=self.task_id, key=key, map_indexes=ti.map_index)
        return value if isinstance(value, str) else None

    def on_kill(self) -> None:
        """Blocking mode: the worker is being killed, so the remote run must not keep going (and billing)."""
        from airflow_provider_skyvern.runs.claim import cancel_at_once

        if not self.cancel_on_kill or self._ended:
            return
        if self._claim is not None and self._claim.abandon():  # this try's POST: its run is handled there
            return
        if self._active_run_id:
            cancel_at_once(self.hook, self._active_run_id, self.log)

    # ---- steps ----------------------------------------------------------------------------------------

    def _submit(self, claim: RunClaim) -> RunResponse:
        from airflow_provider_skyvern.runs.ledger import RunStateUnknown

        try:
            return claim.submit()
        except SkyvernBadRequestError as exc:  # the same request would be refused on every retry
            raise AirflowFailException(f"Skyvern refused to start the run: {exc}") from None
        except SkyvernNotFoundError as exc:
            if exc.no_such_endpoint:  # a wrong base URL: the connection may be fixed before a retry
                raise exc.reworded(f"Starting the Skyvern run failed: {exc}") from None
            # a workflow, credential, session or profile the request names does not exist: no retry helps
            raise AirflowFailException(f"Skyvern refused to start the run: {exc}") from None
        except RunStateUnknown as exc:
            why = claim.why_no_retry_finds
            if why is None:
                raise
            raise AirflowFailException(exc.without_retry(why)) from None
        except SkyvernError as exc:
            raise exc.reworded(f"Starting the Skyvern run failed: {exc}") from None

    def _usage(self, context: Any) -> UsageLedger:
        from airflow_provider_skyvern.runs.ledger import run_tag
        from airflow_provider_skyvern.runs.usage import UsageLedger

        return UsageLedger(context, run_tag(context))

    def _check_budget(self, spent: UsageRecord) -> None:
        """``max_steps_total``: no run that, like this task instance's runs so far, would spend past it."""
        assert self.max_steps_total is not None
        if not spent.runs:
            return
        capped = self._most_steps_per_run()
        next_run = capped or spent.largest_run()
        if spent.steps + next_run <= self.max_steps_total:
            return
        cap = "its max_steps" if capped else "the largest run of this task so far"
        raise AirflowFailException(
            f"max_steps_total={self.max_steps_total}: this task instance's runs already spent {spent.steps} "
            f"steps ({spent.described()}), and another run may take {next_run} ({cap}); not starting one. "
            "Raise max_steps_total, or clear the task to count afresh"
        )

    def _account(
        self, context: Any, usage: UsageLedger, record: UsageRecord, run: RunResponse | None
    ) -> None:
        """XCom ``usage`` (on success and on failure), and the cost line that ends the run's story."""
        from airflow_provider_skyvern.runs.usage import cost_line

        self._push(context, {"usage": record.totals()})
        if run is not None:
            self.log.info("%s", cost_line(run, record, across_tries=usage.kept_across_tries))

    def _leave_no_run_behind(self, context: Any) -> None:
        """This try fails before it could look for the run an earlier try started and recorded: on the last
        try nobody would wait for that run any more, so it is canceled (``cancel_on_kill``; a run handed on
        to another task, or already ended, is not)."""
        from airflow_provider_skyvern.runs.claim import is_final_try
        from airflow_provider_skyvern.runs.ledger import SubmissionLedger

        if not self.cancel_on_kill or not is_final_try(context):
            return
        record = SubmissionLedger(context).read()
        if record is None or record.run_id is None or record.phase != "submitted":
            return
        self.log.warning(
            "This was the task's last try and it failed before it could take over Skyvern run %s, which an "
            "earlier try started: nobody will wait for it",
            record.run_id,
        )
        self._cancel(record.run_id)

    def _unknown_for_good(self, exc: RunStateUnknown, why: str) -> AirflowFailException:
        """No later try would look again (``why``): a run known by id but unreadable is canceled
        (cancel_on_kill); the message says what is left to do, not what the next try does."""
        message = exc.without_retry(why)
        if exc.run_id is not None and self.cancel_on_kill:
            message += f" (nobody will wait for run {exc.run_id}: {self._cancel(exc.run_id, read=False)})"
        return AirflowFailException(message)

    def _deadline(self, context: Any) -> tuple[float, str]:
        """When the wait must end and why: ``timeout`` from now, or the try's ``execution_timeout``."""
        deadline, limit = self.hook.clock.time() + self.timeout, f"timeout={self.timeout:g}s"
        ends = self._execution_ends(context)
        return ends if ends is not None and ends[0] < deadline else (deadline, limit)

    def _wait_limits(self, context: Any) -> tuple[float | None, str | None, StartLimit | None]:
        """The wait's deadline and what it stands for, and with ``queue_timeout`` the start limit apart:
        then only ``execution_timeout`` is a deadline of its own."""
        from airflow_provider_skyvern.runs.waiting import StartLimit

        if self.queue_timeout is None:
            deadline, limit = self._deadline(context)
            return deadline, limit, None
        now = self.hook.clock.time()
        start = StartLimit(now + self.queue_timeout, self.queue_timeout, self.timeout)
        ends = self._execution_ends(context)
        return (None, None, start) if ends is None else (*ends, start)

    def _execution_ends(self, context: Any) -> tuple[float, str] | None:
        if self.execution_timeout is None:
            return None
        started = getattr(context["ti"], "start_date", None)
        since = started.timestamp() if isinstance(started, datetime) else self.hook.clock.time()
        return since + self.execution_timeout.total_seconds(), f"execution_timeout={self.execution_timeout}"

    def _wait_blocking(
        self, run_id: str, deadline: float | None, limit: str | None, start: StartLimit | None
    ) -> RunEvent:
        """The trigger's policy, synchronously (``deferrable=False``)."""
        from airflow_provider_skyvern.runs.waiting import RunWatch

        clock = self.hook.clock
        watch = RunWatch(self.log, run_id, deadline, limit=limit, clock=clock, start=start)
        while True:
            try:
                event = watch.observe(run=self.hook.get_run(run_id, deadline=watch.deadline))
            except Exception as exc:
                event = watch.observe(error=exc)
            if event is not None:
                return event
            clock.sleep(watch.pause(self.poll_interval))

    def _handle_event(self, context: Any, event: RunEvent) -> Any:
        from airflow_provider_skyvern.runs.ledger import SubmissionLedger

        ledger = SubmissionLedger(context)
        if event.kind == "error":
            if self._next_try_can_reattach(context, ledger):
                after = "the run is left going; the next try reattaches to it"
            elif not self.cancel_on_kill:
                after = "the run is left going (cancel_on_kill=False)"
            else:  # nobody would wait for the run any more
                after = self._cancel(event.run_id)
                ledger.clear()
            raise SkyvernRunFailedError(
                f"Stopped waiting for Skyvern run {event.run_id}: {event.message}; {after}"
            )
        if event.kind == "deadline":
            seen = self._read_at_deadline(event)
            if seen is not None and seen.is_terminal:  # it ended as the wait ran out: its result stands
                self.log.info(
                    "Skyvern run %s ended %s as the wait reached its deadline: handing on what it did",
                    seen.run_id,
                    seen.status.value,
                )
                return self._finish(context, seen)
            after = self._cancel(event.run_id, seen, read=False)
            ledger.clear()
            # what it spent is what it had done when the cancel reached it (steps go on until then): read
            # once more, bounded as the read before, when the run could be read at all
            final = self._read_at_deadline(event) if seen is not None else None
            latest = final or seen
            steps = latest.step_count if latest is not None else event.step_count
            usage = self._usage(context)
            self._account(context, usage, usage.stopped(event.run_id, steps, "canceled"), None)
            limit = event.limit or f"timeout={self.timeout:g}s"
            if event.run_status is None and event.message:
                raise SkyvernRunFailedError(
                    f"Could not read Skyvern run {event.run_id} within {limit}: {event.message}; {after}"
                )
            last = f"last status {event.run_status}" + (
                f", step {event.step_count}" if event.step_count else ""
            )
            if event.message:
                last += f"; {event.message}"
            within = "start" if limit.startswith("queue_timeout") else "finish"
            raise SkyvernRunFailedError(
                f"Skyvern run {event.run_id} did not {within} within {limit} ({last}); {after}"
            )
        run = self.hook.get_run(event.run_id)  # fresh presigned URLs
        if not run.is_terminal:
            raise SkyvernRunFailedError(
                f"Skyvern run {run.run_id} is {_status_of(run)} although the trigger saw it final; failing closed"
            )
        return self._finish(context, run)

    def _next_try_can_reattach(self, context: Any, ledger: SubmissionLedger) -> bool:
        """A retry follows and will find this run: by the state store, or (Airflow < 3.3) by its tag."""
        from airflow_provider_skyvern.runs.claim import why_no_retry_finds

        keeps_title = self._keeps_title()
        return (
            why_no_retry_finds(
                context, reattach=self.reattach, keeps_title=keeps_title, store=ledger.available
            )
            is None
        )

    def _push(self, context: Any, values: dict[str, Any]) -> None:
        """Explicit XComs follow ``do_xcom_push`` like the return value does."""
        from airflow_provider_skyvern.runs.results import pushable

        if self.do_xcom_push:
            for key, value in pushable(values).items():
                context["ti"].xcom_push(key=key, value=value)

    def _finish(self, context: Any, run: RunResponse) -> Any:
        from airflow_provider_skyvern.runs import story
        from airflow_provider_skyvern.runs.ledger import BAD_OUTPUT, SubmissionLedger
        from airflow_provider_skyvern.runs.results import failure_message, log_full_reason, result_xcoms

        ledger = SubmissionLedger(context)
        self.skyvern_app_url = run.app_url or self.skyvern_app_url
        self._ended, self._active_run_id = True, None
        self.skyvern_run = run  # what OpenLineage reports (runs/lineage.py)
        self._push(context, {**result_xcoms(run), **self._extra_xcoms(run)})
        story.log_story(self.hook, run, self.log)
        usage = self._usage(context)
        self._account(context, usage, usage.ended(run), run)
        copy_failed = self._copy_artifacts(context, run, ledger)
        if run.status is not RunStatus.completed:
            ledger.ended(run.run_id, run.status.value)
            log_full_reason(run, self.log)
            raise SkyvernRunFailedError(failure_message(run))
        if copy_failed is not None:
            raise copy_failed
        try:
            self._check_output(context, run)
        except Exception:
            ledger.ended(run.run_id, BAD_OUTPUT)  # it ended badly for this task: a retry may buy a new run
            raise
        # Kept, not deleted: Airflow pushes the return value after this returns, and that can fail; a retry
        # then hands this run on again (the record says so) instead of paying for another.
        ledger.ended(run.run_id, run.status.value)
        steps = run.step_count
        self.log.info("Skyvern run %s completed in %s step%s", run.run_id, steps, "" if steps == 1 else "s")
        return self._return_value(run)

    def _copy_artifacts(self, context: Any, run: RunResponse, ledger: SubmissionLedger) -> Exception | None:
        """
        Copy the run's files when asked; the error to raise if that failed. The run stays remembered then,
        so a retry reattaches to it and copies again (skipping what is there) instead of starting a run;
        where no retry could find the run, the failure is final and says how to recover.
        """
        if self.artifacts_destination is None:
            return None
        from airflow_provider_skyvern.artifacts import ArtifactCopyError, copy_run_artifacts

        try:
            manifest = copy_run_artifacts(
                self.hook,
                run,
                self.artifacts_destination,
                conn_id=self.artifacts_conn_id,
                log=self.log,
                deadline=self._deadline(context)[0],  # bounded by timeout / execution_timeout like the wait
            )
        except ArtifactCopyError as exc:
            self.log.error("%s", exc)
            if self._next_try_can_reattach(context, ledger):
                return SkyvernRunFailedError(f"{exc}; a retry copies again, without a new Skyvern run")
            return AirflowFailException(
                f"{exc}; no retry can find this run again: copy its files with "
                f"SkyvernCopyArtifactsOperator(run_id={run.run_id!r}), clearing this task would start a new run"
            )
        self.skyvern_artifacts = manifest  # the lineage outputs
        self._push(context, {"artifacts": manifest.to_xcom()})
        return None

    def _read_at_deadline(self, event: RunEvent) -> RunResponse | None:
        """The run once more before canceling it (it may have ended meanwhile), in a few seconds: the deadline
        binds. Not when every poll failed up to the deadline: reading again would only make it later."""
        if event.run_status is None:
            return None
        try:
            return self.hook.get_run(event.run_id, deadline=self.hook.clock.time() + READ_AT_DEADLINE_SECONDS)
        except SkyvernError as exc:
            self.log.warning("Could not read Skyvern run %s at its deadline: %s", event.run_id, exc)
            return None

    def _cancel(self, run_id: str, seen: RunResponse | None = None, *, read: bool = True) -> str:
        from airflow_provider_skyvern.runs.claim import cancel_run

        return cancel_run(self.hook, run_id, self.log, seen, read=read)


def _status_of(run: RunResponse) -> str:
    """A terminal status with an automatic retry still to come reads as such, not as final."""
    pending = getattr(run, "retry_pending", None) and run.status.is_terminal
    return f"{run.status.value} with a retry pending" if pending else run.status.value

"""SkyvernRunTrigger: waits for one Skyvern run in the triggerer, without holding a worker slot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Collection, Coroutine
from datetime import datetime
from typing import Any

import anyio
from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent

from airflow_provider_skyvern import DEFAULT_CONN_ID
from airflow_provider_skyvern.hooks.skyvern import SkyvernHook
from airflow_provider_skyvern.links.skyvern import SkyvernRunLink
from airflow_provider_skyvern.models import RunResponse
from airflow_provider_skyvern.runs.story import alog_story
from airflow_provider_skyvern.runs.waiting import RunWatch, StartLimit
from airflow_provider_skyvern.version_compat import AIRFLOW_V_3_3_PLUS

ON_KILL_BUDGET = 25.0
"""All of ``on_kill`` (the task's state, the run's, the cancel): inside the triggerer's own limit, 30 s by
default (``[triggerer] on_kill_timeout``), after which it logs "on_kill() timed out" and moves on."""
TI_STATE_TIMEOUT = 10.0
_FINISHING: set[asyncio.Future[None]] = set()  # strong references to shielded cancels in flight


class SkyvernRunTrigger(BaseTrigger):
    """
    Polls ``GET /v1/runs/{run_id}`` until the run is final, the deadline passes, or a permanent error.

    Its kwargs (stored in Airflow's database) are only the conn id, run id, poll interval and an absolute
    wall-clock deadline: never a key. ``run()`` only reads, so a restarted or duplicated trigger is safe.
    Every poll, retries included, ends by the deadline; any exception ends the wait with an ``error``
    event (the operator decides what happens to the run), never silently.

    :param run_id: the Skyvern run to wait for.
    :param deadline: Unix time (seconds) after which the wait ends with a ``deadline`` event; None: the
        deferral's own timeout (Airflow's ``trigger_timeout``, which the scheduler also enforces) if any.
    :param poll_interval: the longest gap between polls, in seconds (polls start 1 s apart and spread out
        with the run's age, see :class:`RunWatch`).
    :param limit: what the deadline stands for, echoed in the event (``timeout=1800s``).
    :param skyvern_conn_id: Airflow connection of type ``skyvern``.
    :param cancel_on_kill: cancel the run when the wait is abandoned by a user (the task instance was
        marked failed/success or cleared); never when the trigger merely moves to another triggerer.
    :param start_limit: ``queue_timeout`` apart from ``timeout`` (:class:`StartLimit` as a dict): the wait
        ends at ``queued_until`` if the run has not started by then, else ``timeout`` seconds after it started;
        ``deadline`` still binds (``execution_timeout``).
    :param succeed_on: statuses in which the trigger itself ends the task as successful, so no worker is
        needed (a sensor with ``do_xcom_push=False``); any other outcome resumes the task on a worker. Only
        the extra link is pushed from here: Airflow (3.3.2) stores XComs a trigger pushes as JSON text, so
        a downstream task would read a dict as a string; the run's XComs are pushed by the worker.
    """

    def __init__(
        self,
        run_id: str,
        deadline: float | None,
        poll_interval: float = 30.0,
        skyvern_conn_id: str = DEFAULT_CONN_ID,
        cancel_on_kill: bool = True,
        limit: str | None = None,
        succeed_on: Collection[str] = (),
        start_limit: dict[str, float] | None = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.run_id = run_id
        self.deadline = None if deadline is None else float(deadline)
        self.poll_interval = float(poll_interval)
        self.skyvern_conn_id = skyvern_conn_id
        self.cancel_on_kill = bool(cancel_on_kill)
        self.limit = limit
        self.succeed_on = sorted(succeed_on)
        self.start_limit = StartLimit.from_kwargs(start_limit)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "run_id": self.run_id,
                "deadline": self.deadline,
                "poll_interval": self.poll_interval,
                "skyvern_conn_id": self.skyvern_conn_id,
                "cancel_on_kill": self.cancel_on_kill,
                "limit": self.limit,
                "succeed_on": self.succeed_on,
                "start_limit": None if self.start_limit is None else self.start_limit.to_kwargs(),
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            async with SkyvernHook(self.skyvern_conn_id) as hook:
                watch = RunWatch(
                    self.log,
                    self.run_id,
                    self._deadline(),
                    limit=self.limit,
                    clock=hook.clock,
                    start=self.start_limit,
                )
                while True:
                    run: RunResponse | None = None
                    try:
                        run = await hook.aget_run(self.run_id, deadline=watch.deadline)
                        event = watch.observe(run=run)
                    except Exception as exc:  # a deleted connection, a bad URL, a bug: all end the wait
                        event = watch.observe(error=exc)
                    if event is not None:
                        if run is not None and event.kind == "terminal" and self._ends_task(event.run_status):
                            yield await self._success(hook, run)
                        else:
                            yield TriggerEvent(event.to_payload())  # type: ignore[no-untyped-call]
                        return
                    await hook.clock.asleep(watch.pause(self.poll_interval))
        except asyncio.CancelledError:
            if not AIRFLOW_V_3_3_PLUS:  # no on_kill before 3.3: a cancellation is all we are told
                await _shielded(self._cancel_if_abandoned())
            raise

    def _deadline(self) -> float | None:
        if self.deadline is not None:
            return self.deadline
        timeout_after = getattr(self, "timeout_after", None)  # set by the triggerer from trigger_timeout
        return timeout_after.timestamp() if isinstance(timeout_after, datetime) else None

    def _ends_task(self, status: str | None) -> bool:
        """Only the triggerer can end a task from here (it knows the task instance); dag.test() cannot."""
        return status in self.succeed_on and self.task_instance is not None

    async def _success(self, hook: SkyvernHook, run: RunResponse) -> TaskSuccessEvent:
        """End the task here: the story in its log, and the link (the API server reads it either way)."""
        await alog_story(hook, run, self.log)
        self.log.info("Skyvern run %s ended %s: the sensor succeeds", run.run_id, run.status.value)
        return TaskSuccessEvent(xcoms={SkyvernRunLink().xcom_key: run.app_url or ""})

    async def on_kill(self) -> None:
        """Airflow 3.3+: a user acted on the task, or the trigger was moved to another triggerer."""
        await _shielded(self._cancel_if_abandoned())

    async def _cancel_if_abandoned(self) -> None:
        """Cancel the run only when its task instance no longer waits for it (not merely reassigned)."""
        if not self.cancel_on_kill:
            return
        ends = time.monotonic() + ON_KILL_BUDGET
        state = await self._task_instance_state()
        if state == "deferred":
            waited_for = await self._run_the_task_waits_for()
            if waited_for is None or waited_for == self.run_id:
                self.log.info(
                    "Trigger for Skyvern run %s stopped while its task is still deferred (moved to another "
                    "triggerer or restarting): not canceling the run",
                    self.run_id,
                )
                return
            self.log.info(
                "Task is deferred again, by a later try waiting for Skyvern run %s: nobody waits for run %s any "
                "more, canceling it",
                waited_for,
                self.run_id,
            )
        elif state is None:
            self.log.warning(
                "Trigger for Skyvern run %s stopped and the state of its task could not be read: "
                "not canceling the run; cancel it in Skyvern if nobody waits for it",
                self.run_id,
            )
            return
        else:
            self.log.info("Task is %s, no longer waiting: canceling Skyvern run %s", state, self.run_id)
        try:
            async with SkyvernHook(self.skyvern_conn_id) as hook:
                with anyio.fail_after(
                    max(ends - time.monotonic(), 0.0)
                ):  # anyio: 3.11's wait_for eats cancels
                    if await self._already_ended(hook, time.time() + (ends - time.monotonic()) / 2):
                        return
                    await hook.acancel_run(self.run_id)
        except Exception as exc:  # a cancel that cannot be sent is reported, never raised here
            self.log.warning("Could not cancel Skyvern run %s: %s", self.run_id, exc)
        else:
            self.log.info("Canceled Skyvern run %s", self.run_id)

    async def _already_ended(self, hook: SkyvernHook, deadline: float) -> bool:
        """A run seen final is never canceled (Skyvern 1.0.56 revokes a finished workflow run's last attempt
        and resends its webhook); a run that cannot be read is canceled all the same."""
        try:
            run = await hook.aget_run(self.run_id, deadline=deadline)
        except Exception as exc:
            self.log.warning("Could not read Skyvern run %s before canceling it: %s", self.run_id, exc)
            return False
        if run.is_terminal:
            self.log.info(
                "Skyvern run %s had already ended %s: not canceling it", self.run_id, run.status.value
            )
        return run.is_terminal

    async def _run_the_task_waits_for(self) -> str | None:
        """The run id the task's current try pushed before deferring (XComs are cleared when a try starts,
        never when it resumes): another id means a later try deferred on its own run, after a clear. None
        when it cannot be told (no XCom pushed, ``do_xcom_push=False``, or it could not be read)."""
        ti = self.task_instance
        if ti is None:
            return None

        def read() -> Any:
            from airflow.sdk.execution_time.xcom import XCom

            return XCom.get_one(
                key="run_id", dag_id=ti.dag_id, task_id=ti.task_id, run_id=ti.run_id, map_index=ti.map_index
            )

        value = await self._ask_airflow(f"which run task {ti.task_id} waits for", read)
        return value if isinstance(value, str) else None

    async def _task_instance_state(self) -> str | None:
        """The task instance's state now, from the API server ("removed" when it is gone); None if unknown."""
        ti = self.task_instance
        if ti is None:
            return None

        def read() -> Any:
            from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

            return RuntimeTaskInstance.get_task_states(
                dag_id=ti.dag_id, task_ids=[ti.task_id], run_ids=[ti.run_id], map_index=ti.map_index
            )

        states = await self._ask_airflow(f"the state of task {ti.task_id}", read)
        if not isinstance(states, dict):
            return None
        key = ti.task_id if ti.map_index is None or ti.map_index < 0 else f"{ti.task_id}_{ti.map_index}"
        state = states.get(ti.run_id, {}).get(key, "removed")
        return str(getattr(state, "value", state) or "none")

    async def _ask_airflow(self, what: str, read: Callable[[], Any]) -> Any:
        """One bounded question to Airflow through the triggerer's supervisor, as Airflow's own triggers ask
        it; None when it cannot be answered (the caller then cancels nothing)."""
        try:
            from asgiref.sync import sync_to_async

            with anyio.fail_after(TI_STATE_TIMEOUT):
                return await sync_to_async(read)()
        except Exception as exc:
            self.log.warning("Could not read %s: %s", what, exc)
            return None


async def _shielded(work: Coroutine[Any, Any, None]) -> None:
    """The triggerer cancels a trigger again on each sync until it is gone: the cancel still finishes."""
    future = asyncio.ensure_future(work)
    _FINISHING.add(future)
    future.add_done_callback(_FINISHING.discard)
    await asyncio.shield(future)

"""A small model of what Airflow does to one task instance, to drive the real operators and trigger through
every place a try can die (issue 17: "a simulator that tries every crash point").

What is modelled, from Airflow 3's task runner, supervisor and triggerer:

* a try runs ``execute`` on a fresh operator (a new process); ``TaskDeferred`` hands the trigger to the
  triggerer, whose event resumes the task on another fresh operator with ``next_kwargs``; Airflow pushes the
  return value after the method returns (that push can fail too);
* a try whose process dies (SIGKILL, OOM, a lost worker) fails; Airflow retries while ``try_number <=
  max_tries``; ``AirflowFailException`` fails without a retry; a triggerer that dies has its triggers run
  again by another triggerer (their kwargs are all they keep);
* a clear raises ``max_tries`` (a new tag: a new clear generation) and starts a new try; the old trigger is
  killed (``on_kill``) and sees the task instance in whatever state the new try left it;
* Airflow 3.3 gives each task instance a state store that outlives its tries; before 3.3 there is none.

A *step boundary* is every place where the try's outside world changes or is read: each write or delete of
the state store, each request the hook sends (before it leaves, and after the server handled it but before
the answer arrives) and each XCom push. :class:`Boundaries` numbers them as a schedule passes them and
makes the process die at a chosen one, so the crash points are enumerated from what the code does, never
hand-picked.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_skyvern.compat import AirflowFailException
from tests.operator_support import FakeStateStore, FakeTaskInstance, make_context


class ProcessDied(BaseException):
    """The process running this step died here: nothing after it runs, no ``except Exception`` sees it."""


class UserActed(ProcessDied):
    """A user marked the task failed (``kill``) or cleared it (``clear``) here: Airflow stops the try."""

    def __init__(self, what: str, where: str) -> None:
        super().__init__(f"{what} at {where}")
        self.what = what


@dataclass
class Boundaries:
    """Counts the step boundaries a schedule passes; at ``die_at`` (its index) the process dies, or, with
    ``act``, the user marks the task failed or clears it (Airflow then kills the try's process)."""

    die_at: int | None = None
    act: str | None = None
    """None: the process dies; ``kill``: mark failed; ``clear``: the UI's Clear."""
    passed: list[str] = field(default_factory=list)
    where: str = "worker"
    """Which process is running now: ``worker`` or ``triggerer``."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def cross(self, name: str) -> None:
        with self.lock:
            index = len(self.passed)
            self.passed.append(f"{self.where}: {name}")
        if index != self.die_at:
            return
        where = f"{self.where}: {name}"
        if self.act is None:
            raise ProcessDied(where)
        if threading.current_thread().name.startswith("skyvern-submit"):
            return  # a signal reaches the main thread only; tests/emulator/test_kill_windows.py has this one
        raise UserActed(self.act, where)


class CrashingStore(FakeStateStore):
    """The task state store; each write and delete is a step boundary (crossed before it happens)."""

    def __init__(self, boundaries: Boundaries) -> None:
        super().__init__()
        self.boundaries = boundaries

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        phase = value.get("phase") if isinstance(value, dict) else None
        self.boundaries.cross(f"store {key} phase={phase}")
        super().set(key, value)

    def delete(self, key: str) -> None:
        self.boundaries.cross(f"store delete {key}")
        super().delete(key)


class CrashingTaskInstance(FakeTaskInstance):
    """Each XCom push is a step boundary; the pushes that happened are kept (Airflow keeps them)."""

    def __init__(self, boundaries: Boundaries, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.boundaries = boundaries

    def xcom_push(self, key: str, value: Any) -> None:
        self.boundaries.cross(f"xcom {key}")
        super().xcom_push(key, value)


@contextmanager
def http_boundaries(boundaries: Boundaries, api_base: str) -> Iterator[None]:
    """Every request to Skyvern crosses two boundaries: before it is sent, and after the server handled it
    but before the answer reached the caller (the lost answer)."""
    sync_send, async_send = httpx.Client.send, httpx.AsyncClient.send

    def name(request: httpx.Request) -> str:
        return f"{request.method} {request.url.path}"

    def send(self: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        if not str(request.url).startswith(api_base):
            return sync_send(self, request, **kwargs)
        boundaries.cross(f"send {name(request)}")
        response = sync_send(self, request, **kwargs)
        boundaries.cross(f"answer {name(request)}")
        return response

    async def asend(self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        if not str(request.url).startswith(api_base):
            return await async_send(self, request, **kwargs)
        boundaries.cross(f"send {name(request)}")
        response = await async_send(self, request, **kwargs)
        boundaries.cross(f"answer {name(request)}")
        return response

    httpx.Client.send = send  # type: ignore[method-assign]
    httpx.AsyncClient.send = asend  # type: ignore[method-assign]
    try:
        yield
    finally:
        httpx.Client.send = sync_send  # type: ignore[method-assign]
        httpx.AsyncClient.send = async_send  # type: ignore[method-assign]


@dataclass
class Outcome:
    state: str
    """``success`` or ``failed``."""
    return_value: Any = None
    errors: list[str] = field(default_factory=list)
    """Each failed try's error, in order (``died at ...`` for a process that died)."""
    tries: int = 0
    run_id: str | None = None
    """The Skyvern run the task handed on (its ``run_id`` XCom), when it succeeded."""


@dataclass
class TaskInstanceModel:
    """One task instance across tries and clears, as Airflow drives it."""

    make_operator: Callable[[], Any]
    boundaries: Boundaries
    with_state_store: bool = True
    retries: int = 2
    dag_id: str = "nightly"
    on_retry: Callable[[], None] | None = None
    """Called between a failed try and the next (a benchmark lets ``retry_delay`` pass there)."""
    try_number: int = 0
    max_tries: int = 0
    store: FakeStateStore | None = None
    ti: CrashingTaskInstance | None = None
    trigger_runs: int = 0
    state: str = "none"
    """The task instance's state as the API server would tell a trigger's ``on_kill``."""
    operator: Any = None
    """The operator of the process running now (``on_kill`` is called on it)."""

    def __post_init__(self) -> None:
        self.max_tries = self.retries
        self.store = CrashingStore(self.boundaries) if self.with_state_store else None

    def context(self) -> dict[str, Any]:
        self.ti = CrashingTaskInstance(
            self.boundaries, dag_id=self.dag_id, try_number=self.try_number, max_tries=self.max_tries
        )
        return make_context(self.store, self.ti)

    def clear(self) -> None:
        """The UI's Clear: a new clear generation (Airflow 3 raises ``max_tries``; the tag changes)."""
        self.max_tries = self.try_number + self.retries

    def run(self) -> Outcome:
        """Tries until one succeeds, fails for good, or the retries are spent."""
        outcome = Outcome(state="failed")
        while True:
            self.try_number += 1
            outcome.tries += 1
            try:
                outcome.return_value = self._one_try()
            except UserActed as acted:
                outcome.errors.append(str(acted))
                if acted.what == "kill":
                    return outcome  # marked failed: no retry
                self.clear()
                continue  # cleared: a new try of a new clear generation
            except ProcessDied as died:
                outcome.errors.append(f"died at {died}")
            except AirflowFailException as exc:
                outcome.errors.append(f"{type(exc).__name__}: {exc}")
                return outcome
            except Exception as exc:
                outcome.errors.append(f"{type(exc).__name__}: {exc}")
            else:
                outcome.state = "success"
                outcome.run_id = self.ti.xcoms.get("run_id") if self.ti is not None else None
                return outcome
            if self.try_number > self.max_tries:
                return outcome
            if self.on_retry is not None:
                self.on_retry()

    def _one_try(self) -> Any:
        context = self.context()
        self.boundaries.where = "worker"
        method: str = "execute"
        kwargs: dict[str, Any] = {}
        while True:
            operator = self.make_operator()  # every start and resumption is a new process
            self.operator, self.state = operator, "running"
            try:
                result = getattr(operator, method)(context, **kwargs)
                # the task runner pushes it after the method returns, in the same process: its SIGTERM handler
                # (on_kill) still runs when the user acts there
                self.boundaries.cross("push return_value")
            except UserActed:
                self.state = "failed"
                operator.on_kill()  # SIGTERM's handler; SIGKILL follows
                raise
            except TaskDeferred as deferred:
                event = self._trigger_event(deferred)
                method, kwargs = deferred.method_name, {**(deferred.kwargs or {}), "event": event}
                self.boundaries.where = "worker"
                continue
            if self.ti is not None:
                self.ti.xcoms["return_value"] = result
            return result

    def _trigger_event(self, deferred: TaskDeferred) -> dict[str, Any]:
        """Runs the trigger to its first event; a triggerer that dies has it run again elsewhere."""
        _, kwargs = deferred.trigger.serialize()
        trigger_class = type(deferred.trigger)
        self.state = "deferred"
        while True:
            self.trigger_runs += 1
            self.boundaries.where = "triggerer"
            trigger = trigger_class(**kwargs)
            trigger.task_instance = self.ti  # what the triggerer gives a trigger it runs
            try:
                return asyncio.run(_first_event(trigger))
            except UserActed as acted:
                # Airflow 3.3 calls the trigger's on_kill; the task instance is failed (kill) or, after a
                # clear, not deferred on this try any more (the new try may already be deferred again).
                self.state = "failed" if acted.what == "kill" else "scheduled"
                asyncio.run(trigger.on_kill())
                raise
            except ProcessDied:
                continue  # another triggerer picks the trigger up from its kwargs


async def _first_event(trigger: Any) -> dict[str, Any]:
    async for event in trigger.run():
        return dict(event.payload)
    raise AssertionError("the trigger ended without an event")

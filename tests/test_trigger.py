"""SkyvernRunTrigger: small kwargs, read-only polling, one event, progress in the log, cancel only on kill."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import respx

from airflow_provider_skyvern.triggers.skyvern import SkyvernRunTrigger
from tests.conftest import API_KEY, BASE_URL, FastClock, set_connection
from tests.payloads import task_run

RUN = "/v1/runs/tsk_v2_1"


@pytest.fixture(autouse=True)
def no_retry_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retry budget 1 so an outage reaches the trigger quickly; the hook's waits are skipped."""
    set_connection(monkeypatch, extra={"max_retries": 1})

    FastClock(monkeypatch)


def make_trigger(deadline_in: float = 60, poll_interval: float = 0.001) -> SkyvernRunTrigger:
    return SkyvernRunTrigger(
        run_id="tsk_v2_1", deadline=time.time() + deadline_in, poll_interval=poll_interval
    )


async def events_of(trigger: SkyvernRunTrigger) -> list[dict[str, Any]]:
    return [event.payload async for event in trigger.run()]


def test_serialize_round_trip_holds_only_ids_numbers_and_no_key() -> None:
    from importlib import import_module

    def import_string(path: str) -> Any:
        module, _, name = path.rpartition(".")
        return getattr(import_module(module), name)

    trigger = SkyvernRunTrigger(
        run_id="tsk_v2_1", deadline=1_900_000_000.5, poll_interval=7, skyvern_conn_id="sky"
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_skyvern.triggers.skyvern.SkyvernRunTrigger"
    assert kwargs == {
        "run_id": "tsk_v2_1",
        "deadline": 1_900_000_000.5,
        "poll_interval": 7.0,
        "skyvern_conn_id": "sky",
        "cancel_on_kill": True,
        "limit": None,
        "succeed_on": [],
        "start_limit": None,
    }
    assert import_string(classpath)(**kwargs).serialize() == (classpath, kwargs)
    assert API_KEY not in repr(kwargs) + repr(trigger)


def test_kwargs_survive_airflows_serde() -> None:
    try:
        from airflow.sdk.serde import deserialize, serialize
    except ImportError:  # Airflow 3.0
        from airflow.serialization.serde import deserialize, serialize

    _, kwargs = make_trigger().serialize()
    assert deserialize(serialize(kwargs)) == kwargs


@respx.mock(base_url=BASE_URL)
async def test_polls_until_completed_logging_each_change(
    respx_mock: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    route = respx_mock.get(RUN).mock(
        side_effect=[
            httpx.Response(200, json=task_run("tsk_v2_1", "queued")),
            httpx.Response(200, json=task_run("tsk_v2_1", "running", step_count=1)),
            httpx.Response(200, json=task_run("tsk_v2_1", "running", step_count=1)),
            httpx.Response(200, json=task_run("tsk_v2_1", "running", step_count=2)),
            httpx.Response(200, json=task_run("tsk_v2_1", "completed", step_count=3)),
        ]
    )

    events = await events_of(make_trigger())

    assert events == [
        {
            "kind": "terminal",
            "run_id": "tsk_v2_1",
            "run_status": "completed",
            "step_count": 3,
            "message": None,
            "limit": None,
        }
    ]
    assert route.call_count == 5
    log = capsys.readouterr().out
    lines = [line for line in log.splitlines() if "Skyvern run tsk_v2_1:" in line]
    assert [line.split("Skyvern run tsk_v2_1: ")[1].split(" [")[0].strip() for line in lines] == [
        "queued",
        "running (step 1)",
        "running (step 2)",
        "completed (step 3)",
    ]


@pytest.mark.parametrize("status", ["completed", "failed", "terminated", "canceled", "timed_out"])
@respx.mock(base_url=BASE_URL)
async def test_every_final_status_ends_with_one_terminal_event(
    respx_mock: respx.MockRouter, status: str
) -> None:
    respx_mock.get(RUN).respond(200, json=task_run("tsk_v2_1", status, step_count=4))
    events = await events_of(make_trigger())
    assert events == [
        {
            "kind": "terminal",
            "run_id": "tsk_v2_1",
            "run_status": status,
            "step_count": 4,
            "message": None,
            "limit": None,
        }
    ]


@respx.mock(base_url=BASE_URL)
async def test_transient_errors_beyond_the_retry_budget_do_not_end_the_wait(
    respx_mock: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    outage = [httpx.Response(503, json={"error": "Database temporarily unavailable"})] * 4 + [
        httpx.ConnectError("Connection refused")
    ] * 2
    route = respx_mock.get(RUN).mock(
        side_effect=[*outage, httpx.Response(200, json=task_run("tsk_v2_1", "completed", step_count=2))]
    )

    events = await events_of(make_trigger())

    assert [e["kind"] for e in events] == ["terminal"]
    assert route.call_count == 7
    assert "still waiting after a transient error" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (
            404,
            {"detail": "Task run not found tsk_v2_1"},
            "Skyvern GET /v1/runs/tsk_v2_1 -> HTTP 404: Task run not found tsk_v2_1",
        ),
        (
            403,
            {"detail": "Invalid credentials"},
            "Skyvern GET /v1/runs/tsk_v2_1 -> HTTP 403: Invalid credentials",
        ),
    ],
)
@respx.mock(base_url=BASE_URL)
async def test_permanent_errors_end_with_an_error_event(
    respx_mock: respx.MockRouter, status: int, body: dict[str, str], message: str
) -> None:
    respx_mock.get(RUN).respond(status, json=body)
    (event,) = await events_of(make_trigger())
    assert event["kind"] == "error"
    assert event["message"].startswith(message)
    assert API_KEY not in event["message"]


@pytest.mark.parametrize("status", ["running", "paused", "some_future_status"])
@respx.mock(base_url=BASE_URL)
async def test_deadline_ends_a_run_that_is_not_final_never_with_success(
    respx_mock: respx.MockRouter, status: str
) -> None:
    respx_mock.get(RUN).respond(200, json=task_run("tsk_v2_1", status, step_count=5))
    events = await events_of(make_trigger(deadline_in=0.05))
    assert events == [
        {
            "kind": "deadline",
            "run_id": "tsk_v2_1",
            "run_status": status,
            "step_count": 5,
            "message": None,
            "limit": None,
        }
    ]


@respx.mock(base_url=BASE_URL)
async def test_a_run_that_finished_while_the_triggerer_was_down_is_not_reported_as_timeout(
    respx_mock: respx.MockRouter,
) -> None:
    respx_mock.get(RUN).respond(200, json=task_run("tsk_v2_1", "completed"))
    (event,) = await events_of(make_trigger(deadline_in=-3600))
    assert event["kind"] == "terminal"


@respx.mock(base_url=BASE_URL)
async def test_wall_clock_deadline_is_honoured(respx_mock: respx.MockRouter) -> None:
    """The deadline is computed on the worker and compared in the triggerer: wall-clock time, not monotonic."""
    import time_machine

    respx_mock.get(RUN).respond(200, json=task_run("tsk_v2_1", "running"))
    trigger = SkyvernRunTrigger(run_id="tsk_v2_1", deadline=time.time() + 3600, poll_interval=0.001)
    with time_machine.travel(time.time() + 7200, tick=True):
        (event,) = await events_of(trigger)
    assert event["kind"] == "deadline"


@respx.mock(base_url=BASE_URL, assert_all_called=False)
async def test_cancellation_of_the_trigger_does_not_cancel_the_run(respx_mock: respx.MockRouter) -> None:
    """A triggerer restart cancels run(); the remote run must go on (only on_kill cancels)."""
    respx_mock.get(RUN).respond(200, json=task_run("tsk_v2_1", "running"))
    cancel = respx_mock.post(f"{RUN}/cancel").respond(200, json=None)
    task = asyncio.create_task(make_trigger(poll_interval=0.01).run().__anext__())
    await asyncio.sleep(0.1)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancel.call_count == 0


# ---- abandoning the wait: cancel only when the task instance no longer waits ------------------------


@pytest.fixture
def ti_state(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What Airflow's API server says the task instance's state is (``get_task_states``)."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    answers: list[Any] = ["failed"]

    def get_task_states(**kwargs: Any) -> dict[str, Any]:
        assert kwargs == {
            "dag_id": "nightly",
            "task_ids": ["extract"],
            "run_ids": ["manual__1"],
            "map_index": -1,
        }
        if isinstance(answers[0], Exception):
            raise answers[0]
        return {"manual__1": {"extract": answers[0]}}

    monkeypatch.setattr(RuntimeTaskInstance, "get_task_states", staticmethod(get_task_states))
    return answers


@pytest.fixture
def pushed_run_id(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The ``run_id`` XCom the task's current try pushed before deferring (``XCom.get_one``)."""
    from airflow.sdk.execution_time.xcom import XCom

    answers: list[Any] = ["tsk_v2_1"]

    def get_one(**kwargs: Any) -> Any:
        assert kwargs == {
            "key": "run_id",
            "dag_id": "nightly",
            "task_id": "extract",
            "run_id": "manual__1",
            "map_index": -1,
        }
        if isinstance(answers[0], Exception):
            raise answers[0]
        return answers[0]

    monkeypatch.setattr(XCom, "get_one", staticmethod(get_one))
    return answers


def watched_trigger(**kwargs: Any) -> SkyvernRunTrigger:
    trigger = SkyvernRunTrigger(run_id="tsk_v2_1", deadline=time.time() + 60, poll_interval=0.001, **kwargs)
    trigger.task_instance = SimpleNamespace(  # type: ignore[assignment]
        dag_id="nightly", task_id="extract", run_id="manual__1", map_index=-1
    )
    return trigger


@pytest.mark.parametrize("state", ["failed", "success", None, "scheduled", "running"])
@respx.mock(base_url=BASE_URL, assert_all_called=False)
async def test_on_kill_cancels_when_the_task_no_longer_waits(
    respx_mock: respx.MockRouter, ti_state: list[Any], state: str | None
) -> None:
    """Marked failed/success, or cleared (state none, or already the next try)."""
    ti_state[0] = state
    cancel = respx_mock.post(f"{RUN}/cancel").respond(200, json=None)
    await watched_trigger().on_kill()
    assert cancel.call_count == 1
    assert cancel.calls.last.request.headers["x-api-key"] == API_KEY


@pytest.mark.parametrize("pushed", ["tsk_v2_1", None, RuntimeError("API server unreachable")])
@respx.mock(base_url=BASE_URL, assert_all_called=False)
async def test_a_trigger_moved_to_another_triggerer_does_not_cancel(
    respx_mock: respx.MockRouter,
    ti_state: list[Any],
    pushed_run_id: list[Any],
    capsys: pytest.CaptureFixture[str],
    pushed: Any,
) -> None:
    """Issue 7, 7: Airflow 3.3 calls on_kill on reassignment too; the task is still deferred then, on this
    trigger's run (or which run cannot be told: do_xcom_push=False, an unreadable XCom): never cancel."""
    ti_state[0] = "deferred"
    pushed_run_id[0] = pushed
    cancel = respx_mock.post(f"{RUN}/cancel").respond(200, json=None)
    await watched_trigger().on_kill()
    assert cancel.call_count == 0
    assert "stopped while its task is still deferred" in capsys.readouterr().out


@respx.mock(base_url=BASE_URL, assert_all_called=False)
async def test_a_trigger_whose_task_a_later_try_deferred_on_another_run_cancels_its_run(
    respx_mock: respx.MockRouter,
    ti_state: list[Any],
    pushed_run_id: list[Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 17 row 10: a clear while deferred with reattach=False; try 2 started its own run and deferred
    within a second, so the old trigger's on_kill sees the task deferred — on another run."""
    ti_state[0] = "deferred"
    pushed_run_id[0] = "tsk_v2_2"
    respx_mock.get(RUN).respond(200, json=task_run("tsk_v2_1", "running"))
    cancel = respx_mock.post(f"{RUN}/cancel").respond(200, json=None)
    await watched_trigger().on_kill()
    assert cancel.call_count == 1
    assert (
        "Task is deferred again, by a later try waiting for Skyvern run tsk_v2_2: nobody waits for run "
        "tsk_v2_1 any more, canceling it" in capsys.readouterr().out
    )


@respx.mock(base_url=BASE_URL, assert_all_called=False)
async def test_an_unknown_task_state_does_not_cancel_and_says_so(
    respx_mock: respx.MockRouter, ti_state: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    ti_state[0] = RuntimeError("API server unreachable")
    cancel = respx_mock.post(f"{RUN}/cancel").respond(200, json=None)
    await watched_trigger().on_kill()
    assert cancel.call_count == 0
    assert "could not be read: not canceling the run" in capsys.readouterr().out


@respx.mock(base_url=BASE_URL, assert_all_called=False)
async def test_cancel_on_kill_false_never_cancels(respx_mock: respx.MockRouter, ti_state: list[Any]) -> None:
    cancel = respx_mock.post(f"{RUN}/cancel").respond(200, json=None)
    await watched_trigger(cancel_on_kill=False).on_kill()
    assert cancel.call_count == 0


@respx.mock(base_url=BASE_URL, assert_all_called=False)
async def test_on_kill_failure_is_logged_not_raised(
    respx_mock: respx.MockRouter, ti_state: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    respx_mock.post(f"{RUN}/cancel").respond(400, json={"detail": "Run tsk_v2_1 is already completed"})
    await watched_trigger().on_kill()
    assert "Could not cancel Skyvern run tsk_v2_1" in capsys.readouterr().out


@pytest.mark.parametrize(("state", "cancels"), [("failed", 1), ("deferred", 0)])
@respx.mock(base_url=BASE_URL, assert_all_called=False)
async def test_before_airflow_3_3_a_cancelled_trigger_cancels_only_an_abandoned_run(
    respx_mock: respx.MockRouter,
    ti_state: list[Any],
    monkeypatch: pytest.MonkeyPatch,
    state: str,
    cancels: int,
) -> None:
    """No on_kill before 3.3: the cancellation of run() is all the trigger is told."""
    monkeypatch.setattr("airflow_provider_skyvern.triggers.skyvern.AIRFLOW_V_3_3_PLUS", False)
    ti_state[0] = state
    respx_mock.get(RUN).respond(200, json=task_run("tsk_v2_1", "running"))
    cancel = respx_mock.post(f"{RUN}/cancel").respond(200, json=None)
    task = asyncio.ensure_future(events_of(watched_trigger()))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancel.call_count == cancels


@respx.mock(base_url=BASE_URL)
async def test_one_async_client_serves_the_whole_wait(
    respx_mock: respx.MockRouter, async_clients_made: list[httpx.AsyncClient]
) -> None:
    created = async_clients_made
    respx_mock.get(RUN).mock(
        side_effect=[
            httpx.Response(200, json=task_run("tsk_v2_1", "running", step_count=n)) for n in range(1, 6)
        ]
        + [httpx.Response(200, json=task_run("tsk_v2_1", "completed"))]
    )
    await events_of(make_trigger())
    assert len(created) == 1
    assert created[0].is_closed


# ---- every exception ends the wait with an error event (issue 8, item 10) ---------------------------


async def test_a_deleted_connection_becomes_an_error_event(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_SKYVERN_DEFAULT")
    (event,) = await events_of(make_trigger())
    assert event["kind"] == "error"
    assert event["message"].startswith(
        "AirflowNotFoundException: The conn_id `skyvern_default` isn't defined"
    )


async def test_an_invalid_base_url_becomes_an_error_event(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, host="http://exa\x01mple.com")
    (event,) = await events_of(make_trigger())
    assert event["kind"] == "error"
    assert event["message"].startswith("InvalidURL: ")


@respx.mock(base_url=BASE_URL, assert_all_called=False)
async def test_on_kill_never_cancels_a_run_that_already_ended(
    respx_mock: respx.MockRouter, ti_state: list[Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 17 row 8 in the trigger: a cancel of a finished workflow run revokes its last attempt and sends its
    webhook again on Skyvern 1.0.56."""
    respx_mock.get(RUN).respond(200, json=task_run("tsk_v2_1", "completed"))
    cancel = respx_mock.post(f"{RUN}/cancel").respond(200, json=None)
    await watched_trigger().on_kill()
    assert cancel.call_count == 0
    assert "Skyvern run tsk_v2_1 had already ended completed: not canceling it" in capsys.readouterr().out


def test_on_kill_fits_inside_the_triggerers_on_kill_timeout() -> None:
    """Issue 18 row 11: a state read plus a cancel of 20 s each overran Airflow's 30 s default."""
    from airflow_provider_skyvern.compat import conf
    from airflow_provider_skyvern.triggers.skyvern import ON_KILL_BUDGET, TI_STATE_TIMEOUT

    assert TI_STATE_TIMEOUT < ON_KILL_BUDGET < conf.getint("triggerer", "on_kill_timeout", fallback=30)


@respx.mock(base_url=BASE_URL, assert_all_called=False)
async def test_on_kill_gives_up_at_its_budget_when_skyvern_hangs(
    respx_mock: respx.MockRouter, ti_state: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_skyvern.triggers import skyvern as trigger_module

    async def hang(_: Any) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200)

    respx_mock.get(RUN).mock(side_effect=hang)
    respx_mock.post(f"{RUN}/cancel").mock(side_effect=hang)
    monkeypatch.setattr(trigger_module, "ON_KILL_BUDGET", 1.0)
    started = time.monotonic()
    await watched_trigger().on_kill()
    assert time.monotonic() - started < 1.5

"""SkyvernRunSensor: parse-time checks, poke/reschedule/deferrable waits, what statuses mean, the XComs,
the trigger ending the task itself, start_from_trigger, and never canceling a run unless asked."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import respx
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_skyvern.compat import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
)
from airflow_provider_skyvern.runs.events import RunEvent
from airflow_provider_skyvern.sensors.skyvern import SkyvernRunSensor
from airflow_provider_skyvern.triggers.skyvern import SkyvernRunTrigger
from airflow_provider_skyvern.version_compat import AIRFLOW_V_3_3_PLUS
from tests.conftest import API_KEY, FastClock
from tests.operator_support import make_context
from tests.payloads import task_run, workflow_run

pytestmark = pytest.mark.usefixtures("skyvern_conn", "no_waits")
OUTPUT = {"extract_output": {"total": 42}, "extracted_information": [{"total": 42}]}
RUN = "/v1/runs/wr_1"


@pytest.fixture
def no_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    FastClock(monkeypatch)


def sensor(**kwargs: Any) -> SkyvernRunSensor:
    kwargs.setdefault("run_id", "wr_1")
    kwargs.setdefault("deferrable", False)
    kwargs.setdefault("poke_interval", 0)
    return SkyvernRunSensor(task_id="wait", **kwargs)


def done(status: str = "completed", **fields: Any) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "output": OUTPUT,
        "step_count": 4,
        "attempt": 1,
        "retry_pending": False,
        "recording_url": "https://files.example.com/rec.webm?sig=1",
        "downloaded_files": [{"url": "https://files.example.com/r.pdf", "filename": "r.pdf", "file_size": 9}],
    }
    return workflow_run("wr_1", status, **{**defaults, **fields})


def answers(*bodies: dict[str, Any]) -> list[httpx.Response]:
    return [httpx.Response(200, json=body) for body in bodies]


# ---- parse time ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"success_statuses": ["running"]}, "success_statuses: 'running' is not a final Skyvern status"),
        ({"skip_statuses": "canceled"}, "skip_statuses: must be a list of statuses"),
        ({"success_statuses": []}, "success_statuses: must name at least one final status"),
        (
            {"success_statuses": ["completed", "canceled"], "skip_statuses": ["canceled"]},
            "skip_statuses: 'canceled' is also in success_statuses",
        ),
        ({"run_id": ""}, "run_id: must be a Skyvern run id"),
        ({"start_from_trigger": True}, "start_from_trigger: needs deferrable=True"),
    ],
)
def test_bad_arguments_fail_the_dag_parse_naming_the_field(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=r"^SkyvernRunSensor\(task_id='wait'\) ") as raised:
        sensor(**kwargs)
    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_templated_run_id_is_checked_once_rendered(skyvern: respx.MockRouter) -> None:
    waiting = sensor(run_id="{{ ti.xcom_pull(task_ids='start') }}")
    waiting.run_id = ""  # what the template rendered to: the upstream pushed nothing
    with pytest.raises(AirflowFailException, match=r"run_id: must be a Skyvern run id.*after rendering"):
        waiting.execute(make_context())
    assert not skyvern.calls


# ---- poke and reschedule ------------------------------------------------------------------------------


def test_poke_mode_waits_through_a_retry_pending_failure_and_pushes_the_operators_xcoms(
    skyvern: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    pending = done("failed", retry_pending=True, failure_reason="attempt 1: portal 503")
    polls = skyvern.get(RUN).mock(
        side_effect=answers(workflow_run("wr_1", "running", step_count=1), pending, done(attempt=2))
    )
    context = make_context()
    returned = sensor().execute(context)

    statuses = [json.loads(call.response.content)["status"] for call in polls.calls]
    assert statuses == ["running", "failed", "completed"]  # the poke's own read is fresh: none repeated
    assert returned == OUTPUT
    xcoms = context["ti"].xcoms
    assert xcoms["run_id"] == "wr_1"
    assert xcoms["app_url"] == "https://app.skyvern.com/runs/wr_1"
    assert (xcoms["status"], xcoms["attempt"], xcoms["step_count"]) == ("completed", 2, 4)
    assert xcoms["block_outputs"] == {"extract": {"total": 42}}
    assert xcoms["downloaded_files"] == [
        {"url": "https://files.example.com/r.pdf", "filename": "r.pdf", "checksum": None, "size": 9}
    ]
    out = capsys.readouterr().out
    assert "Skyvern run wr_1: running (step 1)" in out
    assert "Skyvern retries the workflow" in out
    assert "Skyvern run wr_1 ended completed: the sensor succeeds" in out
    assert [c.request.method for c in skyvern.calls if "cancel" in c.request.url.path] == []


def test_a_task_run_gets_the_task_xcoms_without_block_outputs(skyvern: respx.MockRouter) -> None:
    skyvern.get("/v1/runs/tsk_v2_9").respond(200, json=task_run("tsk_v2_9", "completed", output=[1]))
    context = make_context()
    assert sensor(run_id="tsk_v2_9").execute(context) == [1]
    assert "block_outputs" not in context["ti"].xcoms
    assert context["ti"].xcoms["status"] == "completed"


def test_a_failed_run_fails_the_sensor_with_skyverns_reason_and_no_retry(skyvern: respx.MockRouter) -> None:
    skyvern.get(RUN).respond(
        200, json=done("failed", failure_reason="Login failed.\nTraceback ...", output=None)
    )
    context = make_context()
    with pytest.raises(AirflowFailException) as raised:
        sensor().execute(context)
    assert str(raised.value) == "Skyvern run wr_1 ended failed: Login failed. (full reason in the task log)"
    assert context["ti"].xcoms["failure_reason"] == "Login failed.\nTraceback ..."  # pushed before failing


def test_soft_fail_skips_a_failed_run(skyvern: respx.MockRouter) -> None:
    skyvern.get(RUN).respond(200, json=done("terminated", failure_reason="stopped"))
    with pytest.raises(AirflowSkipException):
        sensor(soft_fail=True).execute(make_context())


@pytest.mark.parametrize("flag", ["soft_fail", "never_fail"])
@pytest.mark.parametrize("deferrable", [False, True])
def test_soft_fail_and_never_fail_skip_a_run_that_ended_badly_before_the_first_look_in_every_mode(
    skyvern: respx.MockRouter, flag: str, deferrable: bool
) -> None:
    skyvern.get(RUN).respond(200, json=done("failed", failure_reason="Login failed.", output=None))
    with pytest.raises(AirflowSkipException) as skipped:
        sensor(deferrable=deferrable, **{flag: True}).execute(make_context())
    if deferrable:  # poke mode says what Airflow's sensor says; this path adds the reason
        assert str(skipped.value) == f"Skyvern run wr_1 ended failed: Login failed.; skipped ({flag}=True)"


@pytest.mark.parametrize("flag", ["soft_fail", "never_fail"])
def test_soft_fail_and_never_fail_skip_a_deferrable_sensor_whose_first_look_failed(
    skyvern: respx.MockRouter, flag: str
) -> None:
    skyvern.get(RUN).respond(404, json={"detail": "Run not found wr_1"})
    with pytest.raises(
        AirflowSkipException, match=rf"Could not read Skyvern run wr_1: .*; skipped \({flag}=True\)$"
    ):
        sensor(deferrable=True, **{flag: True}).execute(make_context())
    with pytest.raises(AirflowSkipException):  # as poke mode does
        sensor(**{flag: True}).execute(make_context())


def test_skip_and_success_statuses_say_what_other_final_statuses_mean(skyvern: respx.MockRouter) -> None:
    skyvern.get(RUN).respond(200, json=done("canceled"))
    with pytest.raises(AirflowSkipException, match="ended canceled, one of skip_statuses"):
        sensor(skip_statuses=["canceled"]).execute(make_context())
    assert sensor(success_statuses=["completed", "canceled"]).execute(make_context()) == OUTPUT


def test_an_unknown_run_fails_at_once_naming_it(skyvern: respx.MockRouter) -> None:
    skyvern.get(RUN).respond(404, json={"detail": "Run not found wr_1"})
    with pytest.raises(AirflowFailException, match=r"Could not read Skyvern run wr_1: .*404.*Run not found"):
        sensor().execute(make_context())


def test_a_transient_error_is_waited_out(skyvern: respx.MockRouter) -> None:
    skyvern.get(RUN).mock(side_effect=[httpx.Response(503), httpx.Response(503), *answers(done(), done())])
    assert sensor().execute(make_context()) == OUTPUT


def test_poke_timeout_leaves_the_run_going_unless_asked(skyvern: respx.MockRouter) -> None:
    skyvern.get(RUN).respond(200, json=workflow_run("wr_1", "running", step_count=3))
    cancel = skyvern.post(f"{RUN}/cancel").respond(200, json=None)
    with pytest.raises(AirflowSensorTimeout) as raised:
        sensor(timeout=1).execute(make_context())
    assert str(raised.value) == (
        "Skyvern run wr_1 did not end within timeout=1s (last status running); it is left going"
    )
    assert not cancel.called

    with pytest.raises(AirflowSensorTimeout, match="it was canceled"):
        sensor(timeout=1, cancel_on_timeout=True).execute(make_context())
    assert cancel.call_count == 1


def test_poke_timeout_with_soft_fail_skips(skyvern: respx.MockRouter) -> None:
    skyvern.get(RUN).respond(200, json=workflow_run("wr_1", "queued"))
    with pytest.raises(AirflowSkipException):
        sensor(timeout=1, soft_fail=True).execute(make_context())


def test_reschedule_mode_frees_the_slot_between_pokes(skyvern: respx.MockRouter) -> None:
    from airflow.exceptions import AirflowRescheduleException

    skyvern.get(RUN).respond(200, json=workflow_run("wr_1", "running"))
    context = make_context()
    context["ti"].get_first_reschedule_date = lambda _: None
    with pytest.raises(AirflowRescheduleException):
        sensor(mode="reschedule", poke_interval=60).execute(context)
    assert len(skyvern.calls) == 1


def test_on_kill_cancels_only_when_asked(skyvern: respx.MockRouter) -> None:
    skyvern.get(RUN).respond(200, json=workflow_run("wr_1", "running"))
    cancel = skyvern.post(f"{RUN}/cancel").respond(200, json=None)
    for asked in (False, True):
        poking = sensor(cancel_on_kill=asked, deferrable=False)
        assert poking.poke({}) is False
        poking.on_kill()
    assert cancel.call_count == 1


def test_on_kill_before_any_look_or_after_the_run_ended_cancels_nothing(skyvern: respx.MockRouter) -> None:
    """Issue 18 row 10: before the first look nothing is known (and resolving the connection inside the
    SIGTERM handler can block until SIGKILL); a run seen final is never canceled."""
    lookup = skyvern.get(RUN).respond(200, json=workflow_run("wr_1", "completed", output={"x": 1}))
    cancel = skyvern.post(f"{RUN}/cancel").respond(200, json=None)
    sensor(cancel_on_kill=True).on_kill()
    assert lookup.call_count == 0
    ended = sensor(cancel_on_kill=True, deferrable=False)
    ended.poke(make_context())
    ended.on_kill()
    assert cancel.call_count == 0


def test_reschedule_mode_refuses_cancel_on_kill_it_could_not_honour() -> None:
    """Issue 18 row 10: between two looks no process exists, so nothing could cancel the run."""
    with pytest.raises(
        ValueError, match=r"^SkyvernRunSensor\(task_id='wait'\) cancel_on_kill: needs a process"
    ):
        sensor(cancel_on_kill=True, deferrable=False, mode="reschedule")


# ---- deferrable ---------------------------------------------------------------------------------------


def test_deferrable_looks_once_then_defers_to_a_trigger_that_never_cancels(skyvern: respx.MockRouter) -> None:
    skyvern.get(RUN).respond(200, json=workflow_run("wr_1", "running"))
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        sensor(deferrable=True, timeout=600, poke_interval=20).execute(make_context())
    trigger = deferred.value.trigger
    _, kwargs = trigger.serialize()
    assert kwargs["run_id"] == "wr_1"
    assert kwargs["cancel_on_kill"] is False
    assert kwargs["succeed_on"] == []  # the XComs come from a worker
    assert kwargs["poll_interval"] == 20
    assert before + 600 <= kwargs["deadline"] <= time.time() + 600
    assert kwargs["limit"] == "timeout=600s"
    assert deferred.value.timeout == timedelta(seconds=660)  # the scheduler's backstop comes after
    assert API_KEY not in repr(kwargs)


def test_with_do_xcom_push_false_the_trigger_ends_a_completed_run_itself(skyvern: respx.MockRouter) -> None:
    skyvern.get(RUN).respond(200, json=workflow_run("wr_1", "running"))
    with pytest.raises(TaskDeferred) as deferred:
        sensor(deferrable=True, do_xcom_push=False, success_statuses=["completed", "canceled"]).execute(
            make_context()
        )
    assert deferred.value.trigger.serialize()[1]["succeed_on"] == ["canceled", "completed"]


def test_deferrable_finishes_at_once_when_the_run_already_ended(skyvern: respx.MockRouter) -> None:
    skyvern.get(RUN).respond(200, json=done())
    assert sensor(deferrable=True).execute(make_context()) == OUTPUT


def test_a_deadline_event_times_out_and_cancels_only_when_asked(skyvern: respx.MockRouter) -> None:
    cancel = skyvern.post(f"{RUN}/cancel").respond(200, json=None)
    event = RunEvent("deadline", "wr_1", "running", 3, None, "timeout=600s").to_payload()
    with pytest.raises(AirflowSensorTimeout, match=r"did not end within timeout=600s .*it is left going"):
        sensor(deferrable=True, timeout=600).execute_complete(make_context(), event)
    assert not cancel.called
    with pytest.raises(AirflowSkipException):  # resume_execution applies soft_fail, as for any sensor
        sensor(deferrable=True, soft_fail=True).resume_execution("execute_complete", {"event": event}, {})
    with pytest.raises(AirflowSensorTimeout, match="it was canceled"):
        sensor(deferrable=True, timeout=600, cancel_on_timeout=True).execute_complete(make_context(), event)
    assert cancel.call_count == 1


def test_airflows_own_deferral_timeout_cancels_only_when_asked(skyvern: respx.MockRouter) -> None:
    cancel = skyvern.post(f"{RUN}/cancel").respond(200, json=None)
    for asked in (False, True):
        with pytest.raises(AirflowSensorTimeout):
            sensor(deferrable=True, cancel_on_timeout=asked).resume_execution(
                "__fail__", {"error": "Trigger timeout"}, make_context()
            )
    assert cancel.call_count == 1


def test_an_error_event_fails_the_try_and_leaves_the_run_going(skyvern: respx.MockRouter) -> None:
    cancel = skyvern.post(f"{RUN}/cancel").respond(200, json=None)
    event = RunEvent("error", "wr_1", None, None, "HTTP 403: bad key").to_payload()
    with pytest.raises(AirflowException, match=r"Stopped waiting for Skyvern run wr_1: HTTP 403.*left going"):
        sensor(deferrable=True, cancel_on_kill=True).execute_complete(make_context(), event)
    assert not cancel.called


def test_a_terminal_event_reads_the_run_and_pushes_its_xcoms(skyvern: respx.MockRouter) -> None:
    skyvern.get(RUN).respond(200, json=done("failed", failure_reason="No table"))
    event = RunEvent("terminal", "wr_1", "failed", 4).to_payload()
    context = make_context()
    with pytest.raises(AirflowFailException, match="ended failed: No table"):
        sensor(deferrable=True).execute_complete(context, event)
    assert context["ti"].xcoms["status"] == "failed"


@pytest.mark.parametrize("kind", ["terminal", "deadline", "error"])
def test_an_earlier_triggers_event_about_another_run_waits_again_until_the_same_deadline(
    skyvern: respx.MockRouter, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A clear while deferred (SQLite reuses the deleted trigger's id): the old trigger's event reaches this
    try; it must neither fail the sensor nor end it on another run's status, nor cancel anything."""
    reads = skyvern.get(RUN).respond(200, json=workflow_run("wr_1", "running"))
    cancels = skyvern.post("/v1/runs/wr_2/cancel").respond(200, json={})
    event = RunEvent(kind, "wr_2", "completed" if kind == "terminal" else None).to_payload()  # type: ignore[arg-type]
    deadline = time.time() + 120
    with pytest.raises(TaskDeferred) as deferred:
        sensor(deferrable=True, timeout=600, cancel_on_timeout=True).execute_complete(
            make_context(), event, deadline=deadline
        )
    trigger = deferred.value.trigger
    assert isinstance(trigger, SkyvernRunTrigger)
    assert (trigger.run_id, trigger.deadline) == ("wr_1", deadline)
    assert deferred.value.kwargs == {"deadline": deadline}
    assert deferred.value.timeout is not None
    assert deferred.value.timeout <= timedelta(seconds=120 + 60)
    log = capsys.readouterr().out
    assert "Event about Skyvern run wr_2 (" in log
    assert "this try waits for run wr_1: waiting for it again" in log
    assert (reads.call_count, cancels.call_count) == (0, 0)


def test_the_deferral_carries_its_deadline_to_execute_complete(skyvern: respx.MockRouter) -> None:
    skyvern.get(RUN).respond(200, json=workflow_run("wr_1", "running"))
    with pytest.raises(TaskDeferred) as deferred:
        sensor(deferrable=True, timeout=600).execute(make_context())
    trigger = deferred.value.trigger
    assert isinstance(trigger, SkyvernRunTrigger)
    assert deferred.value.kwargs == {"deadline": trigger.deadline}


# ---- the trigger ends the task itself ------------------------------------------------------------------


def in_triggerer(trigger: SkyvernRunTrigger) -> SkyvernRunTrigger:
    trigger.task_instance = SimpleNamespace(  # type: ignore[assignment]
        dag_id="nightly", task_id="wait", run_id="manual__1", map_index=-1
    )
    return trigger


def test_in_the_triggerer_a_completed_run_ends_the_task_pushing_only_the_link(
    skyvern: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    from airflow.triggers.base import TaskSuccessEvent

    skyvern.get(RUN).mock(side_effect=answers(workflow_run("wr_1", "running"), done()))
    trigger = in_triggerer(
        SkyvernRunTrigger("wr_1", time.time() + 60, 0.001, cancel_on_kill=False, succeed_on=["completed"])
    )
    (event,) = asyncio.run(_events(trigger))
    assert isinstance(event, TaskSuccessEvent)
    assert event.xcoms == {"_link_SkyvernRunLink": "https://app.skyvern.com/runs/wr_1"}
    assert any(c.request.url.path == f"{RUN}/timeline" for c in skyvern.calls)  # the story, in its log
    assert "Skyvern run wr_1 ended completed: the sensor succeeds" in capsys.readouterr().out


def test_other_final_statuses_and_dag_test_resume_the_task_instead(skyvern: respx.MockRouter) -> None:
    skyvern.get(RUN).respond(200, json=done("failed"))
    trigger = in_triggerer(SkyvernRunTrigger("wr_1", time.time() + 60, succeed_on=["completed"]))
    (event,) = asyncio.run(_events(trigger))
    assert event.payload["kind"] == "terminal"
    assert event.payload["run_status"] == "failed"

    skyvern.get(RUN).respond(200, json=done())
    no_ti = SkyvernRunTrigger(
        "wr_1", time.time() + 60, succeed_on=["completed"]
    )  # dag.test(): no task instance
    (event,) = asyncio.run(_events(no_ti))
    assert event.payload["kind"] == "terminal"


def test_without_a_deadline_the_trigger_ends_at_the_deferral_timeout(skyvern: respx.MockRouter) -> None:
    from datetime import datetime, timezone

    skyvern.get(RUN).respond(200, json=workflow_run("wr_1", "running"))
    trigger = SkyvernRunTrigger("wr_1", None, 0.001, limit="timeout=1s")
    trigger.timeout_after = datetime.now(timezone.utc) + timedelta(seconds=0.3)  # set by the triggerer
    (event,) = asyncio.run(_events(trigger))
    assert event.payload["kind"] == "deadline"
    assert event.payload["run_status"] == "running"


async def _events(trigger: SkyvernRunTrigger) -> list[Any]:
    return [event async for event in trigger.run()]


# ---- start_from_trigger -------------------------------------------------------------------------------


def test_start_from_trigger_builds_the_trigger_kwargs_the_scheduler_stores() -> None:
    waiting = sensor(deferrable=True, start_from_trigger=True, timeout=900, poke_interval=15)
    args = waiting.start_trigger_args
    assert args is not None
    assert waiting.start_from_trigger is True
    assert args.trigger_cls == "airflow_provider_skyvern.triggers.skyvern.SkyvernRunTrigger"
    assert args.next_method == "execute_complete"
    assert args.timeout == timedelta(seconds=900)
    assert args.trigger_kwargs == {
        "run_id": "wr_1",
        "deadline": None,
        "poll_interval": 15,
        "skyvern_conn_id": "skyvern_default",
        "cancel_on_kill": False,
        "limit": "timeout=900s",
        "succeed_on": [],
    }
    assert SkyvernRunTrigger(**args.trigger_kwargs).serialize()[1]["run_id"] == "wr_1"
    assert SkyvernRunSensor.start_trigger_args is None  # the class default is left alone


def test_start_from_trigger_turns_an_upstream_output_into_a_template_and_keeps_the_dependency() -> None:
    from airflow.sdk import DAG

    from airflow_provider_skyvern.operators.task import SkyvernRunTaskOperator

    with DAG("start_now_wait_later", schedule=None):
        start = SkyvernRunTaskOperator(task_id="start", prompt="p", wait_for_completion=False)
        waiting = SkyvernRunSensor(
            task_id="wait", run_id=start.output, deferrable=True, start_from_trigger=True
        )
    assert waiting.upstream_task_ids == {"start"}
    if AIRFLOW_V_3_3_PLUS:
        assert waiting.start_from_trigger is True
        run_id = waiting.start_trigger_args.trigger_kwargs["run_id"]  # type: ignore[index]
        assert run_id == "{{ ti.xcom_pull(task_ids='start', key='return_value', map_indexes=-1) }}"
    else:  # the triggerer renders no templates before 3.3: the sensor defers from a worker
        assert waiting.start_from_trigger is False


def test_start_from_trigger_refuses_an_xcom_pull_the_triggerer_cannot_serve() -> None:
    with pytest.raises(
        ValueError, match=r"run_id: with start_from_trigger, an xcom_pull needs map_indexes=-1"
    ):
        sensor(run_id="{{ ti.xcom_pull(task_ids='start') }}", deferrable=True, start_from_trigger=True)
    waiting = sensor(
        run_id="{{ ti.xcom_pull(task_ids='start', map_indexes=-1) }}",
        deferrable=True,
        start_from_trigger=True,
    )
    assert waiting.start_from_trigger is AIRFLOW_V_3_3_PLUS

"""SkyvernRunTaskOperator: submit once, persist at once, reattach, defer, complete fail-closed, cancel."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from email.utils import formatdate
from typing import Any

import httpx
import pytest
import respx
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_skyvern.compat import AirflowFailException
from airflow_provider_skyvern.exceptions import SkyvernError
from airflow_provider_skyvern.hooks.skyvern import SkyvernHook
from airflow_provider_skyvern.operators.task import SkyvernRunFailedError, SkyvernRunTaskOperator
from airflow_provider_skyvern.runs.ledger import STATE_KEY, run_tag
from airflow_provider_skyvern.runs.usage import USAGE_KEY
from airflow_provider_skyvern.triggers.skyvern import SkyvernRunTrigger
from airflow_provider_skyvern.version_compat import AIRFLOW_V_3_1_PLUS
from tests.conftest import API_KEY, FastClock
from tests.operator_support import FakeStateStore, FakeTaskInstance, make_context
from tests.payloads import run_list_item, task_run

pytestmark = pytest.mark.usefixtures("skyvern_conn", "no_waits")
TAG = run_tag(make_context())
SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "price": {"type": "number"}},
        "required": ["name"],
    },
}
OUTPUT = [{"name": "Widget A", "price": 29.99}]


@pytest.fixture
def no_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    FastClock(monkeypatch)


def operator(**kwargs: Any) -> SkyvernRunTaskOperator:
    kwargs.setdefault("prompt", "Extract the top 3 products")
    kwargs.setdefault("url", "https://example.com/products")
    kwargs.setdefault("deferrable", True)
    return SkyvernRunTaskOperator(task_id="extract", **kwargs)


def completed(run_id: str = "tsk_v2_1", **fields: Any) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "output": OUTPUT,
        "step_count": 4,
        "recording_url": "https://files.example.com/rec.webm?sig=fresh",
        "screenshot_urls": ["https://files.example.com/s2.png", "https://files.example.com/s1.png"],
        "downloaded_files": [
            {
                "url": "https://files.example.com/invoice.pdf",
                "filename": "invoice.pdf",
                "checksum": "ab12",
                "file_size": 2048,
            }
        ],
    }
    return task_run(run_id, "completed", **{**defaults, **fields})


def posted(route: respx.Route) -> Any:
    return json.loads(route.calls.last.request.content)


# ---- submit and defer ------------------------------------------------------------------------------


def test_every_parameter_reaches_the_wire_and_the_task_defers(skyvern: respx.MockRouter) -> None:
    post = skyvern.post("/v1/run/tasks").respond(200, json=task_run("tsk_v2_1", "created"))
    op = operator(
        engine="skyvern_v2",
        max_steps=12,
        data_extraction_schema=SCHEMA,
        proxy_location="RESIDENTIAL_GB",
        browser_session_id="pbs_9",
        publish_workflow=True,
        webhook_url="https://hooks.example.com/done",
        error_code_mapping={"NO_STOCK": "Out of stock"},
        totp_identifier="ops@example.com",
        totp_url="https://totp.example.com",
        title="Nightly products",
        model={"name": "gpt-4.1"},
        user_agent="airflow-nightly",
        extra_http_headers={"Accept-Language": "en-GB"},
        include_action_history_in_verification=True,
        max_screenshot_scrolls=2,
        browser_address="ws://127.0.0.1:9222",
        run_with="agent",
        timeout=600,
        poll_interval=15,
    )
    context = make_context(FakeStateStore())

    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)

    assert post.call_count == 1
    assert post.calls.last.request.headers["x-user-agent"] == "airflow-nightly"
    assert posted(post) == {
        "prompt": "Extract the top 3 products",
        "url": "https://example.com/products",
        "engine": "skyvern-2.0",
        "max_steps": 12,
        "data_extraction_schema": SCHEMA,
        "proxy_location": "RESIDENTIAL_GB",
        "browser_session_id": "pbs_9",
        "publish_workflow": True,
        "webhook_url": "https://hooks.example.com/done",
        "error_code_mapping": {"NO_STOCK": "Out of stock"},
        "totp_identifier": "ops@example.com",
        "totp_url": "https://totp.example.com",
        "title": f"Nightly products [{TAG}]",
        "model": {"name": "gpt-4.1"},
        "extra_http_headers": {"Accept-Language": "en-GB"},
        "include_action_history_in_verification": True,
        "max_screenshot_scrolls": 2,
        "browser_address": "ws://127.0.0.1:9222",
        "run_with": "agent",
    }
    trigger = deferred.value.trigger
    assert isinstance(trigger, SkyvernRunTrigger)
    assert (trigger.run_id, trigger.poll_interval, trigger.skyvern_conn_id) == (
        "tsk_v2_1",
        15.0,
        "skyvern_default",
    )
    assert time.time() + 590 < trigger.deadline <= time.time() + 600
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout is None
    ti = context["ti"]
    assert ti.xcoms == {"run_id": "tsk_v2_1", "app_url": "https://app.skyvern.com/runs/tsk_v2_1"}
    assert context["task_state_store"].values[STATE_KEY]["run_id"] == "tsk_v2_1"
    assert API_KEY not in repr(trigger.serialize())


def test_a_geo_target_goes_out_normalised_as_skyvern_keeps_it(skyvern: respx.MockRouter) -> None:
    post = skyvern.post("/v1/run/tasks").respond(200, json=task_run("tsk_v2_1", "created"))
    op = operator(proxy_location={"country": "us", "subdivision": "us-ca", "city": "San Jose", "isISP": True})

    with pytest.raises(TaskDeferred):
        op.execute(make_context(FakeStateStore()))

    assert posted(post)["proxy_location"] == {
        "country": "US",
        "subdivision": "CA",
        "city": "San Jose",
        "isISP": True,
    }


def test_default_title_is_tagged_and_reattach_false_leaves_the_request_alone(
    skyvern: respx.MockRouter,
) -> None:
    post = skyvern.post("/v1/run/tasks").respond(200, json=task_run("tsk_v2_1", "created"))
    with pytest.raises(TaskDeferred):
        operator().execute(make_context())
    assert posted(post)["title"] == f"nightly.extract [{TAG}]"

    list_route = skyvern.get("/v1/runs")
    calls_before = list_route.call_count
    with pytest.raises(TaskDeferred):
        operator(reattach=False).execute(make_context())
    assert "title" not in posted(post)
    assert list_route.call_count == calls_before


def test_templated_values_are_checked_after_rendering(skyvern: respx.MockRouter) -> None:
    op = operator(url="{{ params.url }}")
    op.url = "not a url"  # what rendering produced
    with pytest.raises(
        AirflowFailException, match=r"url: 'not a url' is not a URL.*\(after rendering templates\)"
    ):
        op.execute(make_context())


def test_wait_for_completion_false_returns_the_run_id(skyvern: respx.MockRouter) -> None:
    skyvern.post("/v1/run/tasks").respond(200, json=task_run("tsk_v2_1", "queued"))
    context = make_context()
    assert operator(wait_for_completion=False).execute(context) == "tsk_v2_1"
    assert context["ti"].xcoms["run_id"] == "tsk_v2_1"


# ---- execute_complete ------------------------------------------------------------------------------


def event(kind: str, status: str | None = None, message: str | None = None) -> dict[str, Any]:
    return {"kind": kind, "run_id": "tsk_v2_1", "run_status": status, "step_count": 4, "message": message}


def recorded(run_id: str = "tsk_v2_1", **kwargs: Any) -> dict[str, Any]:
    """The record an earlier ``execute`` of ``operator(**kwargs)`` left after submitting ``run_id``."""
    submission = operator(**kwargs)._run_kind().submission(run_tag(make_context()))
    return submission.at("submitted", run_id=run_id).model_dump(mode="json")


def deferred_context(store: FakeStateStore | None = None) -> dict[str, Any]:
    context = make_context(store or FakeStateStore(**{STATE_KEY: recorded()}))
    context["ti"].xcom_push("run_id", "tsk_v2_1")
    return context


def test_completed_run_returns_output_and_pushes_fresh_artifact_urls(skyvern: respx.MockRouter) -> None:
    final = skyvern.get("/v1/runs/tsk_v2_1").respond(200, json=completed())
    context = deferred_context()

    result = operator(data_extraction_schema=SCHEMA).execute_complete(context, event("terminal", "completed"))

    assert result == OUTPUT
    assert final.call_count == 1
    expected: dict[str, Any] = {
        "run_id": "tsk_v2_1",
        "status": "completed",
        "recording_url": "https://files.example.com/rec.webm?sig=fresh",
        "screenshot_urls": ["https://files.example.com/s2.png", "https://files.example.com/s1.png"],
        "downloaded_files": [
            {
                "url": "https://files.example.com/invoice.pdf",
                "filename": "invoice.pdf",
                "checksum": "ab12",
                "size": 2048,
            }
        ],
        "step_count": 4,
        "failure_reason": None,
        "usage": {"steps": 4, "runs": 1, "tries": 1, "replayed_as_code": 0},
    }
    if not AIRFLOW_V_3_1_PLUS:  # Airflow 3.0 cannot store a None XCom: none is pushed
        del expected["failure_reason"]
    assert context["ti"].xcoms == expected
    # Kept until a later try or a clear: Airflow pushes the return value after this, and that may fail.
    record = context["task_state_store"].values[STATE_KEY]
    assert (record["phase"], record["ended_status"], record["run_id"]) == ("ended", "completed", "tsk_v2_1")


@pytest.mark.parametrize("status", ["failed", "terminated", "canceled", "timed_out"])
def test_unsuccessful_final_status_fails_with_skyverns_reason(skyvern: respx.MockRouter, status: str) -> None:
    skyvern.get("/v1/runs/tsk_v2_1").respond(
        200,
        json=task_run(
            "tsk_v2_1",
            status,
            failure_reason="Could not find the products table",
            errors=[{"error_code": "NO_TABLE"}],
        ),
    )
    context = deferred_context()
    with pytest.raises(SkyvernRunFailedError) as raised:
        operator().execute_complete(context, event("terminal", status))
    assert (
        str(raised.value)
        == f"Skyvern run tsk_v2_1 ended {status}: Could not find the products table [error codes: NO_TABLE]"
    )
    assert context["ti"].xcoms["status"] == status
    assert context["ti"].xcoms["failure_reason"] == "Could not find the products table"
    record = context["task_state_store"].values[STATE_KEY]
    assert (record["phase"], record["ended_status"]) == ("ended", status)  # the next try starts a fresh run


@pytest.mark.parametrize(
    "bad_event",
    [
        None,
        {},
        {"status": "success"},
        {"kind": "success", "run_id": "tsk_v2_1"},
        {"kind": "terminal"},
        {"kind": "terminal", "run_id": "tsk_v2_1", "extra": 1},
        "completed",
    ],
)
def test_unknown_or_missing_events_fail_closed(skyvern: respx.MockRouter, bad_event: Any) -> None:
    get_route = skyvern.get("/v1/runs/tsk_v2_1").respond(200, json=completed())
    with pytest.raises(SkyvernError, match="failing closed"):
        operator().execute_complete(deferred_context(), bad_event)
    assert get_route.call_count == 0


def test_terminal_event_but_run_not_final_fails_closed(skyvern: respx.MockRouter) -> None:
    skyvern.get("/v1/runs/tsk_v2_1").respond(200, json=task_run("tsk_v2_1", "running"))
    with pytest.raises(SkyvernRunFailedError, match="although the trigger saw it final; failing closed"):
        operator().execute_complete(deferred_context(), event("terminal", "completed"))


def test_deadline_cancels_the_run_then_fails(skyvern: respx.MockRouter) -> None:
    skyvern.get("/v1/runs/tsk_v2_1").respond(200, json=task_run("tsk_v2_1", "running", step_count=4))
    cancel = skyvern.post("/v1/runs/tsk_v2_1/cancel").respond(200, json=None)
    context = deferred_context()
    with pytest.raises(SkyvernRunFailedError) as raised:
        operator(timeout=900).execute_complete(context, event("deadline", "running"))
    assert cancel.call_count == 1
    assert (
        str(raised.value)
        == "Skyvern run tsk_v2_1 did not finish within timeout=900s (last status running, step 4); it was canceled"
    )
    assert set(context["task_state_store"].values) == {USAGE_KEY}  # the run record is gone; its cost stays
    assert context["ti"].xcoms["usage"] == {"steps": 4, "runs": 1, "tries": 1, "replayed_as_code": 0}


def test_deadline_still_fails_when_the_cancel_fails(
    skyvern: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    skyvern.get("/v1/runs/tsk_v2_1").respond(200, json=task_run("tsk_v2_1", "running", step_count=4))
    skyvern.post("/v1/runs/tsk_v2_1/cancel").respond(404, json={"detail": "Run not found tsk_v2_1"})
    with pytest.raises(SkyvernRunFailedError, match="did not finish within timeout"):
        operator().execute_complete(deferred_context(), event("deadline", "running"))
    assert "Could not cancel Skyvern run tsk_v2_1" in capsys.readouterr().out


def test_error_event_on_the_last_try_cancels_the_run(skyvern: respx.MockRouter) -> None:
    """Issue 7, 2: nobody will wait for the run any more."""
    cancel = skyvern.post("/v1/runs/tsk_v2_1/cancel").respond(200, json=None)
    context = deferred_context()
    with pytest.raises(SkyvernRunFailedError) as raised:
        operator().execute_complete(
            context, event("error", message="Skyvern GET /v1/runs/tsk_v2_1 -> HTTP 403: x")
        )
    assert str(raised.value) == (
        "Stopped waiting for Skyvern run tsk_v2_1: Skyvern GET /v1/runs/tsk_v2_1 -> HTTP 403: x; it was canceled"
    )
    assert cancel.call_count == 1
    assert context["task_state_store"].values == {}


def test_error_event_with_retries_left_keeps_the_run_for_the_next_try(skyvern: respx.MockRouter) -> None:
    cancel = skyvern.post("/v1/runs/tsk_v2_1/cancel").respond(200, json=None)
    context = deferred_context()
    context["ti"].max_tries = 2
    with pytest.raises(SkyvernRunFailedError, match=r"the run is left going; the next try reattaches to it$"):
        operator().execute_complete(context, event("error", message="HTTP 404: gone"))
    assert cancel.call_count == 0
    record = context["task_state_store"].values[STATE_KEY]
    assert (record["phase"], record["run_id"]) == ("submitted", "tsk_v2_1")


def test_error_event_with_cancel_on_kill_false_leaves_the_run_and_says_so(skyvern: respx.MockRouter) -> None:
    cancel = skyvern.post("/v1/runs/tsk_v2_1/cancel").respond(200, json=None)
    with pytest.raises(SkyvernRunFailedError, match=r"the run is left going \(cancel_on_kill=False\)$"):
        operator(cancel_on_kill=False).execute_complete(
            deferred_context(), event("error", message="HTTP 404: gone")
        )
    assert cancel.call_count == 0


def test_deadline_says_when_the_cancel_failed(skyvern: respx.MockRouter) -> None:
    skyvern.get("/v1/runs/tsk_v2_1").respond(200, json=task_run("tsk_v2_1", "running", step_count=4))
    skyvern.post("/v1/runs/tsk_v2_1/cancel").respond(404, json={"detail": "Run not found tsk_v2_1"})
    with pytest.raises(
        SkyvernRunFailedError,
        match=r"did not finish within timeout=1800s \(last status running, step 4\); canceling it failed "
        r"\(Skyvern POST /v1/runs/tsk_v2_1/cancel -> HTTP 404: Run not found tsk_v2_1\), it may still be going$",
    ):
        operator().execute_complete(deferred_context(), event("deadline", "running"))


@pytest.mark.parametrize(("status", "outcome"), [("completed", "returns"), ("failed", "raises")])
def test_a_run_that_ended_as_its_deadline_came_is_never_canceled_and_its_end_stands(
    skyvern: respx.MockRouter, status: str, outcome: str
) -> None:
    """Issue 17 row 8: the deadline event is handled after the run ended. Skyvern 1.0.56 answers 400 to a
    task run's cancel then, and for a finished workflow run revokes its last attempt and resends its webhook."""
    final = completed() if status == "completed" else task_run("tsk_v2_1", "failed", failure_reason="Lost")
    skyvern.get("/v1/runs/tsk_v2_1").respond(200, json=final)
    cancel = skyvern.post("/v1/runs/tsk_v2_1/cancel").respond(
        400, json={"detail": "Invalid task status transition"}
    )
    context = deferred_context()
    if outcome == "returns":
        assert operator().execute_complete(context, event("deadline", "running")) == OUTPUT
    else:
        with pytest.raises(SkyvernRunFailedError, match=r"^Skyvern run tsk_v2_1 ended failed: Lost$"):
            operator().execute_complete(context, event("deadline", "running"))
    assert cancel.call_count == 0
    assert context["ti"].xcoms["status"] == status


def test_an_earlier_triggers_event_defers_again_on_this_tries_run(skyvern: respx.MockRouter) -> None:
    """Issue 17 row 3: a clear while deferred on SQLite hands try 2 the old trigger's event about run 1 (the
    trigger row id is reused). Try 2 waits for its own run again, to the same deadline; nothing is canceled."""
    cancel = skyvern.post(url__regex=r"/v1/runs/.+/cancel").respond(200, json=None)
    reads = skyvern.get(url__regex=r"/v1/runs/tsk_v2_[0-9]+$").respond(200, json=completed())
    context = deferred_context()
    stale = {
        "kind": "terminal",
        "run_id": "tsk_v2_OLD",
        "run_status": "canceled",
        "step_count": 2,
        "message": None,
    }
    with pytest.raises(TaskDeferred) as deferred:
        operator().execute_complete(
            context,
            stale,
            run_id="tsk_v2_1",
            app_url="https://app/tsk_v2_1",
            deadline=1_900_000_000.0,
            limit="timeout=60s",
        )
    trigger = deferred.value.trigger
    assert (trigger.run_id, trigger.deadline, trigger.limit) == ("tsk_v2_1", 1_900_000_000.0, "timeout=60s")
    assert deferred.value.kwargs == {
        "run_id": "tsk_v2_1",
        "app_url": "https://app/tsk_v2_1",
        "deadline": 1_900_000_000.0,
        "limit": "timeout=60s",
        "start_limit": None,
    }
    assert (cancel.call_count, reads.call_count) == (0, 0)
    assert context["ti"].xcoms.get("status") is None  # nothing handed on from the other run


def test_the_result_is_handed_on_again_when_the_return_value_push_failed(skyvern: respx.MockRouter) -> None:
    """Issue 17 row 1: Airflow pushes ``return_value`` after execute_complete returns; when that push fails
    (an XCom backend answering 503, an OOM kill while serialising) the retry must not buy a second run."""
    store = FakeStateStore()
    post = skyvern.post("/v1/run/tasks").respond(200, json=our_run("tsk_v2_1", "queued"))
    with pytest.raises(TaskDeferred):
        operator().execute(make_context(store))
    skyvern.get("/v1/runs/tsk_v2_1").respond(200, json=completed(run_request=echoed()))
    assert operator().execute_complete(deferred_context(store), event("terminal", "completed")) == OUTPUT
    # ... and here the task runner's push of the return value fails: the try fails, a retry follows.
    retry = make_context(store, FakeTaskInstance(try_number=2))  # a retry: same max_tries, same tag
    assert operator().execute(retry) == OUTPUT
    assert post.call_count == 1


def test_fire_and_forget_gives_the_same_run_id_to_a_retry(skyvern: respx.MockRouter) -> None:
    """Issue 17 row 1, ``wait_for_completion=False``: the id was returned but not handed on (the push failed)."""
    store = FakeStateStore()
    post = skyvern.post("/v1/run/tasks").respond(200, json=our_run("tsk_v2_1", "queued"))
    skyvern.get("/v1/runs/tsk_v2_1").respond(200, json=our_run("tsk_v2_1", "running"))
    assert operator(wait_for_completion=False).execute(make_context(store)) == "tsk_v2_1"
    retry = make_context(store, FakeTaskInstance(try_number=2))
    assert operator(wait_for_completion=False).execute(retry) == "tsk_v2_1"
    assert post.call_count == 1


# ---- output check ----------------------------------------------------------------------------------

BAD_OUTPUT = [{"price": "cheap"}]


def test_output_schema_mismatch_warns_by_default_and_hands_the_output_on(
    skyvern: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    skyvern.get("/v1/runs/tsk_v2_1").respond(200, json=completed(output=BAD_OUTPUT))
    context = deferred_context()
    assert (
        operator(data_extraction_schema=SCHEMA).execute_complete(context, event("terminal", "completed"))
        == BAD_OUTPUT
    )
    assert context["ti"].xcoms["output_schema_errors"] == [
        "0: 'name' is a required property",
        "0/price: 'cheap' is not of type 'number'",
    ]
    assert "output does not match data_extraction_schema" in capsys.readouterr().out


def test_output_schema_mismatch_fails_when_asked(skyvern: respx.MockRouter) -> None:
    skyvern.get("/v1/runs/tsk_v2_1").respond(200, json=completed(output=BAD_OUTPUT))
    with pytest.raises(
        SkyvernRunFailedError,
        match=r"output does not match data_extraction_schema: 0: 'name' is a required property",
    ):
        operator(data_extraction_schema=SCHEMA, output_validation="fail").execute_complete(
            deferred_context(), event("terminal", "completed")
        )


# ---- reattach --------------------------------------------------------------------------------------
# Each test plays the tries of one task instance against a mocked Skyvern: try 1 through the operator
# (which writes the state store), then the next try with the same store.

JUST_NOW = datetime.now(timezone.utc).replace(tzinfo=None).isoformat()  # Skyvern's naive UTC


def skyvern_now(offset: float = 0.0) -> str:
    """Skyvern's naive UTC ``created_at``, ``offset`` seconds from now."""
    return datetime.fromtimestamp(time.time() + offset, tz=timezone.utc).replace(tzinfo=None).isoformat()


def listed_now(*rows: tuple[str, str, dict[str, Any]]) -> httpx.Response:
    """A ``GET /v1/runs`` answer with the server's ``Date`` (as every real server sends); ``rows`` are
    (run id, status, fields), each created now unless its fields say otherwise."""
    items = [
        run_list_item(run_id, status, **{"created_at": skyvern_now(), **fields})
        for run_id, status, fields in rows
    ]
    return httpx.Response(200, json=items, headers={"date": formatdate(usegmt=True)})


def echoed(prompt: str = "Extract the top 3 products", engine: str = "skyvern-2.0") -> dict[str, Any]:
    """``run_request`` as Skyvern 1.0.56 echoes the operator's default request."""
    return {"prompt": prompt, "url": "https://example.com/products", "engine": engine, "title": None}


def our_run(run_id: str, status: str, **fields: Any) -> dict[str, Any]:
    return task_run(run_id, status, run_request=echoed(), **fields)


def first_try(
    skyvern: respx.MockRouter, store: FakeStateStore, ti: FakeTaskInstance | None = None, **kwargs: Any
) -> None:
    skyvern.post("/v1/run/tasks").respond(200, json=our_run("tsk_v2_1", "queued"))
    with pytest.raises(TaskDeferred):
        operator(**kwargs).execute(make_context(store, ti))


def retrying() -> FakeTaskInstance:
    """A try with retries left (the tag depends on max_tries, so every try of a test uses the same)."""
    return FakeTaskInstance(max_tries=3)


def test_the_submission_is_recorded_before_the_post_and_completed_after(skyvern: respx.MockRouter) -> None:
    store = FakeStateStore()
    seen_in_store: list[Any] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen_in_store.append(dict(store.values[STATE_KEY]))
        return httpx.Response(200, json=our_run("tsk_v2_1", "queued"))

    skyvern.post("/v1/run/tasks").mock(side_effect=answer)
    with pytest.raises(TaskDeferred):
        operator().execute(make_context(store))
    (during,) = seen_in_store
    assert during["run_id"] is None
    assert during["tag"] == TAG
    assert abs(during["since"] - time.time()) < 5
    assert store.values[STATE_KEY]["run_id"] == "tsk_v2_1"
    assert "Extract the top" not in json.dumps(store.values)  # digests only, never the request itself


def test_retry_reattaches_to_a_running_run_from_the_state_store(skyvern: respx.MockRouter) -> None:
    store = FakeStateStore()
    first_try(skyvern, store)
    skyvern.get("/v1/runs/tsk_v2_1").respond(200, json=our_run("tsk_v2_1", "running", step_count=3))
    context = make_context(store, FakeTaskInstance(try_number=2))
    with pytest.raises(TaskDeferred) as deferred:
        operator().execute(context)
    assert skyvern.routes[2].call_count == 1  # the POST of try 1 only (0: run list, 1: timelines)
    assert deferred.value.trigger.run_id == "tsk_v2_1"
    assert context["ti"].xcoms["run_id"] == "tsk_v2_1"


def test_retry_takes_the_result_of_a_completed_run_not_yet_handed_on(skyvern: respx.MockRouter) -> None:
    store = FakeStateStore()
    first_try(skyvern, store)
    skyvern.get("/v1/runs/tsk_v2_1").respond(200, json=completed(run_request=echoed()))
    assert operator().execute(make_context(store)) == OUTPUT
    assert skyvern.routes[2].call_count == 1  # the POST (0: run list, 1: timelines)
    assert (store.values[STATE_KEY]["phase"], store.values[STATE_KEY]["ended_status"]) == (
        "ended",
        "completed",
    )


@pytest.mark.parametrize("status", ["failed", "terminated", "canceled", "timed_out"])
def test_retry_after_a_failed_run_starts_a_fresh_one(skyvern: respx.MockRouter, status: str) -> None:
    store = FakeStateStore()
    first_try(skyvern, store)
    skyvern.get("/v1/runs/tsk_v2_1").respond(200, json=our_run("tsk_v2_1", status))
    post = skyvern.post("/v1/run/tasks").respond(200, json=our_run("tsk_v2_2", "queued"))
    with pytest.raises(TaskDeferred) as deferred:
        operator().execute(make_context(store))
    assert post.call_count == 2
    assert deferred.value.trigger.run_id == "tsk_v2_2"
    assert store.values[STATE_KEY]["run_id"] == "tsk_v2_2"


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(503),
        httpx.Response(429),
        httpx.Response(200, text="<html>"),
        httpx.ConnectError("down"),
    ],
    ids=["503", "429", "unreadable", "network"],
)
def test_a_remembered_run_that_cannot_be_read_fails_the_try_without_a_new_run(
    skyvern: respx.MockRouter, answer: Any
) -> None:
    """Issue 7, 1: the earlier run's state is unknown, so no second run may start."""
    store = FakeStateStore()
    first_try(skyvern, store, retrying())
    skyvern.get("/v1/runs/tsk_v2_1").mock(side_effect=answer if isinstance(answer, Exception) else None)
    if not isinstance(answer, Exception):
        skyvern.get("/v1/runs/tsk_v2_1").mock(return_value=answer)
    with pytest.raises(SkyvernError) as raised:
        operator().execute(make_context(store, retrying()))
    message = str(raised.value)
    assert message.startswith("Could not read Skyvern run tsk_v2_1 started by an earlier try (")
    assert message.endswith("not starting another run while that is unknown; the next try looks again")
    assert "\n" not in message
    assert skyvern.routes[2].call_count == 1  # the POST (0: run list, 1: timelines)
    assert store.values[STATE_KEY]["run_id"] == "tsk_v2_1"  # the next try looks again


def test_a_clear_cancels_the_old_run_and_starts_a_fresh_one(skyvern: respx.MockRouter) -> None:
    """Issue 7, 6: a clear (max_tries raised) never reattaches to the run its old trigger cancels."""
    store = FakeStateStore()
    first_try(skyvern, store)
    skyvern.get("/v1/runs/tsk_v2_1").respond(200, json=our_run("tsk_v2_1", "running"))
    cancel = skyvern.post("/v1/runs/tsk_v2_1/cancel").respond(200, json=None)
    post = skyvern.post("/v1/run/tasks").respond(200, json=our_run("tsk_v2_2", "queued"))
    cleared = FakeTaskInstance(try_number=2, max_tries=1)
    with pytest.raises(TaskDeferred) as deferred:
        operator().execute(make_context(store, cleared))
    assert (cancel.call_count, post.call_count) == (1, 2)
    assert deferred.value.trigger.run_id == "tsk_v2_2"
    assert posted(post)["title"] == f"nightly.extract [{run_tag(make_context(ti=cleared))}]"


def test_an_edited_prompt_never_adopts_the_old_run(skyvern: respx.MockRouter) -> None:
    """Issue 7, 4: the old run's request is not this try's request."""
    store = FakeStateStore()
    first_try(skyvern, store)
    skyvern.get("/v1/runs/tsk_v2_1").respond(200, json=our_run("tsk_v2_1", "running"))
    cancel = skyvern.post("/v1/runs/tsk_v2_1/cancel").respond(200, json=None)
    post = skyvern.post("/v1/run/tasks").respond(200, json=our_run("tsk_v2_2", "queued"))
    with pytest.raises(TaskDeferred) as deferred:
        operator(prompt="Extract the top 5 products").execute(make_context(store))
    assert (cancel.call_count, post.call_count) == (1, 2)
    assert deferred.value.trigger.run_id == "tsk_v2_2"


def test_fire_and_forget_hands_the_run_on_so_a_clear_starts_a_new_one(skyvern: respx.MockRouter) -> None:
    """Issue 7, 3."""
    store = FakeStateStore()
    post = skyvern.post("/v1/run/tasks").respond(200, json=our_run("tsk_v2_1", "queued"))
    assert operator(wait_for_completion=False).execute(make_context(store)) == "tsk_v2_1"
    assert (store.values[STATE_KEY]["phase"], store.values[STATE_KEY]["run_id"]) == ("handed_on", "tsk_v2_1")
    cancel = skyvern.post("/v1/runs/tsk_v2_1/cancel").respond(200, json=None)
    post.respond(200, json=our_run("tsk_v2_2", "queued"))
    cleared = make_context(store, FakeTaskInstance(try_number=2, max_tries=1))
    assert operator(wait_for_completion=False).execute(cleared) == "tsk_v2_2"
    assert (post.call_count, cancel.call_count) == (2, 0)  # the first run is someone else's to wait for


def test_tags_differ_per_task_instance_clear_and_deployment_but_not_per_retry() -> None:
    """Issue 7, 4: ``scheduled__<date>`` is the same in staging and prod; their DAG runs' starts are not."""
    base = run_tag(make_context())
    assert run_tag(make_context(ti=FakeTaskInstance(try_number=3))) == base  # a retry
    assert run_tag(make_context(ti=FakeTaskInstance(max_tries=1))) != base  # a clear
    assert run_tag(make_context(ti=FakeTaskInstance(map_index=0))) != run_tag(
        make_context(ti=FakeTaskInstance(map_index=1))
    )
    other_deployment = make_context(
        dag_run_start=datetime(2026, 11, 30, 0, 0, 1, 987654, tzinfo=timezone.utc)
    )
    assert run_tag(other_deployment) != base


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(500, json={"error": "Unexpected error: RuntimeError"}),
        httpx.ReadTimeout("timed out"),
        httpx.Response(200, text="OK"),
    ],
    ids=["500-after-create", "read-timeout", "unreadable-2xx"],
)
@pytest.mark.parametrize("engine", ["skyvern-2.0", "skyvern-1.0"])
def test_ambiguous_post_failure_adopts_the_run_it_created(
    skyvern: respx.MockRouter, failure: Any, engine: str
) -> None:
    """skyvern-2.0 drops the title: found among recent runs by its echoed request; 1.0 by its tag."""
    post = skyvern.post("/v1/run/tasks").mock(side_effect=[failure])
    mine: dict[str, Any] = {"title": "Fake v2 task", "run_type": "task_v2"}
    if engine == "skyvern-1.0":
        mine.update(run_type="task_v1", title=f"nightly.extract [{TAG}]")
    foreign = {"title": "Fake v2 task"}
    old = {"title": "Fake v2 task", "created_at": "2026-01-01T00:00:00"}
    listing = skyvern.get("/v1/runs").mock(
        side_effect=[
            listed_now(),  # not listed yet
            lambda request: (
                listed_now(
                    ("tsk_5", "queued", mine), ("tsk_9", "running", foreign), ("tsk_0", "running", old)
                )
                if engine == "skyvern-2.0"
                else listed_now(("tsk_5", "queued", mine))
            ),
        ]
    )
    skyvern.get("/v1/runs/tsk_5").respond(
        200, json=task_run("tsk_5", "queued", run_request=echoed(engine=engine))
    )
    skyvern.get("/v1/runs/tsk_9").respond(
        200, json=task_run("tsk_9", "running", run_request=echoed(prompt="someone else's prompt"))
    )
    store = FakeStateStore()
    with pytest.raises(TaskDeferred) as deferred:
        operator(engine=engine).execute(make_context(store))
    assert post.call_count == 1
    assert deferred.value.trigger.run_id == "tsk_5"
    assert store.values[STATE_KEY]["run_id"] == "tsk_5"
    params = listing.calls.last.request.url.params
    assert params.get("search_key") == (TAG if engine == "skyvern-1.0" else "https://example.com/products")


def test_ambiguous_post_failure_with_no_run_listed_fails_without_resending(skyvern: respx.MockRouter) -> None:
    post = skyvern.post("/v1/run/tasks").respond(502)
    store = FakeStateStore()
    with pytest.raises(SkyvernError) as raised:
        operator().execute(make_context(store, retrying()))
    settles = store.values[STATE_KEY]["since"] + SkyvernHook().settings.request_timeout + 120
    when = datetime.fromtimestamp(settles, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert str(raised.value) == (
        "Skyvern POST /v1/run/tasks -> HTTP 502: empty body; could not tell whether a Skyvern run was "
        f"created: none matching this request is listed yet, and one it created would be listed by {when}; "
        "not starting another run before then; a try after then starts one if none is listed"
    )
    assert post.call_count == 1
    assert store.values[STATE_KEY]["run_id"] is None  # a submission in flight, for the next try

    with pytest.raises(
        SkyvernError,
        match=rf"^Could not tell yet whether an earlier try's submission .*would be listed by {when}; not starting",
    ):
        operator().execute(make_context(store, retrying()))  # the next try, soon after: still unknown
    assert post.call_count == 1

    store.values[STATE_KEY]["since"] -= 3600  # an hour later a run it created would be listed
    post.respond(200, json=our_run("tsk_v2_2", "queued"))
    with pytest.raises(TaskDeferred):
        operator().execute(make_context(store, retrying()))
    assert post.call_count == 2


def test_a_failed_lookup_after_an_ambiguous_post_fails_the_try(skyvern: respx.MockRouter) -> None:
    skyvern.post("/v1/run/tasks").mock(side_effect=httpx.ReadTimeout("timed out"))
    skyvern.get("/v1/runs").respond(503)
    with pytest.raises(
        SkyvernError,
        match=r"could not tell whether a Skyvern run was created: looking for it.*the next try looks",
    ) as raised:
        operator().execute(make_context(FakeStateStore(), retrying()))
    assert not isinstance(raised.value, AirflowFailException)  # Airflow retries


@pytest.mark.parametrize("lookup", [503, 200])
def test_on_the_last_try_a_lost_answer_says_what_to_do_not_what_a_next_try_does(
    skyvern: respx.MockRouter, lookup: int
) -> None:
    """No try follows the last one: the message must not promise that one looks again or starts a run."""
    skyvern.post("/v1/run/tasks").mock(side_effect=httpx.ReadTimeout("timed out"))
    skyvern.get("/v1/runs").respond(lookup, json=[])
    with pytest.raises(AirflowFailException) as raised:
        operator().execute(make_context(FakeStateStore(), FakeTaskInstance(try_number=4, max_tries=3)))
    message = str(raised.value)
    known = (
        "looking for it failed" if lookup == 503 else "none matching this request is listed yet, and one it"
    )
    assert f"could not tell whether a Skyvern run was created: {known}" in message
    assert message.endswith(
        "; this was the task's last try, so the task fails without retrying: look for it among Skyvern's runs, "
        "then clear the task to start a new one"
    )
    assert "next try" not in message
    assert "a try after" not in message


def test_a_post_refused_before_any_work_forgets_the_submission(skyvern: respx.MockRouter) -> None:
    skyvern.post("/v1/run/tasks").respond(422, json={"detail": [{"loc": ["body", "url"], "msg": "bad"}]})
    store = FakeStateStore()
    with pytest.raises(
        AirflowFailException, match=r"^Skyvern refused to start the run: .*HTTP 422: url: bad"
    ):
        operator().execute(make_context(store))  # a retry would be refused the same way
    assert store.values == {}


def test_reattach_false_says_it_cannot_tell_after_an_ambiguous_failure(skyvern: respx.MockRouter) -> None:
    """No retry follows (it would start a second run): the message is true about what happens next."""
    skyvern.post("/v1/run/tasks").respond(500, json={"error": "boom"})
    with pytest.raises(AirflowFailException) as raised:
        operator(reattach=False).execute(make_context(FakeStateStore(), retrying()))
    assert str(raised.value) == (
        "Skyvern POST /v1/run/tasks -> HTTP 500: boom; could not tell whether a Skyvern run was created; "
        "with reattach=False no retry looks for it, so the task fails "
        "without retrying: look for it among Skyvern's runs, then clear the task to start a new one"
    )


def test_without_a_state_store_the_tag_finds_a_running_v1_run(skyvern: respx.MockRouter) -> None:
    """Airflow < 3.3: title-keeping engines only."""
    post = skyvern.post("/v1/run/tasks").respond(200, json=our_run("tsk_NEW", "created"))
    listing = skyvern.get("/v1/runs").respond(
        200,
        json=[
            run_list_item("tsk_other", "running", title="someone else's run mentioning airflow"),
            run_list_item("tsk_1", "running", title=f"nightly.extract [{TAG}]", run_type="task_v1"),
        ],
    )
    skyvern.get("/v1/runs/tsk_1").respond(
        200, json=task_run("tsk_1", "running", run_type="task_v1", run_request=echoed(engine="skyvern-1.0"))
    )
    with pytest.raises(TaskDeferred) as deferred:
        operator(engine="skyvern_v1").execute(make_context())
    assert post.call_count == 0
    assert deferred.value.trigger.run_id == "tsk_1"
    assert listing.calls.last.request.url.params["search_key"] == TAG


@pytest.mark.parametrize("status", ["failed", "canceled", "timed_out"])
def test_tag_path_does_not_adopt_runs_that_ended_badly(skyvern: respx.MockRouter, status: str) -> None:
    post = skyvern.post("/v1/run/tasks").respond(200, json=task_run("tsk_2", "created"))
    skyvern.get("/v1/runs").respond(200, json=[run_list_item("tsk_1", status, title=f"x [{TAG}]")])
    with pytest.raises(TaskDeferred):
        operator(engine="skyvern_v1").execute(make_context())
    assert post.call_count == 1


def test_tag_path_hands_a_completed_run_of_this_request_on_again(skyvern: respx.MockRouter) -> None:
    """Issue 17 row 4 (Airflow < 3.3, no state store): the run completed but the try failed after it (its
    files could not be copied, its result not pushed); the retry takes it instead of paying for another."""
    post = skyvern.post("/v1/run/tasks").respond(200, json=task_run("tsk_2", "created"))
    skyvern.get("/v1/runs").respond(200, json=[run_list_item("tsk_1", "completed", title=f"x [{TAG}]")])
    skyvern.get("/v1/runs/tsk_1").respond(
        200, json=completed("tsk_1", run_type="task_v1", run_request=echoed(engine="skyvern-1.0"))
    )
    assert operator(engine="skyvern_v1").execute(make_context()) == OUTPUT
    assert post.call_count == 0


# ---- blocking mode ---------------------------------------------------------------------------------


def test_blocking_mode_waits_with_the_same_policy_and_xcoms(
    skyvern: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    skyvern.post("/v1/run/tasks").respond(200, json=task_run("tsk_v2_1", "created"))
    polls = skyvern.get("/v1/runs/tsk_v2_1").mock(
        side_effect=[
            httpx.Response(200, json=task_run("tsk_v2_1", "running", step_count=1)),
            httpx.Response(503),
            httpx.Response(503),
            httpx.Response(503),
            httpx.Response(503),  # retry budget (3) exhausted: the wait goes on
            httpx.Response(200, json=task_run("tsk_v2_1", "running", step_count=2)),
            httpx.Response(200, json=completed()),
            httpx.Response(200, json=completed()),  # execute fetches the final run again
        ]
    )
    context = make_context(FakeStateStore())
    assert operator(deferrable=False, poll_interval=0.001).execute(context) == OUTPUT
    assert polls.call_count == 8
    assert context["ti"].xcoms["status"] == "completed"
    log = capsys.readouterr().out
    assert "Skyvern run tsk_v2_1: running (step 1)" in log
    assert "Skyvern run tsk_v2_1: running (step 2)" in log
    assert "still waiting after a transient error" in log


def test_blocking_timeout_cancels_the_run(skyvern: respx.MockRouter) -> None:
    skyvern.post("/v1/run/tasks").respond(200, json=task_run("tsk_v2_1", "created"))
    skyvern.get("/v1/runs/tsk_v2_1").respond(200, json=task_run("tsk_v2_1", "running", step_count=2))
    cancel = skyvern.post("/v1/runs/tsk_v2_1/cancel").respond(200, json=None)
    with pytest.raises(
        SkyvernRunFailedError,
        match=r"did not finish within timeout=0.05s \(last status running, step 2\); it was canceled",
    ):
        operator(deferrable=False, timeout=0.05, poll_interval=0.01).execute(make_context())
    assert cancel.call_count == 1


def test_on_kill_in_blocking_mode_cancels_the_active_run(skyvern: respx.MockRouter) -> None:
    cancel = skyvern.post("/v1/runs/tsk_v2_1/cancel").respond(200, json=None)
    op = operator(deferrable=False)
    op.on_kill()
    assert cancel.call_count == 0  # nothing started yet
    op._active_run_id = "tsk_v2_1"
    op.on_kill()
    assert cancel.call_count == 1


@pytest.mark.parametrize(("steps", "said"), [(1, "completed in 1 step"), (4, "completed in 4 steps")])
def test_the_last_line_counts_steps_in_words(
    skyvern: respx.MockRouter, capsys: pytest.CaptureFixture[str], steps: int, said: str
) -> None:
    skyvern.get("/v1/runs/tsk_v2_1").respond(200, json=completed(step_count=steps))
    operator().execute_complete(deferred_context(), event("terminal", "completed"))
    assert f"Skyvern run tsk_v2_1 {said}\n" in capsys.readouterr().out.replace(" [airflow", "\n[airflow")


def test_a_record_under_the_key_of_earlier_releases_is_still_reattached_to(skyvern: respx.MockRouter) -> None:
    """Issue 18 row 22 renamed the key a person sees in the UI; a retry across the upgrade must not pay twice."""
    from airflow_provider_skyvern.runs.ledger import LEGACY_STATE_KEY

    record = recorded()
    del record["version"], record["phase"], record["ended_status"]  # as 0.1.0's first records were written
    store = FakeStateStore(**{LEGACY_STATE_KEY: record})
    post = skyvern.post("/v1/run/tasks").respond(200, json=our_run("tsk_v2_2", "queued"))
    skyvern.get("/v1/runs/tsk_v2_1").respond(200, json=our_run("tsk_v2_1", "running"))
    with pytest.raises(TaskDeferred) as deferred:
        operator().execute(make_context(store))
    assert (deferred.value.trigger.run_id, post.call_count) == ("tsk_v2_1", 0)
    assert set(store.values) == {STATE_KEY, USAGE_KEY}
    assert store.values[STATE_KEY]["phase"] == "submitted"

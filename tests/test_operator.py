"""SkyvernRunTaskOperator: submit once, persist at once, reattach, defer, complete fail-closed, cancel."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
import respx

from airflow_provider_skyvern.compat import AirflowFailException, TaskDeferred
from airflow_provider_skyvern.exceptions import SkyvernError
from airflow_provider_skyvern.operators.reattach import STATE_KEY, run_tag
from airflow_provider_skyvern.operators.skyvern import SkyvernRunFailedError, SkyvernRunTaskOperator
from airflow_provider_skyvern.triggers.skyvern import SkyvernRunTrigger
from tests.conftest import API_KEY, BASE_URL
from tests.operator_support import FakeStateStore, FakeTaskInstance, make_context
from tests.payloads import run_list_item, task_run

pytestmark = pytest.mark.usefixtures("skyvern_conn", "no_waits")
TAG = run_tag(FakeTaskInstance())
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
    monkeypatch.setattr(
        "airflow_provider_skyvern.hooks.skyvern.SkyvernHook._sleep", lambda self, seconds: None
    )


@pytest.fixture
def skyvern() -> Any:
    with respx.mock(base_url=BASE_URL, assert_all_called=False) as mock:
        mock.get("/v1/runs").respond(200, json=[])
        yield mock


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
    assert context["task_state_store"].values == {STATE_KEY: "tsk_v2_1"}
    assert API_KEY not in repr(trigger.serialize())


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


def test_mapped_instances_get_different_tags() -> None:
    assert run_tag(FakeTaskInstance(map_index=0)) != run_tag(FakeTaskInstance(map_index=1))
    assert run_tag(FakeTaskInstance()) != run_tag(FakeTaskInstance(run_id="manual__2"))
    assert run_tag(FakeTaskInstance()) == TAG


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


def deferred_context(store: FakeStateStore | None = None) -> dict[str, Any]:
    context = make_context(store or FakeStateStore(**{STATE_KEY: "tsk_v2_1"}))
    context["ti"].xcom_push("run_id", "tsk_v2_1")
    return context


def test_completed_run_returns_output_and_pushes_fresh_artifact_urls(skyvern: respx.MockRouter) -> None:
    final = skyvern.get("/v1/runs/tsk_v2_1").respond(200, json=completed())
    context = deferred_context()

    result = operator(data_extraction_schema=SCHEMA).execute_complete(context, event("terminal", "completed"))

    assert result == OUTPUT
    assert final.call_count == 1
    assert context["ti"].xcoms == {
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
    }
    assert context["task_state_store"].values == {}  # handed on: a cleared task starts a fresh run


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
    assert context["task_state_store"].values == {}  # the next try starts a fresh run


@pytest.mark.parametrize(
    "bad_event",
    [
        None,
        {},
        {"status": "success"},
        {"kind": "success", "run_id": "tsk_v2_1"},
        {"kind": "terminal"},
        {"kind": "terminal", "run_id": "tsk_v2_OTHER"},
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
    cancel = skyvern.post("/v1/runs/tsk_v2_1/cancel").respond(200, json=None)
    context = deferred_context()
    with pytest.raises(SkyvernRunFailedError) as raised:
        operator(timeout=900).execute_complete(context, event("deadline", "running"))
    assert cancel.call_count == 1
    assert (
        str(raised.value)
        == "Skyvern run tsk_v2_1 did not finish within timeout=900s (last status running, step 4); it was canceled"
    )
    assert context["task_state_store"].values == {}


def test_deadline_still_fails_when_the_cancel_fails(
    skyvern: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    skyvern.post("/v1/runs/tsk_v2_1/cancel").respond(404, json={"detail": "Run not found tsk_v2_1"})
    with pytest.raises(SkyvernRunFailedError, match="did not finish within timeout"):
        operator().execute_complete(deferred_context(), event("deadline", "running"))
    assert "Could not cancel Skyvern run tsk_v2_1" in capsys.readouterr().out


def test_error_event_fails_with_the_message(skyvern: respx.MockRouter) -> None:
    with pytest.raises(
        SkyvernRunFailedError,
        match="Stopped waiting for Skyvern run tsk_v2_1: Skyvern GET /v1/runs/tsk_v2_1 -> HTTP 404",
    ):
        operator().execute_complete(
            deferred_context(), event("error", message="Skyvern GET /v1/runs/tsk_v2_1 -> HTTP 404: gone")
        )


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


def test_retry_reattaches_to_a_running_run_from_the_state_store(skyvern: respx.MockRouter) -> None:
    post = skyvern.post("/v1/run/tasks").respond(200, json=task_run("tsk_v2_NEW", "created"))
    skyvern.get("/v1/runs/tsk_v2_1").respond(200, json=task_run("tsk_v2_1", "running", step_count=3))
    context = make_context(FakeStateStore(**{STATE_KEY: "tsk_v2_1"}))
    with pytest.raises(TaskDeferred) as deferred:
        operator().execute(context)
    assert post.call_count == 0
    assert deferred.value.trigger.run_id == "tsk_v2_1"
    assert context["ti"].xcoms["run_id"] == "tsk_v2_1"


def test_retry_takes_the_result_of_a_completed_run_not_yet_handed_on(skyvern: respx.MockRouter) -> None:
    post = skyvern.post("/v1/run/tasks").respond(200, json=task_run("tsk_v2_NEW", "created"))
    skyvern.get("/v1/runs/tsk_v2_1").respond(200, json=completed())
    context = make_context(FakeStateStore(**{STATE_KEY: "tsk_v2_1"}))
    assert operator().execute(context) == OUTPUT
    assert post.call_count == 0


@pytest.mark.parametrize("status", ["failed", "terminated", "canceled", "timed_out"])
def test_retry_after_a_failed_run_starts_a_fresh_one(skyvern: respx.MockRouter, status: str) -> None:
    post = skyvern.post("/v1/run/tasks").respond(200, json=task_run("tsk_v2_2", "created"))
    skyvern.get("/v1/runs/tsk_v2_1").respond(200, json=task_run("tsk_v2_1", status))
    context = make_context(FakeStateStore(**{STATE_KEY: "tsk_v2_1"}))
    with pytest.raises(TaskDeferred) as deferred:
        operator().execute(context)
    assert post.call_count == 1
    assert deferred.value.trigger.run_id == "tsk_v2_2"
    assert context["task_state_store"].values == {STATE_KEY: "tsk_v2_2"}


def test_without_a_state_store_the_tag_finds_a_running_run(skyvern: respx.MockRouter) -> None:
    """Airflow < 3.3, or a try that died between the POST and writing the store."""
    post = skyvern.post("/v1/run/tasks").respond(200, json=task_run("tsk_v2_NEW", "created"))
    listing = skyvern.get("/v1/runs").respond(
        200,
        json=[
            run_list_item("tsk_v2_other", "running", title="someone else's run mentioning airflow"),
            run_list_item("tsk_v2_1", "running", title=f"nightly.extract [{TAG}]"),
        ],
    )
    skyvern.get("/v1/runs/tsk_v2_1").respond(200, json=task_run("tsk_v2_1", "running"))
    with pytest.raises(TaskDeferred) as deferred:
        operator().execute(make_context())
    assert post.call_count == 0
    assert deferred.value.trigger.run_id == "tsk_v2_1"
    assert listing.calls.last.request.url.params["search_key"] == TAG


def test_tag_path_does_not_adopt_finished_runs(skyvern: respx.MockRouter) -> None:
    post = skyvern.post("/v1/run/tasks").respond(200, json=task_run("tsk_v2_2", "created"))
    skyvern.get("/v1/runs").respond(200, json=[run_list_item("tsk_v2_1", "completed", title=f"x [{TAG}]")])
    with pytest.raises(TaskDeferred):
        operator().execute(make_context())
    assert post.call_count == 1


@pytest.mark.parametrize(
    "failure",
    [httpx.Response(500, json={"error": "Unexpected error: RuntimeError"}), httpx.ReadTimeout("timed out")],
    ids=["500-after-create", "read-timeout"],
)
def test_ambiguous_post_failure_adopts_the_run_it_created(skyvern: respx.MockRouter, failure: Any) -> None:
    post = skyvern.post("/v1/run/tasks").mock(
        side_effect=[failure, httpx.Response(200, json=task_run("tsk_v2_DUP", "created"))]
    )
    skyvern.get("/v1/runs").mock(
        side_effect=[
            httpx.Response(
                200, json=[run_list_item("tsk_v2_0", "failed", title=f"x [{TAG}]")]
            ),  # an earlier try
            httpx.Response(
                200, json=[run_list_item("tsk_v2_0", "failed", title=f"x [{TAG}]")]
            ),  # not listed yet
            httpx.Response(
                200,
                json=[
                    run_list_item("tsk_v2_5", "queued", title=f"x [{TAG}]"),
                    run_list_item("tsk_v2_0", "failed", title=f"x [{TAG}]"),
                ],
            ),
        ]
    )
    skyvern.get("/v1/runs/tsk_v2_5").respond(200, json=task_run("tsk_v2_5", "queued"))
    context = make_context(FakeStateStore())
    with pytest.raises(TaskDeferred) as deferred:
        operator().execute(context)
    assert post.call_count == 1
    assert deferred.value.trigger.run_id == "tsk_v2_5"
    assert context["task_state_store"].values == {STATE_KEY: "tsk_v2_5"}


def test_ambiguous_post_failure_without_a_new_run_raises(skyvern: respx.MockRouter) -> None:
    post = skyvern.post("/v1/run/tasks").respond(502)
    with pytest.raises(
        SkyvernError, match=rf"HTTP 502: empty body; no run tagged {TAG} appeared, so none was created"
    ):
        operator().execute(make_context())
    assert post.call_count == 1


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

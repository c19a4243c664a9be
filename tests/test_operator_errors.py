"""Errors that name their cause (issue 8, items 6-10, 15): refused early, one line, the step in words."""

from __future__ import annotations

from typing import Any

import pytest
import respx
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_skyvern.compat import AirflowFailException
from airflow_provider_skyvern.exceptions import SkyvernError
from airflow_provider_skyvern.operators.task import SkyvernRunFailedError, SkyvernRunTaskOperator
from airflow_provider_skyvern.runs.ledger import STATE_KEY
from tests.conftest import BASE_URL, set_connection
from tests.operator_support import FakeStateStore, make_context
from tests.payloads import task_run

pytestmark = pytest.mark.usefixtures("skyvern_conn", "fast_clock")


def operator(**kwargs: Any) -> SkyvernRunTaskOperator:
    kwargs.setdefault("prompt", "Extract the top 3 products")
    kwargs.setdefault("url", "https://example.com/products")
    return SkyvernRunTaskOperator(task_id="extract", **kwargs)


# ---- 6: no prompt, no run -------------------------------------------------------------------------


def test_prompt_none_fails_at_parse_time() -> None:
    with pytest.raises(
        ValueError, match=r"^SkyvernRunTaskOperator\(task_id='extract'\) prompt: must be a non-empty"
    ):
        operator(prompt=None)


def test_a_prompt_rendering_to_none_fails_the_task_without_a_run(skyvern: respx.MockRouter) -> None:
    post = skyvern.post("/v1/run/tasks").respond(200, json=task_run("tsk_v2_1", "created"))
    op = operator(prompt="{{ params.prompt }}")
    op.prompt = None  # what render_template_as_native_obj made of a missing param
    with pytest.raises(AirflowFailException, match=r"prompt: must be a non-empty string .*after rendering"):
        op.execute(make_context())
    assert post.call_count == 0


# ---- 7: one line, the full reason in the log --------------------------------------------------------


def test_a_failure_reason_with_a_traceback_keeps_its_first_line_and_the_rest_goes_to_the_log(
    skyvern: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    reason = (
        "Login page asked for a captcha\nTraceback (most recent call last):\n  File 'agent.py', line 3\n"
        "TimeoutError"
    )
    errors = [{"error_code": "CAPTCHA", "reasoning": "a captcha", "confidence_float": 0.9}]
    skyvern.get("/v1/runs/tsk_v2_1").respond(
        200, json=task_run("tsk_v2_1", "failed", failure_reason=reason, errors=errors)
    )
    context = make_context(FakeStateStore(**{STATE_KEY: {"run_id": "tsk_v2_1"}}))
    event = {"kind": "terminal", "run_id": "tsk_v2_1", "run_status": "failed"}
    with pytest.raises(SkyvernRunFailedError) as failed:
        operator().execute_complete(context, event, run_id="tsk_v2_1")
    assert str(failed.value) == (
        "Skyvern run tsk_v2_1 ended failed: Login page asked for a captcha [error codes: CAPTCHA] "
        "(full reason in the task log)"
    )
    assert "File 'agent.py', line 3\nTimeoutError" in capsys.readouterr().out.split("in full:", 1)[1]


def test_a_traceback_run_into_the_first_line_is_cut_off_too(skyvern: respx.MockRouter) -> None:
    reason = "Login page asked for a captcha Traceback (most recent call last): File 'agent.py', line 3"
    skyvern.get("/v1/runs/tsk_v2_1").respond(200, json=task_run("tsk_v2_1", "failed", failure_reason=reason))
    context = make_context(FakeStateStore(**{STATE_KEY: {"run_id": "tsk_v2_1"}}))
    event = {"kind": "terminal", "run_id": "tsk_v2_1", "run_status": "failed"}
    with pytest.raises(SkyvernRunFailedError) as failed:
        operator().execute_complete(context, event, run_id="tsk_v2_1")
    assert str(failed.value) == (
        "Skyvern run tsk_v2_1 ended failed: Login page asked for a captcha (full reason in the task log)"
    )


# ---- 8: which step, which server ----------------------------------------------------------------------


def test_an_unreachable_server_is_named_with_the_step_that_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, host="http://127.0.0.1:9", extra={"max_retries": 1})
    with pytest.raises(SkyvernError) as failed:
        operator(engine="skyvern_v1").execute(make_context(FakeStateStore()))
    message = str(failed.value)
    assert message.startswith("Starting the Skyvern run failed: Skyvern POST http://127.0.0.1:9/v1/run/tasks")
    assert "failed before the request was sent: ConnectError" in message


def test_a_failed_lookup_of_an_earlier_run_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, host="http://127.0.0.1:9", extra={"max_retries": 0})
    with pytest.raises(SkyvernError) as failed:  # no state store (Airflow < 3.3): looks by the title tag
        operator(engine="skyvern_v1").execute(make_context())
    assert str(failed.value).startswith(
        "Looking for a Skyvern run an earlier try of this task started failed: "
        "Skyvern GET http://127.0.0.1:9/v1/runs failed before the request was sent: ConnectError"
    )


def test_a_base_url_ending_in_v1_is_refused_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    set_connection(monkeypatch, host="https://api.skyvern.com/v1/")
    with pytest.raises(SkyvernError) as failed:
        operator().execute(make_context())
    assert str(failed.value) == (
        "Starting the Skyvern run failed: Skyvern connection 'skyvern_default': base URL https://api.skyvern.com/v1 ends in /v1, but the "
        "provider adds /v1 itself; set the host to https://api.skyvern.com"
    )


def test_a_wrong_base_url_path_gets_a_hint(skyvern: respx.MockRouter) -> None:
    skyvern.post("/v1/run/tasks").respond(404, json={"detail": "Not Found"})
    with pytest.raises(SkyvernError) as failed:
        operator(reattach=False).execute(make_context())
    assert str(failed.value) == (
        "Starting the Skyvern run failed: Skyvern POST /v1/run/tasks -> HTTP 404: Not Found (no such endpoint "
        f"at {BASE_URL}: check the Skyvern connection's base URL, which is the server's root without /v1)"
    )


# ---- 9: pydantic errors name the field, at parse time where possible ------------------------------------


def test_a_wrongly_typed_value_fails_at_parse_time_naming_the_field() -> None:
    with pytest.raises(ValueError, match="model") as failed:
        operator(model="gpt-4")
    assert str(failed.value) == (
        "SkyvernRunTaskOperator(task_id='extract') model: Input should be a valid dictionary, got 'gpt-4'"
    )


def test_a_wrongly_typed_rendered_value_fails_without_retry(skyvern: respx.MockRouter) -> None:
    post = skyvern.post("/v1/run/tasks").respond(200, json=task_run("tsk_v2_1", "created"))
    op = operator(title="{{ params.title }}")
    op.title = ["a", "list"]  # a native-rendered template
    with pytest.raises(
        AirflowFailException, match=r"^SkyvernRunTaskOperator: title: Input should be a valid string"
    ):
        op.execute(make_context())
    assert post.call_count == 0


def test_partial_values_are_checked_at_parse_time() -> None:
    with pytest.raises(
        ValueError, match=r"^SkyvernRunTaskOperator.partial\(task_id='pages'\) engine: 'skyvern_2'"
    ):
        SkyvernRunTaskOperator.partial(task_id="pages", prompt="Get the price", engine="skyvern_2")
    with pytest.raises(ValueError, match=r"partial\(task_id='pages'\) timeout: must be a number > 0"):
        SkyvernRunTaskOperator.partial(task_id="pages", prompt="Get the price", timeout=0)


def test_partial_accepts_what_is_only_known_later() -> None:
    from airflow.sdk import DAG, task

    with DAG("mapped"):

        @task
        def pages() -> list[str]:
            return ["https://example.com/a"]

        mapped = SkyvernRunTaskOperator.partial(
            task_id="extract_each", title="{{ ds }}", engine="skyvern_v1", max_steps=5
        ).expand(url=pages())
    assert mapped.partial_kwargs["engine"] == "skyvern_v1"


def test_an_upstream_output_is_not_checked_at_parse_time() -> None:
    from airflow.sdk import DAG, task

    with DAG("xcomarg"):

        @task
        def start_url() -> str:
            return "https://example.com"

        op = operator(url=start_url())
    assert op.task_id == "extract"


# ---- 15: do_xcom_push ----------------------------------------------------------------------------------


def test_do_xcom_push_false_pushes_nothing_and_the_run_still_completes(skyvern: respx.MockRouter) -> None:
    skyvern.post("/v1/run/tasks").respond(200, json=task_run("tsk_v2_1", "created"))
    skyvern.get("/v1/runs/tsk_v2_1").respond(200, json=task_run("tsk_v2_1", "completed", output=[1]))
    op = operator(do_xcom_push=False, deferrable=True)
    context = make_context(FakeStateStore())
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    event = {"kind": "terminal", "run_id": "tsk_v2_1", "run_status": "completed"}
    assert op.execute_complete(context, event, **deferred.value.kwargs) == [1]
    assert context["ti"].xcoms == {}


def test_do_xcom_push_true_pushes_the_run_xcoms(skyvern: respx.MockRouter) -> None:
    skyvern.post("/v1/run/tasks").respond(200, json=task_run("tsk_v2_1", "completed", output=[1]))
    context = make_context(FakeStateStore())
    operator().execute(context)
    assert {"run_id", "app_url", "status", "screenshot_urls", "downloaded_files"} <= set(context["ti"].xcoms)


# ---- 10 (operator side): an error event from any exception --------------------------------------------


def test_an_error_event_from_a_deleted_connection_cancels_on_the_last_try(skyvern: respx.MockRouter) -> None:
    cancel = skyvern.post("/v1/runs/tsk_v2_1/cancel").respond(200, json=None)
    event = {
        "kind": "error",
        "run_id": "tsk_v2_1",
        "message": "AirflowNotFoundException: The conn_id `skyvern_default` isn't defined",
    }
    with pytest.raises(SkyvernRunFailedError) as failed:
        operator().execute_complete(make_context(), event, run_id="tsk_v2_1")
    assert str(failed.value) == (
        "Stopped waiting for Skyvern run tsk_v2_1: AirflowNotFoundException: The conn_id `skyvern_default` "
        "isn't defined; it was canceled"
    )
    assert cancel.call_count == 1

"""SkyvernRunWorkflowOperator: the request on the wire, parse-time checks, retry-pending waits, XComs,
and a retry adopting the run its first try started (the shared machinery, seen from the wire)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from email.utils import formatdate
from typing import Any

import httpx
import pytest
import respx
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_skyvern.compat import AirflowFailException
from airflow_provider_skyvern.exceptions import SkyvernError
from airflow_provider_skyvern.operators.task import SkyvernRunFailedError, SkyvernRunWorkflowOperator
from airflow_provider_skyvern.runs.events import RunEvent
from airflow_provider_skyvern.runs.ledger import STATE_KEY, run_tag
from tests.conftest import API_KEY, FastClock
from tests.operator_support import FakeStateStore, FakeTaskInstance, make_context
from tests.payloads import run_list_item, workflow_run

pytestmark = pytest.mark.usefixtures("skyvern_conn", "no_waits")
WPID = "wpid_123"
TAG = run_tag(make_context())
PARAMETERS = {"report_date": "2026-11-30", "region": "EU"}
OUTPUT = {
    "login_output": None,
    "extract_output": {"task_id": "tsk_1", "status": "completed", "extracted_information": {"total": 42}},
    "extracted_information": [{"total": 42}],
}


@pytest.fixture
def no_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    FastClock(monkeypatch)


def operator(**kwargs: Any) -> SkyvernRunWorkflowOperator:
    kwargs.setdefault("workflow_id", WPID)
    kwargs.setdefault("parameters", PARAMETERS)
    kwargs.setdefault("deferrable", True)
    return SkyvernRunWorkflowOperator(task_id="report", **kwargs)


def echo(parameters: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """``run_request`` as Skyvern 1.0.56 echoes a workflow run: parameters with the defaults filled in."""
    return {
        "workflow_id": WPID,
        "title": "Monthly report",
        "parameters": {**(PARAMETERS if parameters is None else parameters), "optional_note": ""},
        "proxy_location": "RESIDENTIAL",
        "webhook_url": None,
        **fields,
    }


def ours(run_id: str, status: str, **fields: Any) -> dict[str, Any]:
    fields.setdefault("run_request", echo())
    return workflow_run(run_id, status, **fields)


def done(run_id: str = "wr_1", **fields: Any) -> dict[str, Any]:
    defaults: dict[str, Any] = {
        "output": OUTPUT,
        "step_count": 6,
        "attempt": 1,
        "retry_pending": False,
        "recording_url": "https://files.example.com/rec.webm?sig=1",
        "screenshot_urls": ["https://files.example.com/s1.png"],
        "downloaded_files": [{"url": "https://files.example.com/r.pdf", "filename": "r.pdf", "file_size": 9}],
    }
    return ours(run_id, "completed", **{**defaults, **fields})


# ---- the request ------------------------------------------------------------------------------------


def test_every_argument_reaches_the_wire_and_the_task_defers(skyvern: respx.MockRouter) -> None:
    post = skyvern.post("/v1/run/agents").respond(200, json=ours("wr_1", "created"))
    op = operator(
        title="ignored by Skyvern",
        proxy_location="RESIDENTIAL_GB",
        webhook_url="https://hooks.example.com/skyvern",
        totp_identifier="ops@example.com",
        totp_url="https://totp.example.com/code",
        browser_profile_id="bp_1",
        reuse_browser_session=False,
        max_screenshot_scrolls=3,
        extra_http_headers={"Accept-Language": "en"},
        browser_address="ws://browser.internal:9222",
        ai_fallback=True,
        run_with="code",
        run_metadata={"team": "finance"},
        max_elapsed_time_minutes=90,
        browser_type="chrome",
        max_steps_override=25,
        template=False,
        user_agent="airflow-ci",
    )
    context = make_context(FakeStateStore())
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    request = post.calls.last.request
    assert json.loads(request.content) == {
        "agent_id": WPID,
        "parameters": PARAMETERS,
        "title": "ignored by Skyvern",  # sent as given: no tag, Skyvern shows the workflow's title
        "proxy_location": "RESIDENTIAL_GB",
        "webhook_url": "https://hooks.example.com/skyvern",
        "totp_identifier": "ops@example.com",
        "totp_url": "https://totp.example.com/code",
        "browser_profile_id": "bp_1",
        "reuse_browser_session": False,
        "max_screenshot_scrolls": 3,
        "extra_http_headers": {"Accept-Language": "en"},
        "browser_address": "ws://browser.internal:9222",
        "ai_fallback": True,
        "run_with": "code",
        "run_metadata": {"team": "finance", "airflow": TAG},  # the tag rides beside the user's tags
        "max_elapsed_time_minutes": 90,
        "browser_type": "chrome",
    }
    assert request.headers["x-max-steps-override"] == "25"
    assert request.headers["x-user-agent"] == "airflow-ci"
    assert "template" not in request.url.params  # false is the default: the SDK sends no query
    trigger = deferred.value.trigger
    assert trigger.run_id == "wr_1"
    assert API_KEY not in repr(trigger.serialize())
    assert context["ti"].xcoms["run_id"] == "wr_1"
    assert context["ti"].xcoms["app_url"] == "https://app.skyvern.com/runs/wr_1"
    assert context["task_state_store"].values[STATE_KEY]["run_id"] == "wr_1"


def test_unset_arguments_are_not_sent_and_parameters_may_come_as_rendered_json(
    skyvern: respx.MockRouter,
) -> None:
    post = skyvern.post("/v1/run/agents").respond(200, json=ours("wr_1", "created"))
    op = operator(parameters='{"report_date": "{{ ds }}"}')
    op.parameters = '{"report_date": "2026-11-30"}'  # what rendering produced
    with pytest.raises(TaskDeferred):
        op.execute(make_context())
    request = post.calls.last.request
    assert json.loads(request.content) == {
        "agent_id": WPID,
        "parameters": {"report_date": "2026-11-30"},
        "proxy_location": None,  # see the test below
        "run_metadata": {"airflow": TAG},  # this task instance's tag: GET /v1/runs?tags=airflow:<tag>
    }
    assert "x-max-steps-override" not in request.headers
    assert "template" not in request.url.params


def test_without_proxy_location_null_is_sent_so_the_workflows_saved_proxy_applies(
    skyvern: respx.MockRouter,
) -> None:
    """Skyvern 1.0.56 reads an omitted proxy_location as RESIDENTIAL; only null inherits the workflow's."""
    post = skyvern.post("/v1/run/agents").respond(200, json=ours("wr_1", "created"))
    with pytest.raises(TaskDeferred):
        operator().execute(make_context())
    body = json.loads(post.calls.last.request.content)
    assert "proxy_location" in body
    assert body["proxy_location"] is None


def test_templates_are_rendered_fields_and_parameters_render_as_json() -> None:
    op = operator()
    assert {"workflow_id", "parameters", "webhook_url", "run_metadata"} <= set(op.template_fields)
    assert op.template_fields_renderers["parameters"] == "json"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"workflow_id": "w_1"},
            "workflow_id: must be a workflow permanent id such as 'wpid_123', got 'w_1'",
        ),
        ({"parameters": ["a"]}, "parameters: must be a mapping of parameter keys to values, got ['a']"),
        ({"parameters": "{not json"}, "parameters: is a string but not a JSON object"),
        ({"max_elapsed_time_minutes": 481}, "max_elapsed_time_minutes: must be 1 to 480 minutes, got 481"),
        ({"max_elapsed_time_minutes": 0}, "max_elapsed_time_minutes: must be an integer > 0, got 0"),
        ({"browser_type": "firefox"}, "browser_type: 'firefox' is not accepted; use one of msedge, chrome"),
        ({"webhook_url": "hooks.example.com"}, "webhook_url: 'hooks.example.com' is not a URL"),
        ({"run_metadata": {"n": 1}}, "run_metadata: must be a mapping of strings to strings"),
        ({"max_steps_override": -1}, "max_steps_override: must be an integer > 0, got -1"),
        ({"start_fresh_browser": "yes"}, "start_fresh_browser: must be True or False, got 'yes'"),
        ({"user_agent": "skyvern-ui"}, "user_agent: 'skyvern-ui' is not accepted"),
        ({"timeout": 0}, "timeout: must be a number > 0, got 0"),
    ],
)
def test_bad_values_fail_the_parse_with_one_line_naming_the_field(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match="SkyvernRunWorkflowOperator") as raised:
        operator(**kwargs)
    text = str(raised.value)
    assert "\n" not in text
    assert text.startswith("SkyvernRunWorkflowOperator(task_id='report') ")
    assert message in text


def test_partial_checks_its_values_and_templates_wait_for_rendering(skyvern: respx.MockRouter) -> None:
    with pytest.raises(
        ValueError, match=r"\.partial\(task_id='report'\) max_elapsed_time_minutes: must be 1 to 480"
    ):
        SkyvernRunWorkflowOperator.partial(task_id="report", max_elapsed_time_minutes=600)
    op = operator(workflow_id="{{ params.workflow }}", webhook_url="{{ var.value.hook }}")  # parses
    op.workflow_id, op.webhook_url = WPID, "not a url"  # what rendering produced
    with pytest.raises(AirflowFailException, match=r"webhook_url: 'not a url' is not a URL.*after rendering"):
        op.execute(make_context())
    assert not [call for call in skyvern.calls if call.request.method == "POST"]


# ---- waiting: a retry pending is not the end ---------------------------------------------------------


RETRY_PENDING = ours(
    "wr_1",
    "failed",
    attempt=1,
    retry_pending=True,
    next_attempt_at="2026-11-30T10:00:05",
    failure_reason="attempt 1 failed: the portal answered 503",
)


def test_blocking_wait_goes_on_through_a_retry_pending_failure_to_the_final_attempt(
    skyvern: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    skyvern.post("/v1/run/agents").respond(200, json=ours("wr_1", "created"))
    answers = [
        ours("wr_1", "running", step_count=2),
        RETRY_PENDING,
        RETRY_PENDING,
        ours("wr_1", "running", attempt=2, step_count=1),
        done(attempt=2),
        done(attempt=2),  # the final read for fresh URLs
    ]
    polls = skyvern.get("/v1/runs/wr_1").mock(side_effect=[httpx.Response(200, json=a) for a in answers])
    context = make_context(FakeStateStore())
    returned = operator(deferrable=False, poll_interval=0.001).execute(context)

    seen = [(c.request.method, c.request.url.path) for c in skyvern.calls]
    statuses = [json.loads(c.response.content)["status"] for c in polls.calls]
    assert seen == [("POST", "/v1/run/agents")] + [("GET", "/v1/runs/wr_1")] * 6 + [
        ("GET", "/v1/runs/wr_1/timeline")  # the run's story for the log, once it is over
    ]
    assert statuses == ["running", "failed", "failed", "running", "completed", "completed"]
    assert returned == OUTPUT
    assert context["ti"].xcoms["status"] == "completed"
    assert context["ti"].xcoms["attempt"] == 2
    assert (
        "attempt 1 ended, Skyvern retries the workflow at 2026-11-30 10:00:05 UTC; still waiting"
        in capsys.readouterr().out
    )


def test_the_trigger_yields_no_event_while_a_retry_is_pending(skyvern: respx.MockRouter) -> None:
    import asyncio
    import time

    from airflow_provider_skyvern.triggers.skyvern import SkyvernRunTrigger

    polls = skyvern.get("/v1/runs/wr_1").mock(
        side_effect=[httpx.Response(200, json=a) for a in (RETRY_PENDING, RETRY_PENDING, done(attempt=2))]
    )
    trigger = SkyvernRunTrigger(run_id="wr_1", deadline=time.time() + 60, poll_interval=0.001)

    async def events() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    (event,) = asyncio.run(events())
    assert polls.call_count == 3
    assert (event["kind"], event["run_status"]) == ("terminal", "completed")


def test_completing_on_a_run_whose_retry_is_still_pending_fails_closed(skyvern: respx.MockRouter) -> None:
    skyvern.get("/v1/runs/wr_1").respond(200, json=RETRY_PENDING)
    event = RunEvent("terminal", "wr_1", "failed").to_payload()
    with pytest.raises(
        SkyvernRunFailedError, match="is failed with a retry pending although the trigger saw it final"
    ):
        operator().execute_complete(make_context(), event, run_id="wr_1")


def test_a_paused_workflow_is_not_final(skyvern: respx.MockRouter) -> None:
    skyvern.post("/v1/run/agents").respond(200, json=ours("wr_1", "paused", step_count=3))
    with pytest.raises(TaskDeferred):  # waits (for a human) instead of finishing inline
        operator().execute(make_context())


def test_a_final_failure_after_the_last_attempt_fails_with_skyverns_reason(skyvern: respx.MockRouter) -> None:
    final = ours("wr_1", "failed", attempt=2, retry_pending=False, failure_reason="attempt 2 failed too")
    skyvern.get("/v1/runs/wr_1").respond(200, json=final)
    context = make_context()
    event = RunEvent("terminal", "wr_1", "failed").to_payload()
    with pytest.raises(SkyvernRunFailedError, match=r"^Skyvern run wr_1 ended failed: attempt 2 failed too$"):
        operator().execute_complete(context, event, run_id="wr_1")
    assert context["ti"].xcoms["failure_reason"] == "attempt 2 failed too"


# ---- completion -------------------------------------------------------------------------------------


def test_completion_returns_the_output_and_pushes_block_outputs_and_artifacts(
    skyvern: respx.MockRouter,
) -> None:
    skyvern.get("/v1/runs/wr_1").respond(200, json=done())
    context = make_context()
    event = RunEvent("terminal", "wr_1", "completed").to_payload()
    assert operator().execute_complete(context, event, run_id="wr_1", app_url="https://app/wr_1") == OUTPUT
    xcoms = context["ti"].xcoms
    assert xcoms["block_outputs"] == {"login": None, "extract": OUTPUT["extract_output"]}
    assert xcoms["downloaded_files"] == [
        {"url": "https://files.example.com/r.pdf", "filename": "r.pdf", "checksum": None, "size": 9}
    ]
    assert xcoms["screenshot_urls"] == ["https://files.example.com/s1.png"]
    assert xcoms["recording_url"] == "https://files.example.com/rec.webm?sig=1"
    assert (xcoms["status"], xcoms["step_count"], xcoms["attempt"]) == ("completed", 6, 1)
    assert API_KEY not in json.dumps(xcoms)


def test_do_xcom_push_false_pushes_nothing(skyvern: respx.MockRouter) -> None:
    skyvern.post("/v1/run/agents").respond(200, json=done())
    context = make_context()
    operator(do_xcom_push=False).execute(context)
    assert context["ti"].xcoms == {}


def test_wait_for_completion_false_returns_the_run_id(skyvern: respx.MockRouter) -> None:
    skyvern.post("/v1/run/agents").respond(200, json=ours("wr_1", "queued"))
    store = FakeStateStore()
    assert operator(wait_for_completion=False).execute(make_context(store)) == "wr_1"
    record = store.values[STATE_KEY]  # handed on: a clear starts a new run, a retry gives the same id
    assert (record["phase"], record["run_id"]) == ("handed_on", "wr_1")


# ---- duplicate protection --------------------------------------------------------------------------


def test_a_retry_adopts_the_run_its_first_try_started_and_never_posts_again(
    skyvern: respx.MockRouter,
) -> None:
    post = skyvern.post("/v1/run/agents").respond(200, json=ours("wr_1", "queued"))
    store = FakeStateStore()
    with pytest.raises(TaskDeferred):
        operator().execute(make_context(store, FakeTaskInstance(task_id="report", max_tries=2)))
    skyvern.get("/v1/runs/wr_1").respond(200, json=ours("wr_1", "failed", retry_pending=True, attempt=1))
    context = make_context(store, FakeTaskInstance(task_id="report", try_number=2, max_tries=2))
    with pytest.raises(TaskDeferred) as deferred:
        operator().execute(context)  # a retry pending is still going: adopted, not replaced
    assert post.call_count == 1
    assert deferred.value.trigger.run_id == "wr_1"
    assert context["ti"].xcoms["run_id"] == "wr_1"


def test_changed_parameters_cancel_the_old_run_instead_of_adopting_it(skyvern: respx.MockRouter) -> None:
    post = skyvern.post("/v1/run/agents").respond(200, json=ours("wr_1", "queued"))
    store = FakeStateStore()
    with pytest.raises(TaskDeferred):
        operator().execute(make_context(store))
    skyvern.get("/v1/runs/wr_1").respond(200, json=ours("wr_1", "running"))
    cancel = skyvern.post("/v1/runs/wr_1/cancel").respond(200, json=None)
    post.respond(200, json=ours("wr_2", "queued"))
    with pytest.raises(TaskDeferred) as deferred:
        operator(parameters={**PARAMETERS, "region": "US"}).execute(make_context(store))
    assert (post.call_count, cancel.call_count) == (2, 1)
    assert deferred.value.trigger.run_id == "wr_2"


@pytest.mark.parametrize(
    "failure", [httpx.ReadTimeout("timed out"), httpx.Response(500, json={"error": "x"})]
)
def test_an_ambiguous_post_adopts_the_run_found_by_workflow_id_and_echoed_parameters(
    skyvern: respx.MockRouter, failure: Any
) -> None:
    post = skyvern.post("/v1/run/agents").mock(side_effect=[failure])

    def listed(request: httpx.Request) -> httpx.Response:
        now = datetime.now(timezone.utc).replace(tzinfo=None).isoformat()
        rows = [
            run_list_item("wr_9", "running", "Monthly report", run_type="workflow_run", created_at=now),
            run_list_item("wr_5", "queued", "Monthly report", run_type="workflow_run", created_at=now),
            run_list_item(
                "wr_0", "running", "Monthly report", run_type="workflow_run", created_at="2026-01-01T00:00:00"
            ),
        ]
        return httpx.Response(200, json=rows, headers={"date": formatdate(usegmt=True)})

    listing = skyvern.get("/v1/runs").mock(side_effect=listed)
    skyvern.get("/v1/runs/wr_9").respond(
        200, json=ours("wr_9", "running", run_request=echo({"report_date": "x"}))
    )
    skyvern.get("/v1/runs/wr_5").respond(200, json=ours("wr_5", "queued"))
    store = FakeStateStore()
    with pytest.raises(TaskDeferred) as deferred:
        operator().execute(make_context(store))
    assert post.call_count == 1
    assert deferred.value.trigger.run_id == "wr_5"
    assert store.values[STATE_KEY]["run_id"] == "wr_5"
    params = listing.calls.last.request.url.params
    assert (params["search_key"], params["run_type"], params["tags"]) == (
        WPID,
        "workflow_run",
        f"airflow:{TAG}",
    )


def test_an_ambiguous_post_with_nothing_listed_fails_without_posting_again(skyvern: respx.MockRouter) -> None:
    post = skyvern.post("/v1/run/agents").respond(502)
    store = FakeStateStore()
    with pytest.raises(SkyvernError, match="could not tell whether a Skyvern run was created"):
        operator().execute(make_context(store, FakeTaskInstance(max_tries=3)))
    with pytest.raises(SkyvernError, match=r"^Could not tell yet whether an earlier try's submission"):
        operator().execute(make_context(store, FakeTaskInstance(try_number=2, max_tries=3)))
    assert post.call_count == 1


def test_an_unknown_workflow_is_refused_without_a_retry(skyvern: respx.MockRouter) -> None:
    """A 404 naming what the request refers to (not a missing endpoint) is the same on every retry."""
    post = skyvern.post("/v1/run/agents").respond(404, json={"detail": f"Workflow not found {WPID}"})
    with pytest.raises(
        AirflowFailException,
        match=rf"Skyvern refused to start the run: .*HTTP 404: Workflow not found {WPID}",
    ):
        operator(deferrable=False).execute(make_context(FakeStateStore()))
    assert post.call_count == 1


# ---- replay as code ---------------------------------------------------------------------------------

SCRIPT = {"script_id": "s_1", "script_revision_id": "sr_2"}


def replayed(fallback: bool) -> dict[str, Any]:
    return done(run_with="code", script_run={"ai_fallback_triggered": fallback, **SCRIPT})


def test_a_replayed_run_says_so_and_hands_its_script_run_on(
    skyvern: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    skyvern.post("/v1/run/agents").respond(200, json=replayed(fallback=False))
    context = make_context()
    assert operator(run_with="code").execute(context) == OUTPUT
    xcoms = context["ti"].xcoms
    assert xcoms["script_run"] == {"ai_fallback_triggered": False, **SCRIPT}
    assert xcoms["ai_fallback_streak"] == 0
    assert xcoms["usage"]["replayed_as_code"] == 1
    log = capsys.readouterr().out
    assert "Skyvern run wr_1 replayed cached code (script s_1, revision sr_2): no AI steps" in log
    assert "Skyvern cost: run wr_1 took 6 steps (replayed cached code)" in log


def test_a_first_code_run_says_it_ran_as_an_agent_and_records_the_script(
    skyvern: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    skyvern.post("/v1/run/agents").respond(200, json=done(script_run=None))
    context = make_context()
    operator(run_with="code").execute(context)
    assert context["ti"].xcoms.get("script_run") is None  # Airflow 3.0 stores no None XCom: none pushed
    assert context["ti"].xcoms["usage"]["replayed_as_code"] == 0
    assert (
        "Skyvern run wr_1 ran as an agent: no cached script for its cache key yet (run_with='code'); Skyvern "
        "records one from this run for the next to replay" in capsys.readouterr().out
    )


@pytest.mark.parametrize(("policy", "warned"), [("allow", False), ("warn", True)])
def test_when_the_ai_took_over_the_log_says_so_and_the_streak_starts(
    skyvern: respx.MockRouter, capsys: pytest.CaptureFixture[str], policy: str, warned: bool
) -> None:
    skyvern.post("/v1/run/agents").respond(200, json=replayed(fallback=True))
    context = make_context()
    assert operator(run_with="code", on_ai_fallback=policy).execute(context) == OUTPUT
    assert context["ti"].xcoms["script_run"]["ai_fallback_triggered"] is True
    assert context["ti"].xcoms["ai_fallback_streak"] == 1
    log = capsys.readouterr().out
    assert "the cached script (script s_1, revision sr_2) failed on the page and the AI took over" in log
    assert "Skyvern cost: run wr_1 took 6 steps (the AI took over from cached code)" in log
    said = [
        line
        for line in log.splitlines()
        if "the AI took over from the cached script; if the site changed" in line
    ]
    assert bool(said) is warned
    assert all("warning" in line.lower() for line in said)


def test_on_ai_fallback_fail_fails_the_task_after_handing_its_xcoms_on(skyvern: respx.MockRouter) -> None:
    skyvern.post("/v1/run/agents").respond(200, json=replayed(fallback=True))
    context = make_context()
    with pytest.raises(AirflowFailException) as raised:
        operator(run_with="code", on_ai_fallback="fail").execute(context)
    assert str(raised.value) == (
        "Skyvern run wr_1: the AI took over from the cached script; if the site changed, review the script at "
        "https://app.skyvern.com/runs/wr_1 (on_ai_fallback='fail')"
    )
    assert context["ti"].xcoms["script_run"]["ai_fallback_triggered"] is True
    assert "return_value" not in context["ti"].xcoms


def test_a_streak_of_takeovers_across_dag_runs_says_to_review_the_script(
    skyvern: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    skyvern.post("/v1/run/agents").respond(200, json=replayed(fallback=True))
    context = make_context()
    context["ti"].xcoms["ai_fallback_streak"] = 2  # what yesterday's run pushed
    operator(run_with="code").execute(context)
    assert context["ti"].xcoms["ai_fallback_streak"] == 3
    assert (
        "The AI took over from the cached script in 3 scheduled runs in a row (now run wr_1): the site changed; "
        "review the script at https://app.skyvern.com/runs/wr_1" in capsys.readouterr().out
    )


def test_a_replayed_run_ends_a_streak(skyvern: respx.MockRouter) -> None:
    skyvern.post("/v1/run/agents").respond(200, json=replayed(fallback=False))
    context = make_context()
    context["ti"].xcoms["ai_fallback_streak"] = 4
    operator(run_with="code").execute(context)
    assert context["ti"].xcoms["ai_fallback_streak"] == 0


def test_on_ai_fallback_is_checked_at_parse_time() -> None:
    with pytest.raises(
        ValueError, match=r"on_ai_fallback: 'sometimes' is not accepted; use one of allow, warn"
    ):
        operator(on_ai_fallback="sometimes")

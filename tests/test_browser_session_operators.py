"""The browser-session setup/teardown operators and their helper: the requests on the wire, parse-time checks,
XComs, idempotent closing, a lost create answer, and the setup/teardown wiring of skyvern_browser_session."""

from __future__ import annotations

import json
import runpy
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from airflow.exceptions import AirflowProviderDeprecationWarning
from airflow.sdk import DAG

from airflow_provider_skyvern.compat import AirflowFailException
from airflow_provider_skyvern.exceptions import SkyvernError
from airflow_provider_skyvern.operators.browser_session import (
    SkyvernCloseBrowserSessionOperator,
    SkyvernCreateBrowserSessionOperator,
    skyvern_browser_session,
)
from tests.conftest import API_KEY, FastClock
from tests.operator_support import FakeTaskInstance, make_context
from tests.payloads import browser_session

pytestmark = pytest.mark.usefixtures("skyvern_conn", "no_waits")


@pytest.fixture
def no_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    FastClock(monkeypatch)


def session(session_id: str = "pbs_1", **fields: Any) -> dict[str, Any]:
    return {**browser_session(session_id), "browser_address": "wss://cdp.example/pbs_1", **fields}


# ---- create -----------------------------------------------------------------------------------------


def test_create_sends_the_set_fields_and_pushes_the_session_id(
    skyvern: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    post = skyvern.post("/v1/browser_sessions").respond(
        200, json=session(timeout=240, app_url="https://app/pbs_1", warning="timeout capped at 240 minutes")
    )
    op = SkyvernCreateBrowserSessionOperator(
        task_id="open",
        session_timeout=timedelta(hours=4),
        url="https://portal.example.com",
        proxy_location="RESIDENTIAL_GB",
        extensions=["ad-blocker"],
        browser_type="chrome",
        browser_profile_id="bp_1",
    )
    context = make_context()

    assert op.execute(context) == "pbs_1"

    assert json.loads(post.calls.last.request.content) == {
        "timeout": 240,
        "url": "https://portal.example.com",
        "proxy_location": "RESIDENTIAL_GB",
        "extensions": ["ad-blocker"],
        "browser_type": "chrome",
        "browser_profile_id": "bp_1",
    }
    assert context["ti"].xcoms == {
        "browser_session_id": "pbs_1",
        "browser_address": "wss://cdp.example/pbs_1",
        "app_url": "https://app/pbs_1",
    }
    out = capsys.readouterr().out
    assert "Skyvern: timeout capped at 240 minutes (browser session pbs_1)" in out
    assert API_KEY not in out


@pytest.mark.parametrize(
    ("session_timeout", "minutes"),
    [(timedelta(minutes=90), 90), (timedelta(hours=4), 240), (5, 5), (None, 60)],
)
def test_session_timeout_takes_a_timedelta_or_minutes(
    skyvern: respx.MockRouter, session_timeout: Any, minutes: int
) -> None:
    post = skyvern.post("/v1/browser_sessions").respond(200, json=session(timeout=minutes))
    SkyvernCreateBrowserSessionOperator(task_id="open", session_timeout=session_timeout).execute(
        make_context()
    )
    assert json.loads(post.calls.last.request.content) == {"timeout": minutes}


@pytest.mark.parametrize(
    ("session_timeout", "problem"),
    [
        (4, "must be 5 to 240 minutes (a timedelta, or an integer of minutes), got 4"),
        (241, "must be 5 to 240 minutes (a timedelta, or an integer of minutes), got 241"),
        (timedelta(hours=5), "must be 5 to 240 minutes (a timedelta, or an integer of minutes), got 5:00:00"),
        ("60", "must be 5 to 240 minutes (a timedelta, or an integer of minutes), got '60'"),
        (30.5, "must be 5 to 240 minutes (a timedelta, or an integer of minutes), got 30.5"),
        (True, "must be 5 to 240 minutes (a timedelta, or an integer of minutes), got True"),
        (timedelta(minutes=30, seconds=30), "Skyvern keeps a session for whole minutes, got 0:30:30"),
    ],
)
def test_a_session_timeout_skyvern_would_refuse_fails_the_parse_naming_the_field(
    session_timeout: Any, problem: str
) -> None:
    with pytest.raises(ValueError, match="session_timeout") as caught:
        SkyvernCreateBrowserSessionOperator(task_id="open", session_timeout=session_timeout)
    assert (
        str(caught.value) == f"SkyvernCreateBrowserSessionOperator(task_id='open') session_timeout: {problem}"
    )


def test_timeout_in_minutes_still_works_with_a_deprecation_warning(skyvern: respx.MockRouter) -> None:
    """Every other ``timeout`` in Airflow is seconds: the minutes one is renamed, and kept working."""
    post = skyvern.post("/v1/browser_sessions").respond(200, json=session(timeout=30))
    with pytest.warns(AirflowProviderDeprecationWarning) as warned:
        op = SkyvernCreateBrowserSessionOperator(task_id="open", timeout=30)
    assert str(warned[0].message) == (
        "SkyvernCreateBrowserSessionOperator(task_id='open'): timeout is deprecated, as it counts minutes "
        "where every other Airflow timeout counts seconds; use session_timeout=timedelta(minutes=30)"
    )
    op.execute(make_context())
    assert json.loads(post.calls.last.request.content) == {"timeout": 30}
    with (
        pytest.warns(AirflowProviderDeprecationWarning),
        pytest.raises(ValueError, match="timeout: must be 5"),
    ):
        SkyvernCreateBrowserSessionOperator(task_id="open", timeout=600)


def test_timeout_and_session_timeout_together_fail_the_parse() -> None:
    with pytest.raises(ValueError, match="session_timeout") as caught:
        SkyvernCreateBrowserSessionOperator(task_id="open", timeout=30, session_timeout=timedelta(minutes=30))
    assert str(caught.value) == (
        "SkyvernCreateBrowserSessionOperator(task_id='open') session_timeout: give it alone, without the "
        "deprecated timeout (minutes)"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"extensions": ["popup-blocker"]}, "extensions: must be a list of ad-blocker, captcha-solver"),
        ({"browser_type": "lynx"}, "browser_type: 'lynx' is not accepted"),
        ({"url": "example.com"}, "url: 'example.com' is not a URL"),
    ],
)
def test_other_bad_values_fail_the_parse_too(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SkyvernCreateBrowserSessionOperator(task_id="open", **kwargs)


def test_a_templated_url_is_checked_after_rendering(skyvern: respx.MockRouter) -> None:
    op = SkyvernCreateBrowserSessionOperator(task_id="open", url="{{ params.start }}")
    op.render_template_fields({"params": {"start": "not a url"}})
    with pytest.raises(AirflowFailException, match="url: 'not a url' is not a URL"):
        op.execute(make_context())


def test_a_refused_create_says_so(skyvern: respx.MockRouter) -> None:
    skyvern.post("/v1/browser_sessions").respond(404, json={"detail": "Browser profile bp_9 not found"})
    with pytest.raises(SkyvernError, match=r"^Opening a Skyvern browser session failed: .*bp_9 not found"):
        SkyvernCreateBrowserSessionOperator(task_id="open").execute(make_context())


def test_a_lost_create_answer_never_claims_no_session_and_lists_the_candidates(
    skyvern: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    post = skyvern.post("/v1/browser_sessions").mock(side_effect=[httpx.ReadTimeout("timed out")])
    now = datetime.now(timezone.utc).isoformat()
    skyvern.get("/v1/browser_sessions").respond(
        200,
        json=[
            session("pbs_new", created_at=now),
            session("pbs_old", created_at="2026-01-01T00:00:00Z", status="completed"),
        ],
    )
    context = make_context()

    with pytest.raises(SkyvernError) as caught:
        SkyvernCreateBrowserSessionOperator(task_id="open", session_timeout=30).execute(context)

    assert "could not tell whether a Skyvern browser session was created" in str(caught.value)
    assert "it ends by itself after its timeout (30 minutes)" in str(caught.value)
    assert post.call_count == 1  # never sent again: it may have opened one
    out = capsys.readouterr().out
    assert "opened since the lost request (one may be this task's): pbs_new (running)" in out
    assert "pbs_old" not in out
    assert context["ti"].xcoms == {}


# ---- a setup stopped by the user ----------------------------------------------------------------------


class Terminated(BaseException):
    """What Airflow's SIGTERM handler raises once ``on_kill`` returned (mark failed, a clear)."""


def _stopped_once(op: SkyvernCreateBrowserSessionOperator, context: dict[str, Any]) -> None:
    """The user marks the task failed or clears it now: Airflow calls ``on_kill``, then the try ends."""
    op.on_kill()
    raise Terminated


def test_a_setup_marked_failed_after_it_opened_its_session_closes_it(
    skyvern: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failed setup leaves its teardown upstream_failed, and a cleared one's next try opens its own session:
    nothing else would close this one before its timeout (found by the simulator)."""
    skyvern.post("/v1/browser_sessions").respond(200, json=session())
    close = skyvern.post("/v1/browser_sessions/pbs_1/close").respond(
        200, json={"message": "Browser session closed"}
    )
    op = SkyvernCreateBrowserSessionOperator(task_id="open", session_timeout=30)
    context = make_context()

    assert op.execute(context) == "pbs_1"
    with pytest.raises(Terminated):
        _stopped_once(op, context)  # before Airflow pushed the return value

    assert close.call_count == 1
    assert (
        "Closed Skyvern browser session pbs_1: the task was stopped before its teardown"
        in capsys.readouterr().out
    )


def test_a_setup_stopped_while_its_create_is_in_flight_closes_the_session_the_create_opened(
    skyvern: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    """The signal lands while the POST waits for its answer: the session it opened is the only one with this
    timeout opened since, and is closed; another task's, opened before, is left alone."""
    op = SkyvernCreateBrowserSessionOperator(task_id="open", session_timeout=30)
    context = make_context()
    listed = skyvern.get("/v1/browser_sessions")

    def created_then_stopped(request: httpx.Request) -> httpx.Response:
        now = datetime.now(timezone.utc).isoformat()
        listed.respond(
            200,
            json=[
                session("pbs_other", created_at="2026-01-01T00:00:00Z", timeout=30),
                session("pbs_2", created_at=now, timeout=30),
            ],
        )
        _stopped_once(op, context)
        raise AssertionError("unreachable")

    skyvern.post("/v1/browser_sessions").mock(side_effect=created_then_stopped)
    close = skyvern.post("/v1/browser_sessions/pbs_2/close").respond(
        200, json={"message": "Browser session closed"}
    )
    close_other = skyvern.post("/v1/browser_sessions/pbs_other/close").respond(
        200, json={"message": "Browser session closed"}
    )

    with pytest.raises(Terminated):
        op.execute(context)

    assert (close.call_count, close_other.call_count) == (1, 0)
    assert "Closed Skyvern browser session pbs_2" in capsys.readouterr().out


def test_a_setup_stopped_in_flight_says_a_session_may_be_left_open_when_it_finds_none(
    skyvern: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    op = SkyvernCreateBrowserSessionOperator(task_id="open", session_timeout=30)
    context = make_context()
    skyvern.get("/v1/browser_sessions").respond(200, json=[])
    skyvern.post("/v1/browser_sessions").mock(side_effect=lambda request: _stopped_once(op, context))

    with pytest.raises(Terminated):
        op.execute(context)

    out = capsys.readouterr().out
    assert "a Skyvern browser session may be left open" in out
    assert "it ends by itself after its timeout (30 minutes)" in out


# ---- close ------------------------------------------------------------------------------------------


def test_close_closes_and_logs_the_final_status(
    skyvern: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    close = skyvern.post("/v1/browser_sessions/pbs_1/close").respond(
        200, json={"message": "Browser session closed"}
    )
    skyvern.get("/v1/browser_sessions/pbs_1").respond(200, json=session(status="completed"))

    SkyvernCloseBrowserSessionOperator(task_id="close", browser_session_id=" pbs_1 ").execute(make_context())

    assert close.call_count == 1
    assert close.calls.last.request.content == b""  # no body, as the SDK sends it
    assert "Closed Skyvern browser session pbs_1 (completed)" in capsys.readouterr().out


def test_a_session_skyvern_no_longer_knows_counts_as_closed(
    skyvern: respx.MockRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    skyvern.post("/v1/browser_sessions/pbs_1/close").respond(
        404, json={"detail": "Browser session pbs_1 not found"}
    )
    SkyvernCloseBrowserSessionOperator(task_id="close", browser_session_id="pbs_1").execute(make_context())
    assert "Skyvern browser session pbs_1 not found" in capsys.readouterr().out


def test_a_wrong_base_url_is_not_mistaken_for_a_closed_session(skyvern: respx.MockRouter) -> None:
    skyvern.post("/v1/browser_sessions/pbs_1/close").respond(404, json={"detail": "Not Found"})
    with pytest.raises(SkyvernError, match="no such endpoint"):
        SkyvernCloseBrowserSessionOperator(task_id="close", browser_session_id="pbs_1").execute(
            make_context()
        )


@pytest.mark.parametrize("rendered", ["None", "", "  "])
def test_no_session_id_means_nothing_to_close(
    skyvern: respx.MockRouter, capsys: pytest.CaptureFixture[str], rendered: str
) -> None:
    SkyvernCloseBrowserSessionOperator(task_id="close", browser_session_id=rendered).execute(make_context())
    assert "No Skyvern browser session id to close" in capsys.readouterr().out
    assert not [call for call in skyvern.calls if call.request.method == "POST"]


def test_close_refuses_a_non_string_id_at_parse_time() -> None:
    with pytest.raises(ValueError, match="browser_session_id: must be a session id string"):
        SkyvernCloseBrowserSessionOperator(task_id="close", browser_session_id=42)


# ---- the helper -------------------------------------------------------------------------------------


def test_the_helper_makes_a_setup_and_its_teardown_linked_by_xcom_only() -> None:
    with DAG("sessions", schedule=None):
        tasks = skyvern_browser_session("portal", session_timeout=timedelta(minutes=30))

    assert (tasks.create.task_id, tasks.close.task_id) == ("portal_create", "portal_close")
    assert tasks.create.is_setup
    assert tasks.close.is_teardown
    assert tasks.close.trigger_rule == "all_done_setup_success"
    assert tasks.create.session_timeout == timedelta(minutes=30)
    assert tasks.close.upstream_task_ids == {"portal_create"}
    assert tasks.browser_session_id == (
        "{{ ti.xcom_pull(task_ids='portal_create', key='browser_session_id') }}"
    )
    assert tasks.close.browser_session_id == tasks.browser_session_id

    tasks.close.render_template_fields({"ti": _ti_with(browser_session_id="pbs_5")})
    assert tasks.close.browser_session_id == "pbs_5"


def test_the_helper_checks_the_create_arguments_at_parse_time() -> None:
    with DAG("sessions", schedule=None), pytest.raises(ValueError, match="session_timeout: must be 5 to 240"):
        skyvern_browser_session("portal", session_timeout=600)


def _ti_with(**xcoms: Any) -> FakeTaskInstance:
    ti = FakeTaskInstance()
    ti.xcoms.update(xcoms)
    return ti


def test_the_example_dags_session_outlasts_the_login_and_the_download_run_in_it(
    skyvern: respx.MockRouter,
) -> None:
    """The session closes by itself after its timeout: a shorter one would close the browser mid-download."""
    example = runpy.run_path(str(Path(__file__).parents[1] / "example_dags" / "skyvern_login_download.py"))
    post = skyvern.post("/v1/browser_sessions").respond(200, json=session())
    example["session"].create.execute(make_context())
    session_minutes = json.loads(post.calls.last.request.content)["timeout"]
    using_it = [example["log_in"], example["invoices"]]  # one after the other in the same browser
    assert session_minutes * 60 > sum(task.timeout for task in using_it)

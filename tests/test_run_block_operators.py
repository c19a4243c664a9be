"""SkyvernLoginOperator and SkyvernDownloadFilesOperator: the request on the wire, parse-time checks, the
shared waiting/XCom machinery, and what a retry does when an earlier try's login or download cannot be found."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import respx
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_skyvern.compat import AirflowFailException
from airflow_provider_skyvern.exceptions import SkyvernError
from airflow_provider_skyvern.operators.base import SkyvernRunFailedError
from airflow_provider_skyvern.operators.download_files import SkyvernDownloadFilesOperator
from airflow_provider_skyvern.operators.login import SkyvernLoginOperator
from airflow_provider_skyvern.runs.events import RunEvent
from airflow_provider_skyvern.runs.ledger import STATE_KEY
from tests.conftest import API_KEY, FastClock
from tests.operator_support import FakeStateStore, FakeTaskInstance, make_context
from tests.payloads import workflow_run

pytestmark = pytest.mark.usefixtures("skyvern_conn", "no_waits")
FILES = [
    {
        "url": "https://files.example.com/inv.pdf?sig=1",
        "filename": "inv.pdf",
        "checksum": "ab12",
        "file_size": 9,
    }
]


@pytest.fixture
def no_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    FastClock(monkeypatch)


def login(**kwargs: Any) -> SkyvernLoginOperator:
    kwargs.setdefault("credential_type", "skyvern")
    kwargs.setdefault("credential_id", "cred_42")
    kwargs.setdefault("deferrable", True)
    return SkyvernLoginOperator(task_id="login", **kwargs)


def download(**kwargs: Any) -> SkyvernDownloadFilesOperator:
    kwargs.setdefault("navigation_goal", "Download last month's invoice")
    kwargs.setdefault("deferrable", True)
    return SkyvernDownloadFilesOperator(task_id="download", **kwargs)


def run(run_id: str, status: str, **fields: Any) -> dict[str, Any]:
    return workflow_run(run_id, status, run_request={"workflow_id": "wpid_99", "title": "Login"}, **fields)


# ---- the request ------------------------------------------------------------------------------------


def test_login_sends_the_wire_credential_type_and_every_field_then_defers(skyvern: respx.MockRouter) -> None:
    post = skyvern.post("/v1/run/tasks/login").respond(200, json=run("wr_1", "created"))
    op = login(
        credential_type="OnePassword",
        credential_id=None,
        onepassword_vault_id="vault-1",
        onepassword_item_id="item-2",
        onepassword_totp_field_name="otp",
        prompt="Log in and accept the cookie banner",
        url="https://portal.example.com/login",
        webhook_url="https://hooks.example.com/skyvern",
        proxy_location="RESIDENTIAL_GB",
        totp_identifier="ops@example.com",
        totp_url="https://totp.example.com/code",
        browser_session_id="pbs_7",
        browser_profile_id="bp_1",
        browser_address="ws://browser.internal:9222",
        extra_http_headers={"Accept-Language": "en"},
        max_screenshot_scrolling_times=2,
        user_agent="airflow-ci",
    )
    context = make_context(FakeStateStore())
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    request = post.calls.last.request
    assert json.loads(request.content) == {
        "credential_type": "1password",
        "onepassword_vault_id": "vault-1",
        "onepassword_item_id": "item-2",
        "onepassword_totp_field_name": "otp",
        "prompt": "Log in and accept the cookie banner",
        "url": "https://portal.example.com/login",
        "webhook_url": "https://hooks.example.com/skyvern",
        "proxy_location": "RESIDENTIAL_GB",
        "totp_identifier": "ops@example.com",
        "totp_url": "https://totp.example.com/code",
        "browser_session_id": "pbs_7",
        "browser_profile_id": "bp_1",
        "browser_address": "ws://browser.internal:9222",
        "extra_http_headers": {"Accept-Language": "en"},
        "max_screenshot_scrolling_times": 2,
    }
    assert request.headers["x-user-agent"] == "airflow-ci"
    assert deferred.value.trigger.run_id == "wr_1"
    assert context["ti"].xcoms["run_id"] == "wr_1"


def test_download_sends_its_goal_and_settings_only(skyvern: respx.MockRouter) -> None:
    post = skyvern.post("/v1/run/tasks/download_files").respond(200, json=run("wr_2", "queued"))
    op = download(
        download_suffix="{{ original_filename }}-eu",
        download_timeout=120,
        max_steps_per_run=12,
        browser_session_id="pbs_7",
    )
    with pytest.raises(TaskDeferred):
        op.execute(make_context())
    assert json.loads(post.calls.last.request.content) == {
        "navigation_goal": "Download last month's invoice",
        "download_suffix": "{{ original_filename }}-eu",  # for Skyvern to fill in: not an Airflow template
        "download_timeout": 120,
        "max_steps_per_run": 12,
        "browser_session_id": "pbs_7",
    }


def test_templates_render_into_the_request(skyvern: respx.MockRouter) -> None:
    assert "download_suffix" not in SkyvernDownloadFilesOperator.template_fields
    assert {"credential_id", "browser_session_id", "prompt"} <= set(SkyvernLoginOperator.template_fields)
    assert SkyvernLoginOperator.template_fields_renderers["extra_http_headers"] == "json"
    post = skyvern.post("/v1/run/tasks/login").respond(200, json=run("wr_1", "created"))
    op = login(credential_id="{{ params.cred }}", browser_session_id="{{ params.session }}")
    op.render_template_fields({"params": {"cred": "cred_7", "session": "pbs_3"}})
    with pytest.raises(TaskDeferred):
        op.execute(make_context())
    body = json.loads(post.calls.last.request.content)
    assert (body["credential_id"], body["browser_session_id"]) == ("cred_7", "pbs_3")


# ---- parse-time checks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: login(credential_type="lastpass"), "credential_type: 'lastpass' is not accepted"),
        (lambda: login(credential_id=None), "credential_id: is required when credential_type is 'skyvern'"),
        (
            lambda: login(credential_type="1password", onepassword_vault_id="v"),
            "onepassword_item_id: is required when credential_type is '1password'",
        ),
        (
            lambda: login(credential_type="azure_vault", azure_vault_name="kv"),
            "azure_vault_username_key: is required when credential_type is 'azure_vault'",
        ),
        (
            lambda: login(proxy_location={"country": "US"}),
            "proxy_location: {'country': 'US'} is not accepted",
        ),
        (lambda: login(url="portal.example.com"), "url: 'portal.example.com' is not a URL"),
        (lambda: login(user_agent="skyvern-ui"), "user_agent: 'skyvern-ui' is not accepted"),
        (lambda: download(navigation_goal=" "), "navigation_goal: must be a non-empty string"),
        (lambda: download(download_timeout=0), "download_timeout: must be a number > 0"),
        (lambda: download(max_steps_per_run=2.5), "max_steps_per_run: must be an integer > 0"),
        (lambda: download(timeout=-1), "timeout: must be a number > 0"),
    ],
)
def test_bad_values_fail_the_parse_with_one_line_naming_the_field(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=r"^Skyvern") as caught:
        make()
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_login_without_credential_type_names_the_task_and_the_accepted_values() -> None:
    with pytest.raises(ValueError, match="credential_type") as caught:
        SkyvernLoginOperator(task_id="log_in", credential_id="cred_42")
    assert str(caught.value) == (
        "SkyvernLoginOperator(task_id='log_in') credential_type: is required; "
        "use one of skyvern, bitwarden, 1password, azure_vault"
    )


def test_templated_values_are_checked_only_after_rendering(skyvern: respx.MockRouter) -> None:
    login(credential_type="{{ var.value.kind }}", credential_id=None)  # parses: the type is known later
    download(navigation_goal="{{ params.goal }}")
    op = login(browser_session_id="{{ ti.xcom_pull(task_ids='none', key='browser_session_id') }}")
    op.render_template_fields({"ti": FakeTaskInstance()})  # nobody pushed it: renders "None"
    with pytest.raises(AirflowFailException, match="browser_session_id: must be a Skyvern id string"):
        op.execute(make_context())


# ---- completion -------------------------------------------------------------------------------------


def test_download_completion_pushes_downloaded_files_and_the_common_xcoms(skyvern: respx.MockRouter) -> None:
    output = {"file_download_output": {"status": "completed"}, "extracted_information": []}
    skyvern.get("/v1/runs/wr_2").respond(
        200,
        json=run(
            "wr_2",
            "completed",
            output=output,
            downloaded_files=FILES,
            step_count=4,
            browser_session_id="pbs_7",
        ),
    )
    context = make_context()
    event = RunEvent("terminal", "wr_2", "completed").to_payload()

    assert download().execute_complete(context, event, run_id="wr_2", app_url="https://app/wr_2") == output
    xcoms = context["ti"].xcoms
    assert xcoms["downloaded_files"] == [
        {
            "url": "https://files.example.com/inv.pdf?sig=1",
            "filename": "inv.pdf",
            "checksum": "ab12",
            "size": 9,
        }
    ]
    assert (xcoms["status"], xcoms["step_count"], xcoms["browser_session_id"]) == ("completed", 4, "pbs_7")
    assert API_KEY not in json.dumps(xcoms)


def test_blocking_login_waits_and_fails_with_skyverns_reason(skyvern: respx.MockRouter) -> None:
    skyvern.post("/v1/run/tasks/login").respond(200, json=run("wr_1", "queued"))
    skyvern.get("/v1/runs/wr_1").mock(
        side_effect=[
            httpx.Response(200, json=run("wr_1", "running")),
            httpx.Response(200, json=run("wr_1", "failed", failure_reason="Invalid username or password")),
            httpx.Response(200, json=run("wr_1", "failed", failure_reason="Invalid username or password")),
        ]
    )
    with pytest.raises(
        SkyvernRunFailedError, match=r"^Skyvern run wr_1 ended failed: Invalid username or password$"
    ):
        login(deferrable=False).execute(make_context())


# ---- duplicate protection ---------------------------------------------------------------------------


def test_a_retry_adopts_the_recorded_login_run_and_never_posts_again(skyvern: respx.MockRouter) -> None:
    post = skyvern.post("/v1/run/tasks/login").respond(200, json=run("wr_1", "queued"))
    store = FakeStateStore()
    with pytest.raises(TaskDeferred):
        login().execute(make_context(store, FakeTaskInstance(task_id="login", max_tries=2)))
    skyvern.get("/v1/runs/wr_1").respond(200, json=run("wr_1", "running"))
    with pytest.raises(TaskDeferred) as deferred:
        login().execute(make_context(store, FakeTaskInstance(task_id="login", try_number=2, max_tries=2)))
    assert post.call_count == 1
    assert deferred.value.trigger.run_id == "wr_1"


@pytest.mark.parametrize(
    "failure", [httpx.ReadTimeout("timed out"), httpx.Response(500, json={"error": "x"})]
)
def test_a_lost_answer_fails_every_retry_saying_it_could_not_tell(
    skyvern: respx.MockRouter, failure: Any
) -> None:
    """Nothing on the server tells this task's download run from another: no look, no second POST."""
    post = skyvern.post("/v1/run/tasks/download_files").mock(side_effect=[failure])
    listing = skyvern.get("/v1/runs").respond(200, json=[])
    store = FakeStateStore()
    ti = FakeTaskInstance(task_id="download", max_tries=2)

    with pytest.raises(
        SkyvernError, match=r"could not tell whether a Skyvern run was created: .*ad-hoc workflow"
    ):
        download().execute(make_context(store, ti))
    assert store.values[STATE_KEY]["run_id"] is None  # the submission stays on record
    retry = FakeTaskInstance(task_id="download", try_number=2, max_tries=2)
    with pytest.raises(SkyvernError, match=r"^Could not tell whether an earlier try's submission .* created"):
        download().execute(make_context(store, retry))
    assert post.call_count == 1
    assert listing.call_count == 0  # looking could only mislead


def test_a_clear_after_a_lost_answer_starts_a_new_run(skyvern: respx.MockRouter) -> None:
    post = skyvern.post("/v1/run/tasks/download_files").mock(
        side_effect=[httpx.Response(502), httpx.Response(200, json=run("wr_3", "queued"))]
    )
    store = FakeStateStore()
    with pytest.raises(
        AirflowFailException, match=r"could not tell.*last try.*clear the task to start a new one"
    ):
        download().execute(make_context(store, FakeTaskInstance(task_id="download", max_tries=0)))
    cleared = FakeTaskInstance(task_id="download", max_tries=1)  # a clear raises max_tries
    with pytest.raises(TaskDeferred) as deferred:
        download().execute(make_context(store, cleared))
    assert post.call_count == 2
    assert deferred.value.trigger.run_id == "wr_3"


def test_without_a_state_store_a_lost_answer_still_says_it_could_not_tell(skyvern: respx.MockRouter) -> None:
    """Airflow < 3.3: a retry would find nothing and start a second run, so none follows, and it says so."""
    skyvern.post("/v1/run/tasks/login").respond(503, json={"detail": "upstream gone"})
    with pytest.raises(AirflowFailException) as raised:
        login().execute(make_context(ti=FakeTaskInstance(task_id="log_in", max_tries=3)))
    message = str(raised.value)
    assert "could not tell whether a Skyvern run was created" in message
    assert "the next try" not in message
    assert message.endswith(
        "without Airflow 3.3's task state store no retry could find that run, so the task fails without "
        "retrying: look for it among Skyvern's runs, then clear the task to start a new one"
    )

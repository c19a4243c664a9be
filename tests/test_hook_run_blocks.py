"""SkyvernHook's login, download_files and session-list calls against respx: the exact requests on the wire."""

from __future__ import annotations

import json
from typing import Any

import pytest
import respx

from airflow_provider_skyvern.exceptions import SkyvernError
from airflow_provider_skyvern.hooks.skyvern import SkyvernHook
from airflow_provider_skyvern.models import WorkflowRunResponse
from airflow_provider_skyvern.requests.run_block import DownloadFilesRequest, LoginRequest
from tests.conftest import API_KEY, BASE_URL
from tests.payloads import browser_session, workflow_run

pytestmark = pytest.mark.usefixtures("skyvern_conn")

LOGIN = LoginRequest(
    credential_type="1password",
    url="https://portal.example.com/login",
    onepassword_vault_id="vault-1",
    onepassword_item_id="item-2",
    browser_session_id="pbs_9",
    totp_identifier="ops@example.com",
)


def _body(route: respx.Route) -> Any:
    return json.loads(route.calls.last.request.content)


@respx.mock(base_url=BASE_URL, assert_all_called=True)
def test_login_posts_the_set_fields_only_with_the_wire_credential_type(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post("/v1/run/tasks/login").respond(200, json=workflow_run("wr_1", "created"))

    run = SkyvernHook().run_login(LOGIN, user_agent="nightly-dag")

    assert isinstance(run, WorkflowRunResponse)
    assert run.run_id == "wr_1"
    assert _body(route) == {
        "credential_type": "1password",
        "url": "https://portal.example.com/login",
        "onepassword_vault_id": "vault-1",
        "onepassword_item_id": "item-2",
        "browser_session_id": "pbs_9",
        "totp_identifier": "ops@example.com",
    }
    headers = route.calls.last.request.headers
    assert headers["x-user-agent"] == "nightly-dag"
    assert headers["x-api-key"] == API_KEY


@respx.mock(base_url=BASE_URL, assert_all_called=True)
def test_download_files_posts_its_goal_and_download_settings(respx_mock: respx.MockRouter) -> None:
    route = respx_mock.post("/v1/run/tasks/download_files").respond(200, json=workflow_run("wr_2", "created"))
    request = DownloadFilesRequest(
        navigation_goal="Download every invoice of last month",
        url="https://portal.example.com/invoices",
        download_suffix="{{ original_filename }}-2026",
        download_timeout=90.5,
        max_steps_per_run=8,
        max_screenshot_scrolling_times=2,
    )

    run = SkyvernHook().run_download_files(request)

    assert run.run_id == "wr_2"
    assert _body(route) == {
        "navigation_goal": "Download every invoice of last month",
        "url": "https://portal.example.com/invoices",
        "download_suffix": "{{ original_filename }}-2026",
        "download_timeout": 90.5,
        "max_steps_per_run": 8,
        "max_screenshot_scrolling_times": 2,
    }
    assert "x-user-agent" not in route.calls.last.request.headers


@respx.mock(base_url=BASE_URL, assert_all_called=True)
async def test_async_forms_send_the_same_requests(respx_mock: respx.MockRouter) -> None:
    login = respx_mock.post("/v1/run/tasks/login").respond(200, json=workflow_run("wr_3", "created"))
    download = respx_mock.post("/v1/run/tasks/download_files").respond(
        200, json=workflow_run("wr_4", "created")
    )
    async with SkyvernHook() as hook:
        assert (await hook.arun_login(LOGIN)).run_id == "wr_3"
        assert (await hook.arun_download_files(DownloadFilesRequest(navigation_goal="g"))).run_id == "wr_4"
    assert _body(login)["credential_type"] == "1password"
    assert _body(download) == {"navigation_goal": "g"}


@pytest.mark.parametrize("path", ["/v1/run/tasks/login", "/v1/run/tasks/download_files"])
@respx.mock(base_url=BASE_URL, assert_all_called=True)
def test_a_500_after_sending_is_not_retried(respx_mock: respx.MockRouter, path: str) -> None:
    """The POST may have created the run: sending it again could start a second paid run."""
    route = respx_mock.post(path).respond(500, json={"error": "Unexpected error: KeyError"})
    hook = SkyvernHook()
    start = (
        (lambda: hook.run_login(LOGIN))
        if path.endswith("login")
        else (lambda: hook.run_download_files(DownloadFilesRequest(navigation_goal="g")))
    )

    with pytest.raises(SkyvernError, match="500"):
        start()
    assert route.call_count == 1


@respx.mock(base_url=BASE_URL, assert_all_called=True)
def test_list_browser_sessions(respx_mock: respx.MockRouter) -> None:
    respx_mock.get("/v1/browser_sessions").respond(
        200, json=[browser_session("pbs_1"), browser_session("pbs_2")]
    )

    sessions = SkyvernHook().list_browser_sessions()

    assert [s.browser_session_id for s in sessions] == ["pbs_1", "pbs_2"]


@pytest.mark.parametrize(
    ("fields", "wrong"),
    [
        ({"credential_type": "lastpass"}, "credential_type"),
        ({"credential_type": "skyvern", "proxy_location": {"country": "US"}}, "proxy_location"),
        ({"credential_type": "skyvern", "credential": "cred_1"}, "credential"),
    ],
)
def test_login_request_refuses_what_the_server_would(fields: dict[str, Any], wrong: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as caught:
        LoginRequest(**fields)
    assert wrong in str(caught.value)

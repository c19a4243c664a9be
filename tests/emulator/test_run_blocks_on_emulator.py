"""The emulator's login and download_files runs and its browser-session limits, through SkyvernHook and raw HTTP."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from airflow_provider_skyvern.emulator.server import EmulatorServer
from airflow_provider_skyvern.exceptions import SkyvernBadRequestError, SkyvernNotFoundError
from airflow_provider_skyvern.hooks.skyvern import SkyvernHook
from airflow_provider_skyvern.models import CreateBrowserSessionRequest, RunStatus
from airflow_provider_skyvern.requests.run_block import DownloadFilesRequest, LoginRequest
from tests.emulator.conftest import RUN_SECONDS, FakeClock


def _login(**fields: object) -> LoginRequest:
    return LoginRequest.model_validate({"credential_type": "skyvern", "credential_id": "cred_1", **fields})


def test_login_is_a_workflow_run_of_a_new_login_workflow(hook: SkyvernHook, clock: FakeClock) -> None:
    session = hook.create_browser_session()
    first = hook.run_login(
        _login(url="https://portal.example.com", browser_session_id=session.browser_session_id)
    )
    second = hook.run_login(_login())

    assert first.run_id.startswith("wr_")
    assert first.status is RunStatus.created
    assert first.run_request is not None
    assert second.run_request is not None
    assert first.run_request["workflow_id"].startswith("wpid_")
    assert first.run_request["workflow_id"] != second.run_request["workflow_id"]  # one workflow per request
    assert first.run_request["title"] == "Login"
    assert first.run_request["browser_session_id"] == session.browser_session_id
    assert "credential_id" not in first.run_request  # the real server echoes no credential reference

    clock.advance(RUN_SECONDS + 1)
    done = hook.get_run(first.run_id)
    assert done.status is RunStatus.completed
    assert done.downloaded_files is None  # a login downloads nothing
    assert isinstance(done.output, dict)
    assert "login_output" in done.output
    assert [e.block["label"] for e in hook.get_run_timeline(first.run_id) if e.block] == ["login"]


def test_download_files_run_ends_with_its_downloaded_files(hook: SkyvernHook, clock: FakeClock) -> None:
    run = hook.run_download_files(
        DownloadFilesRequest(navigation_goal="Download the latest invoice", url="https://portal.example.com")
    )
    assert hook.get_run(run.run_id).downloaded_files is None  # nothing until the run ends

    clock.advance(RUN_SECONDS + 1)
    done = hook.get_run(run.run_id)

    assert done.status is RunStatus.completed
    (file,) = done.downloaded_files or []
    assert file.filename == "invoice.pdf"
    content = httpx.get(file.url).content
    assert content.startswith(b"%PDF")
    assert (file.checksum, file.file_size) == (hashlib.sha256(content).hexdigest(), len(content))
    assert [item.title for item in hook.list_runs()] == ["File Download"]


@pytest.mark.parametrize(
    ("fields", "status", "detail"),
    [
        ({"credential_type": "skyvern"}, 400, "credential_id is required to login with Skyvern credential"),
        ({"credential_type": "skyvern", "credential_id": "nope"}, 404, "Credential nope not found"),
        (
            {"credential_type": "1password", "onepassword_vault_id": "v"},
            400,
            "onepassword_item_id is required to login with 1Password credential",
        ),
        ({"credential_type": "azure_vault"}, 400, "azure_vault_name is required to login with Azure Vault"),
    ],
)
def test_login_refuses_a_credential_reference_the_real_server_would(
    hook: SkyvernHook, fields: dict[str, str], status: int, detail: str
) -> None:
    error = SkyvernBadRequestError if status == 400 else SkyvernNotFoundError
    with pytest.raises(error, match=detail):
        hook.run_login(LoginRequest.model_validate(fields))


def test_a_run_in_an_unknown_session_is_refused(hook: SkyvernHook) -> None:
    with pytest.raises(SkyvernNotFoundError, match="Browser session pbs_404 not found"):
        hook.run_download_files(DownloadFilesRequest(navigation_goal="g", browser_session_id="pbs_404"))


def test_session_timeout_below_five_minutes_is_a_422(emulator: EmulatorServer) -> None:
    response = emulator.control.post(
        "/v1/browser_sessions", json={"timeout": 4}, headers={"x-api-key": emulator.api_key}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "timeout"]


def test_open_sessions_are_listed_and_closed_ones_read_completed(hook: SkyvernHook) -> None:
    """Skyvern 1.0.56 lists the active sessions only (its OpenAPI: "Get all active browser sessions")."""
    kept, closed = (
        hook.create_browser_session(),
        hook.create_browser_session(CreateBrowserSessionRequest(timeout=5)),
    )
    hook.close_browser_session(closed.browser_session_id)

    listed = {s.browser_session_id: s.status for s in hook.list_browser_sessions()}

    assert listed == {kept.browser_session_id: "running"}
    assert hook.get_browser_session(closed.browser_session_id).status == "completed"
    with pytest.raises(SkyvernNotFoundError, match="Browser session pbs_1 not found"):
        hook.close_browser_session("pbs_1")

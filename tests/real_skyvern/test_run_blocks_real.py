"""Issue 11 on the REAL Skyvern 1.0.56 and on the emulator, side by side: a browser session opened and
closed by the setup/teardown operators, a download_files run waited for deferrable with its files copied
to object storage, and the login endpoint refusing what the real server refuses."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_skyvern.compat import AirflowFailException
from airflow_provider_skyvern.operators.browser_session import (
    SkyvernCloseBrowserSessionOperator,
    SkyvernCreateBrowserSessionOperator,
)
from airflow_provider_skyvern.operators.download_files import SkyvernDownloadFilesOperator
from airflow_provider_skyvern.operators.login import SkyvernLoginOperator
from airflow_provider_skyvern.triggers.skyvern import SkyvernRunTrigger
from tests.conftest import FastClock
from tests.operator_support import FakeStateStore, make_context

from .conftest import Peer

pytestmark = pytest.mark.real_skyvern


async def _events(trigger: SkyvernRunTrigger) -> list[dict[str, Any]]:
    return [event.payload async for event in trigger.run()]


def test_a_session_opened_by_the_setup_is_closed_by_the_teardown(connect: Peer) -> None:
    context = make_context()
    session_id = SkyvernCreateBrowserSessionOperator(task_id="open", session_timeout=5).execute(context)
    assert session_id.startswith("pbs_")
    assert context["ti"].xcoms["browser_session_id"] == session_id

    closer = SkyvernCloseBrowserSessionOperator(task_id="close", browser_session_id=session_id)
    closer.execute(make_context())
    closer.execute(make_context())  # closing twice is fine
    with connect.client() as client:
        session = client.get(f"/v1/browser_sessions/{session_id}").json()
    print(f"\n{connect.name}: session after close {session}")
    assert session["status"] == "completed"
    assert session["completed_at"]


def test_a_download_run_completes_deferrable_and_its_files_are_copied(
    connect: Peer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    FastClock(monkeypatch)
    operator = SkyvernDownloadFilesOperator(
        task_id="download",
        navigation_goal="Download the invoice",
        url=connect.products_url,
        deferrable=True,
        poll_interval=1,
        timeout=120,
        artifacts_destination=f"file://{tmp_path}",
    )
    context = make_context(FakeStateStore())
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, SkyvernRunTrigger)
    (event,) = asyncio.run(_events(trigger))
    operator.execute_complete(context, event, **deferred.value.kwargs)

    xcoms = context["ti"].xcoms
    manifest = xcoms["artifacts"]
    print(f"\n{connect.name}: download run {trigger.run_id} event {event}\nmanifest {manifest}")
    assert event["run_status"] == "completed"
    assert xcoms["status"] == "completed"
    assert manifest["run_id"] == trigger.run_id
    assert manifest["complete"] is True
    assert manifest["files"], "no file copied"
    for entry in manifest["files"]:
        copied = Path(entry["uri"].removeprefix("file://"))
        assert copied.is_relative_to(tmp_path / trigger.run_id)
        assert hashlib.sha256(copied.read_bytes()).hexdigest() == entry["sha256"]
        assert copied.stat().st_size == entry["size"] > 0
    assert "screenshot" in {entry["kind"] for entry in manifest["files"]}


def test_a_login_with_an_unknown_credential_is_refused_without_a_retry(connect: Peer) -> None:
    operator = SkyvernLoginOperator(
        task_id="log_in",
        credential_type="skyvern",
        credential_id="cred_does_not_exist",
        url=connect.products_url,
    )
    with pytest.raises(AirflowFailException) as refused:
        operator.execute(make_context(FakeStateStore()))
    print(f"\n{connect.name}: {refused.value}")
    assert "Skyvern refused to start the run" in str(refused.value)
    assert "HTTP 404: Credential cred_does_not_exist not found" in str(refused.value)

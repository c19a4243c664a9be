"""Monthly invoices from a supplier portal: open a browser session, log in, download the invoices, close it.

Why it looks like this: the login and the download are two Skyvern runs that must share one browser (the
download needs the logged-in cookies), so both run in a persistent browser session. The session bills
while open, so it is an Airflow setup task with a teardown that closes it even when the login or the
download fails (``skyvern_browser_session`` wires both). The credential is a reference (a Skyvern
credential id), never a password in the DAG. Skyvern's file URLs expire (a day for downloads, an hour
for recordings), so ``artifacts_destination`` copies the invoices, the recording and the screenshots to
object storage when the download run ends (streamed, SHA-256 checked, under ``<run id>/``); downstream
reads the durable copies through the ``artifacts`` manifest in XCom.

Environment (optional): ``SKYVERN_EXAMPLE_CREDENTIAL_ID`` (default ``cred_123456789``, a placeholder: use
the id of a credential saved in Skyvern); ``SKYVERN_EXAMPLE_PORTAL_URL`` (default
``https://portal.example.com/login``); ``SKYVERN_EXAMPLE_ARCHIVE`` (default
``file://$SKYVERN_EXAMPLE_OUTPUT_DIR/invoices``, ``SKYVERN_EXAMPLE_OUTPUT_DIR`` defaulting to
``/tmp/skyvern_example``; ``s3://bucket/invoices`` works the same with the Amazon provider installed);
``SKYVERN_EXAMPLE_POLL_INTERVAL`` (default 10 s).
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, ObjectStoragePath, get_current_context, task

from airflow_provider_skyvern.operators.browser_session import skyvern_browser_session
from airflow_provider_skyvern.operators.download_files import SkyvernDownloadFilesOperator
from airflow_provider_skyvern.operators.login import SkyvernLoginOperator

CREDENTIAL_ID = os.environ.get("SKYVERN_EXAMPLE_CREDENTIAL_ID", "cred_123456789")
PORTAL_URL = os.environ.get("SKYVERN_EXAMPLE_PORTAL_URL", "https://portal.example.com/login")
POLL_INTERVAL = float(os.environ.get("SKYVERN_EXAMPLE_POLL_INTERVAL", "10"))
OUTPUT_DIR = os.environ.get("SKYVERN_EXAMPLE_OUTPUT_DIR", "/tmp/skyvern_example")  # noqa: S108
ARCHIVE = os.environ.get("SKYVERN_EXAMPLE_ARCHIVE", f"file://{OUTPUT_DIR}/invoices")
LOGIN_TIMEOUT = timedelta(minutes=15)
DOWNLOAD_TIMEOUT = timedelta(minutes=30)
SESSION_TIMEOUT = LOGIN_TIMEOUT + DOWNLOAD_TIMEOUT + timedelta(minutes=15)
"""The session must outlast the tasks using it (one after the other, plus the scheduling between them), or
the browser closes under the download; the teardown closes it as soon as they are done, so only that time bills."""

with DAG(
    dag_id="skyvern_login_download",
    schedule="@monthly",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    is_paused_upon_creation=False,
    tags=["skyvern", "example"],
):
    # Setup "portal_session_create" opens the session; teardown "portal_session_close" closes it.
    session = skyvern_browser_session("portal_session", session_timeout=SESSION_TIMEOUT)

    log_in = SkyvernLoginOperator(
        task_id="log_in",
        credential_type="skyvern",
        credential_id=CREDENTIAL_ID,
        url=PORTAL_URL,
        browser_session_id=session.browser_session_id,
        deferrable=True,
        timeout=LOGIN_TIMEOUT.total_seconds(),
        poll_interval=POLL_INTERVAL,
    )

    invoices = SkyvernDownloadFilesOperator(
        task_id="download_invoices",
        navigation_goal="Open Billing > Invoices and download every invoice issued last month as PDF.",
        browser_session_id=session.browser_session_id,  # the logged-in browser of log_in
        download_timeout=120,
        max_steps_per_run=15,
        deferrable=True,
        timeout=DOWNLOAD_TIMEOUT.total_seconds(),
        poll_interval=POLL_INTERVAL,
        artifacts_destination=ARCHIVE,  # durable copies instead of expiring URLs
    )

    @task
    def read_invoices() -> list[dict[str, Any]]:
        """What a loader does: open each copied invoice from object storage and check it is the file
        Skyvern downloaded (the manifest's SHA-256 was verified against Skyvern's while copying)."""
        manifest = get_current_context()["ti"].xcom_pull(task_ids="download_invoices", key="artifacts")
        read = []
        for entry in manifest["files"]:
            if entry["kind"] != "download":
                continue  # the recording and screenshots are kept as evidence beside them
            data = ObjectStoragePath(entry["uri"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry["uri"]
            print(f"invoice {entry['filename']}: {len(data)} bytes at {entry['uri']}")
            read.append({"filename": entry["filename"], "uri": entry["uri"], "size": len(data)})
        return read

    session.create >> log_in >> invoices >> session.close
    invoices >> read_invoices()

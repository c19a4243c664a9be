"""A browser session whose middle task fails: the teardown must still close it (dag.test(), see the test).

Setup opens the session, a login runs in it, then a task given the session id (through the create task's
return value, an XComArg) fails; the teardown, linked to the setup by XCom only, closes the session.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, task

from airflow_provider_skyvern.operators.browser_session import skyvern_browser_session
from airflow_provider_skyvern.operators.login import SkyvernLoginOperator

with DAG("skyvern_browser_session", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    session = skyvern_browser_session("portal", session_timeout=timedelta(minutes=15))
    log_in = SkyvernLoginOperator(
        task_id="log_in",
        credential_type="skyvern",
        credential_id="cred_1",
        url="https://portal.example.com/login",
        browser_session_id=session.browser_session_id,
        deferrable=True,
        poll_interval=0.3,
    )

    @task
    def use_session(browser_session_id: str) -> None:
        raise RuntimeError(f"the middle task fails while session {browser_session_id} is open")

    middle = use_session(session.create.output)
    session.create >> log_in >> middle >> session.close

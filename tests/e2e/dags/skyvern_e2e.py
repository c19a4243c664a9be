"""DAGs only the e2e tests trigger: a run the emulator fails, runs long enough to be killed or cleared, and
a sensor that gates on a run without any worker slot, and a browser session whose DAG run is marked failed
while a run in it goes on.

The ``[emulator ...]`` directive in the prompt picks the emulator's outcome and duration.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_skyvern.operators.browser_session import skyvern_browser_session
from airflow_provider_skyvern.operators.task import SkyvernRunTaskOperator
from airflow_provider_skyvern.sensors.skyvern import SkyvernRunSensor

COMMON = {"schedule": None, "start_date": datetime(2026, 1, 1), "catchup": False, "tags": ["skyvern", "e2e"]}

with DAG(dag_id="skyvern_e2e_failure", **COMMON):
    SkyvernRunTaskOperator(
        task_id="find_invoice",
        prompt="Download the latest invoice [emulator outcome=failed seconds=10]",
        url="https://example.com/billing",
        deferrable=True,
        poll_interval=1,
        retries=0,
    )

with DAG(dag_id="skyvern_e2e_cancel", **COMMON):
    SkyvernRunTaskOperator(
        task_id="crawl_forever",
        prompt="Read every page of the archive [emulator seconds=600]",
        url="https://example.com/archive",
        deferrable=True,
        poll_interval=1,
        retries=0,
    )

with DAG(dag_id="skyvern_e2e_clear", **COMMON):
    SkyvernRunTaskOperator(
        task_id="reextract",
        # the first try's run would last 10 minutes; the try after the clear gets a short one
        prompt="Extract the prices again [emulator seconds={{ 600 if ti.try_number == 1 else 5 }}]",
        url="https://example.com/prices",
        deferrable=True,
        poll_interval=1,
        retries=0,
    )

with DAG(dag_id="skyvern_e2e_gate", **COMMON):
    started = SkyvernRunTaskOperator(
        task_id="start_crawl",
        prompt="Crawl the catalogue [emulator seconds=8]",
        url="https://example.com/catalogue",
        wait_for_completion=False,
    )
    SkyvernRunSensor(
        task_id="gate",
        run_id=started.output,
        deferrable=True,
        start_from_trigger=True,
        do_xcom_push=False,  # only a gate: a completed run ends the task in the triggerer
        poke_interval=1,
        timeout=300,
    )

with DAG(dag_id="skyvern_e2e_session_abandoned", **COMMON):
    session = skyvern_browser_session("portal", session_timeout=30)
    crawl = SkyvernRunTaskOperator(
        task_id="crawl_in_session",
        prompt="Read every page behind the login [emulator seconds=600]",
        url="https://example.com/portal",
        browser_session_id=session.browser_session_id,
        deferrable=True,
        poll_interval=1,
        retries=0,
    )
    session.create >> crawl >> session.close

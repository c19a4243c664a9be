"""A long browser job: the task waits deferred, with its progress in the task log and a hard time limit.

Why: multi-page jobs take many minutes. ``deferrable=True`` keeps no worker slot busy; a small
``poll_interval`` makes the trigger log each status and step change (``Skyvern run tsk_...: running
(step 7)``) so the task log shows progress while the task is deferred; ``timeout`` bounds the whole run
and, when reached, cancels it in Skyvern (no silent billing) before failing the task. ``max_steps`` caps
the AI steps (cost). Marking the deferred task failed in the UI cancels the remote run too (Airflow 3.3+).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_provider_skyvern.operators.task import SkyvernRunTaskOperator

with DAG(
    dag_id="skyvern_long_run",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["skyvern", "example"],
):
    SkyvernRunTaskOperator(
        task_id="collect_all_listings",
        prompt=(
            "Go through every page of the laptop listing, following 'Next' until there is none, and "
            "extract the name and price of every laptop."
        ),
        url="https://webscraper.io/test-sites/e-commerce/static/computers/laptops",
        data_extraction_schema={
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "price": {"type": "number"}},
            },
        },
        max_steps=60,
        deferrable=True,
        timeout=2 * 60 * 60,
        poll_interval=5,
        # After a worker crash the retry reattaches to the run still going instead of paying for another.
        retries=1,
        retry_delay=timedelta(minutes=5),
    )

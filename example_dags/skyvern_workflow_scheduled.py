"""Daily report download: a saved Skyvern workflow (log in, open the report page, extract, download) run
once per day for that day's data.

Why it looks like this: the workflow is built once in Skyvern's UI, so the DAG only says *which* workflow
and *which* inputs: ``parameters`` are templated from the logical date, so a backfill or a re-run of a
day fetches that day's report, not today's. ``deferrable=True`` frees the worker slot while the browser
works. A workflow with a retry policy may report ``failed`` with ``retry_pending``: the task keeps waiting
for the attempt that really ends it. Downstream gets the whole output as the return value and each block's
output in the ``block_outputs`` XCom.

Environment (optional): ``SKYVERN_EXAMPLE_WORKFLOW_ID`` (default ``wpid_123456789``, a placeholder: use
your workflow's permanent id from Skyvern's UI); ``SKYVERN_EXAMPLE_POLL_INTERVAL`` (default 10 s).
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from airflow.sdk import DAG, get_current_context, task

from airflow_provider_skyvern.operators.task import SkyvernRunWorkflowOperator

WORKFLOW_ID = os.environ.get("SKYVERN_EXAMPLE_WORKFLOW_ID", "wpid_123456789")
POLL_INTERVAL = float(os.environ.get("SKYVERN_EXAMPLE_POLL_INTERVAL", "10"))
RESULT_KEYS = ("run_id", "status", "attempt", "block_outputs", "app_url", "downloaded_files")

with DAG(
    dag_id="skyvern_workflow_scheduled",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    is_paused_upon_creation=False,
    tags=["skyvern", "example"],
):
    report = SkyvernRunWorkflowOperator(
        task_id="download_daily_report",
        workflow_id=WORKFLOW_ID,
        parameters={
            "report_date": "{{ ds }}",
            "period_start": "{{ data_interval_start | ds }}",
            "period_end": "{{ data_interval_end | ds }}",
        },
        run_metadata={"source": "airflow", "dag": "{{ dag.dag_id }}"},
        max_elapsed_time_minutes=60,
        deferrable=True,
        timeout=3900,  # a little over the workflow's own limit, so Skyvern's timed_out is what we see
        poll_interval=POLL_INTERVAL,
    )

    @task(multiple_outputs=False)  # one XCom holding the whole dict, not one per key
    def summarize(output: dict[str, Any]) -> dict[str, Any]:
        """What a loader would need: the extracted rows, the files, and which attempt produced them."""
        ti = get_current_context()["ti"]
        results = {key: ti.xcom_pull(task_ids="download_daily_report", key=key) for key in RESULT_KEYS}
        for key, value in results.items():
            print(f"skyvern {key}: {value}")
        print(f"skyvern output: {output}")
        return {
            "blocks": sorted(results["block_outputs"] or {}),
            "extracted": output.get("extracted_information", []),
            "files": len(results["downloaded_files"] or []),
            "attempt": results["attempt"],
        }

    summarize(report.output)

"""The DAG of bench/cluster_storm.py: one mapped deferrable Skyvern task over N catalogue pages.

``dag_run.conf``: ``count`` (how many mapped task instances) and ``run_seconds`` (the shortest emulated run;
runs take between it and twice it, spread by page). The poll interval and retry delay come from the
environment the benchmark gives every Airflow component (``SKYVERN_STORM_POLL_INTERVAL``,
``SKYVERN_STORM_RETRY_DELAY``), so the DAG file parses the same on the DAG processor and the worker.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_skyvern.operators.task import SkyvernRunTaskOperator

POLL_INTERVAL = float(os.environ.get("SKYVERN_STORM_POLL_INTERVAL", "10"))
RETRY_DELAY = float(os.environ.get("SKYVERN_STORM_RETRY_DELAY", "30"))
PROMPT = "Read catalogue page {page} of the storm [emulator seconds={seconds:g}]"

with DAG(
    dag_id="skyvern_cluster_storm",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_tasks=4096,
    tags=["skyvern", "bench"],
):

    @task
    def pages(**context: Any) -> list[str]:
        conf = context["dag_run"].conf
        count, base = int(conf["count"]), float(conf["run_seconds"])
        return [PROMPT.format(page=i, seconds=round(base + (i % 61) * base / 60)) for i in range(count)]

    SkyvernRunTaskOperator.partial(
        task_id="extract",
        url="https://example.com/catalogue",
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        retries=3,
        retry_delay=timedelta(seconds=RETRY_DELAY),
    ).expand(prompt=pages())

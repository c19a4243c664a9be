"""Start now, wait later: a competitor price check runs in Skyvern while Airflow prepares the load, and a
sensor that never takes a worker slot waits for it.

Why it looks like this: ``wait_for_completion=False`` makes the first task return as soon as Skyvern has
the run (its XCom is the run id), so the DAG's other work runs meanwhile. ``SkyvernRunSensor`` then waits
for that run: ``start_from_trigger=True`` starts it in the triggerer and, when the run completes, the
trigger ends the task itself with the run's XComs, so the sensor uses no worker slot at all (on Airflow
< 3.3 it defers from a worker instead, because only 3.3's triggerer renders its templated ``run_id``). The
same sensor waits for runs started by Skyvern's own schedules or another system: give it their run id.
A run someone canceled in Skyvern's UI skips the load instead of failing the DAG (``skip_statuses``).

Environment (optional): ``SKYVERN_EXAMPLE_POLL_INTERVAL`` (default 10 s).
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from airflow.sdk import DAG, get_current_context, task

from airflow_provider_skyvern.operators.task import SkyvernRunTaskOperator
from airflow_provider_skyvern.sensors.skyvern import SkyvernRunSensor

POLL_INTERVAL = float(os.environ.get("SKYVERN_EXAMPLE_POLL_INTERVAL", "10"))
PRICE_SCHEMA = {
    "type": "array",
    "maxItems": 5,
    "items": {
        "type": "object",
        "properties": {
            "product": {"type": "string"},
            "price": {"type": "number", "description": "price in USD, without the currency sign"},
        },
        "required": ["product", "price"],
    },
}

with DAG(
    dag_id="skyvern_start_now_wait_later",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    is_paused_upon_creation=False,
    tags=["skyvern", "example"],
):
    start = SkyvernRunTaskOperator(
        task_id="start_price_check",
        prompt="Open the laptops category and extract the name and price of the 5 cheapest laptops.",
        url="https://webscraper.io/test-sites/e-commerce/allinone",
        title="Price check ({{ ds }})",
        data_extraction_schema=PRICE_SCHEMA,
        wait_for_completion=False,  # returns the run id at once
    )

    @task
    def prepare_staging_table() -> str:
        """Work that needs no Skyvern result runs while the browser works."""
        table = f"staging_prices_{get_current_context()['ds_nodash']}"
        print(f"prepared {table}")
        return table

    wait = SkyvernRunSensor(
        task_id="wait_for_price_check",
        run_id=start.output,  # or "{{ ti.xcom_pull(task_ids='start_price_check', map_indexes=-1) }}"
        deferrable=True,
        start_from_trigger=True,
        skip_statuses=["canceled"],
        poke_interval=POLL_INTERVAL,
        timeout=3600,
    )

    @task(multiple_outputs=False)  # one XCom holding the whole dict, not one per key
    def load_prices(rows: list[dict[str, Any]], table: str) -> dict[str, Any]:
        """The sensor hands on what the operator would have: the output, the run id, the artifacts."""
        ti = get_current_context()["ti"]
        run_id = ti.xcom_pull(task_ids="wait_for_price_check", key="run_id")
        recording = ti.xcom_pull(task_ids="wait_for_price_check", key="recording_url")
        print(f"loading {len(rows)} prices from Skyvern run {run_id} into {table}; recording {recording}")
        return {
            "table": table,
            "rows": len(rows),
            "run_id": run_id,
            "cheapest": min(r["price"] for r in rows),
        }

    load_prices(wait.output, prepare_staging_table())

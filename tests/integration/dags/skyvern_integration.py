"""One DAG run exercising the operator against the Skyvern emulator with dag.test() (no scheduler).

Tasks: a deferrable extraction with a downstream consumer, the same extraction blocking, a run the
emulator fails, and a run that outlives its timeout (canceled).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_skyvern.operators.task import SkyvernRunTaskOperator

SCHEMA = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "price": {"type": "number"}, "rating": {"type": "number"}},
        "required": ["name", "price"],
    },
}
PROMPT = "Extract the name, price and rating of the top 3 products [emulator seconds=2]"

with DAG("skyvern_integration", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    deferred = SkyvernRunTaskOperator(
        task_id="extract_deferred",
        prompt=PROMPT,
        url="https://example.com/products",
        data_extraction_schema=SCHEMA,
        deferrable=True,
        poll_interval=0.3,
    )
    blocking = SkyvernRunTaskOperator(
        task_id="extract_blocking",
        prompt=PROMPT,
        url="https://example.com/products",
        data_extraction_schema=SCHEMA,
        deferrable=False,
        poll_interval=0.3,
    )
    failing = SkyvernRunTaskOperator(
        task_id="extract_failing",
        prompt="Find the invoice [emulator outcome=failed seconds=1]",
        url="https://example.com/billing",
        deferrable=True,
        poll_interval=0.3,
    )
    too_slow = SkyvernRunTaskOperator(
        task_id="extract_too_slow",
        prompt="Wait for the page forever [emulator outcome=slow]",
        url="https://example.com/slow",
        deferrable=True,
        timeout=2,
        poll_interval=0.3,
    )

    @task
    def count_products(rows: list[dict[str, Any]]) -> int:
        return len(rows)

    count_products(deferred.output)

"""Fan-out: one Skyvern run per URL with dynamic task mapping, then one task that sees all outputs.

Why: the list of pages often comes from upstream data; ``.partial(...).expand(url=...)`` gives each page
its own task instance (its own retries, its own "Skyvern run" link, its own run tag, so a retry never
starts a second paid run for a page) while every run waits in the triggerer, not in a worker slot.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_skyvern.operators.task import SkyvernRunTaskOperator

PAGES = [
    "https://webscraper.io/test-sites/e-commerce/allinone/computers/laptops",
    "https://webscraper.io/test-sites/e-commerce/allinone/computers/tablets",
    "https://webscraper.io/test-sites/e-commerce/allinone/phones/touch",
]
CHEAPEST_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "price": {"type": "number"}},
    "required": ["name", "price"],
}

with DAG(
    dag_id="skyvern_fan_out",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["skyvern", "example"],
):
    cheapest = SkyvernRunTaskOperator.partial(
        task_id="cheapest_product",
        prompt="Find the cheapest product listed on this page; extract its name and price in USD.",
        data_extraction_schema=CHEAPEST_SCHEMA,
        max_steps=10,
        deferrable=True,
        poll_interval=15,
        max_active_tis_per_dag=3,  # Skyvern's concurrency limit is per organisation: stay polite
    ).expand(url=PAGES)

    @task(multiple_outputs=False)  # one XCom holding the whole dict, not one per key
    def cheapest_overall(products: list[dict[str, Any]]) -> dict[str, Any]:
        """Mapped outputs arrive as one lazy sequence, in map-index order."""
        return min(products, key=lambda product: product["price"])

    cheapest_overall(cheapest.output)

"""Daily product extraction: Skyvern reads the top 3 products of a shop page into typed rows.

Why it looks like this: ``data_extraction_schema`` makes Skyvern's output predictable enough for a
downstream task to consume without parsing prose; ``deferrable=True`` frees the worker slot while the
browser works (minutes, on real sites); the downstream task gets the rows through XCom (``.output``) and
the artifact URLs (recording, screenshots, downloads) from the extraction task's XCom keys. This is the DAG
``scripts/demo.sh`` runs.

Environment (optional): ``SKYVERN_EXAMPLE_OUTPUT_DIR`` (default ``/tmp/skyvern_products``) receives one
JSON file per DAG run; ``SKYVERN_EXAMPLE_POLL_INTERVAL`` (default 10 s) is lowered by the demo.
"""

from __future__ import annotations

import json
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, get_current_context, task

from airflow_provider_skyvern.operators.task import SkyvernRunTaskOperator

PRODUCTS_URL = "https://webscraper.io/test-sites/e-commerce/allinone"
PRODUCT_SCHEMA = {
    "type": "array",
    "maxItems": 3,
    "items": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "product name as shown"},
            "price": {"type": "number", "description": "price in USD, without the currency sign"},
            "rating": {"type": "number", "description": "star rating, 0 to 5"},
        },
        "required": ["name", "price"],
    },
}
POLL_INTERVAL = float(os.environ.get("SKYVERN_EXAMPLE_POLL_INTERVAL", "10"))
OUTPUT_DIR = Path(os.environ.get("SKYVERN_EXAMPLE_OUTPUT_DIR", "/tmp/skyvern_products"))  # noqa: S108
ARTIFACT_KEYS = ("app_url", "recording_url", "screenshot_urls", "downloaded_files")

with DAG(
    dag_id="skyvern_scheduled_extraction",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    is_paused_upon_creation=False,
    tags=["skyvern", "example"],
):
    extract = SkyvernRunTaskOperator(
        task_id="extract_products",
        prompt=(
            "On the shop's start page, find the top 3 products shown. For each, extract its name, its "
            "price in USD and its star rating."
        ),
        url=PRODUCTS_URL,
        title="Top 3 products ({{ run_id }})",
        data_extraction_schema=PRODUCT_SCHEMA,
        max_steps=15,
        deferrable=True,
        timeout=1800,
        poll_interval=POLL_INTERVAL,
    )

    @task
    def save_products(rows: list[dict[str, Any]]) -> int:
        """Writes the rows where a loader would pick them up; the row count is the data-quality signal."""
        context = get_current_context()
        ti = context["ti"]
        for key in ARTIFACT_KEYS:
            print(f"artifact {key}: {ti.xcom_pull(task_ids='extract_products', key=key)}")
        OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
        target = OUTPUT_DIR / f"products_{re.sub(r'[^A-Za-z0-9_.-]', '_', ti.run_id)}.json"
        target.write_text(json.dumps(rows, indent=2))
        print(f"wrote {len(rows)} products to {target}")
        return len(rows)

    save_products(extract.output)

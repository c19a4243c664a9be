"""DAGs of the distributed suite (tests/distributed): deferred and blocking Skyvern runs whose length the
test picks per DAG run (``conf``), each prompt carrying the DAG run's id so the emulator's runs can be told
apart per scenario.

The ``[emulator seconds=N]`` directive in the prompt sets how long the emulated run takes.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_provider_skyvern.operators.task import SkyvernRunTaskOperator

COMMON = {
    "schedule": None,
    "start_date": datetime(2026, 1, 1),
    "catchup": False,
    "tags": ["skyvern", "distributed"],
}
FAN_OUT_TASKS = 4
PROMPT = "Read the catalogue page {{ params.page }} for {{ run_id }} [emulator seconds={{ dag_run.conf.get('seconds', 20) }}]"
RETRIES = {"retries": 2, "retry_delay": timedelta(seconds=2)}

with DAG(dag_id="dist_deferred", **COMMON):
    for page in range(FAN_OUT_TASKS):
        SkyvernRunTaskOperator(
            task_id=f"page_{page}",
            prompt=PROMPT,
            params={"page": page},
            url="https://example.com/catalogue",
            deferrable=True,
            poll_interval=1,
            **RETRIES,
        )

with DAG(dag_id="dist_single", **COMMON):
    SkyvernRunTaskOperator(
        task_id="page_0",
        prompt=PROMPT,
        params={"page": 0},
        url="https://example.com/catalogue",
        deferrable=True,
        poll_interval=1,
        **RETRIES,
    )

with DAG(dag_id="dist_blocking", **COMMON):
    SkyvernRunTaskOperator(
        task_id="page_0",
        prompt=PROMPT,
        params={"page": 0},
        url="https://example.com/catalogue",
        deferrable=False,
        poll_interval=1,
        **RETRIES,
    )

for reattach in (True, False):
    with DAG(dag_id=f"dist_clear_reattach_{str(reattach).lower()}", **COMMON):
        SkyvernRunTaskOperator(
            task_id="page_0",
            # the first try's run would last 10 minutes; the try after the clear gets a short one
            prompt="Read the catalogue again for {{ run_id }} [emulator seconds={{ 600 if ti.try_number == 1 else 5 }}]",
            url="https://example.com/catalogue",
            deferrable=True,
            poll_interval=1,
            reattach=reattach,
            retries=0,
        )

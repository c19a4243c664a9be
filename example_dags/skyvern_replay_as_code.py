"""Daily price extraction that gets cheaper every day: learn once, then replay the code Skyvern cached.

Why it looks like this: the same pages are read every day, so only the first run needs the AI to work
them out. With ``replay_as_code=True`` the prompt becomes a Skyvern workflow of one task block, made once
(found again by the fingerprint of the prompt, url, schema and engine in its title); its first run is an
agent run Skyvern records a script from, and every later day replays that script: a couple of steps
instead of the AI's many. ``{{ ds }}`` and ``{{ params.category }}`` become workflow parameters; the url's
(the category) is the cache key, so each category gets its own script. When the site changes, the cached
script fails on the page and the AI takes over: the day's data still arrives, at the agent's price, and
the log says so. A takeover on one day is normal; several in a row mean the site changed for good and
someone should review the script: the last task fails then, so Airflow's failure alerts reach whoever
owns the DAG.

What each day cost is in XCom ``usage`` (steps, runs, tries, runs replayed as code) and at the end of the
task log; ``max_steps_total`` caps what all retries of one day may spend. ``script_run`` says which script
and revision ran, ``ai_fallback_streak`` how many days in a row the AI took over.

Environment (optional): ``SKYVERN_EXAMPLE_SHOP_URL`` (default ``https://shop.example.com``, a placeholder:
the site to read); ``SKYVERN_EXAMPLE_POLL_INTERVAL`` (default 10 s). The DAG param ``category`` picks the
page; ``run_note`` goes into the run's title (shown in Skyvern's run list), e.g. why a day was re-run.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from airflow.sdk import DAG, get_current_context, task

from airflow_provider_skyvern.operators.task import SkyvernRunTaskOperator

SHOP_URL = os.environ.get("SKYVERN_EXAMPLE_SHOP_URL", "https://shop.example.com")
POLL_INTERVAL = float(os.environ.get("SKYVERN_EXAMPLE_POLL_INTERVAL", "10"))
FALLBACK_DAYS_ALERT = 2
"""From this many days in a row where the AI took over, the site changed for good: review the script."""

with DAG(
    dag_id="skyvern_replay_as_code",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"category": "laptops", "run_note": ""},
    tags=["skyvern", "example"],
):
    prices = SkyvernRunTaskOperator(
        task_id="extract_prices",
        prompt="Extract the name and price of every product listed, as on {{ ds }}",
        url=SHOP_URL + "/{{ params.category }}",
        data_extraction_schema={
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "price": {"type": "number"}},
            },
        },
        title="Daily {{ params.category }} prices {{ ds }} {{ params.run_note }}",
        replay_as_code=True,  # learn on the first day, replay the cached script after
        on_ai_fallback="warn",
        max_steps=25,  # one run's cap
        max_steps_total=60,  # all retries of one day together
        deferrable=True,
        poll_interval=POLL_INTERVAL,
    )

    @task(multiple_outputs=False)  # one XCom holding the whole dict
    def cost_of_the_day() -> dict[str, Any]:
        """One line per day for a cost dashboard: what was spent, and whether code or the AI did the work."""
        ti = get_current_context()["ti"]
        usage = ti.xcom_pull(task_ids="extract_prices", key="usage") or {}
        script_run = ti.xcom_pull(task_ids="extract_prices", key="script_run")
        if script_run is None:
            how = "agent run (Skyvern records a script from it)"
        elif script_run["ai_fallback_triggered"]:
            how = "the AI took over from the cached script"
        else:
            how = f"replayed cached code ({script_run['script_id']})"
        print(f"skyvern day cost: {usage.get('steps')} steps over {usage.get('runs')} run(s): {how}")
        return {"usage": usage, "script_run": script_run}

    @task
    def alert_on_fallback_streak() -> int:
        ti = get_current_context()["ti"]
        streak = ti.xcom_pull(task_ids="extract_prices", key="ai_fallback_streak") or 0
        if streak >= FALLBACK_DAYS_ALERT:
            raise RuntimeError(
                f"The AI took over from Skyvern's cached script {streak} days in a row: the site changed; "
                "review the script in Skyvern"
            )
        return int(streak)

    prices >> cost_of_the_day()
    prices >> alert_on_fallback_streak()

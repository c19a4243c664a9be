"""Daily price extraction that gets cheaper every day: Skyvern replays the code it cached from the first run.

Why it looks like this: the same pages are read every day, so only the first run needs the AI to work
them out. The workflow (built once in Skyvern, with ``run_with: code``) records a script from that agent
run; every later run replays it (``run_with="code"``), a couple of steps instead of the AI's many. When
the site changes, the cached script fails on the page and the AI takes over (``ai_fallback=True``): the
day's data still arrives, at the agent's price, and the log says so. A takeover on one day is normal;
several in a row mean the site changed for good and someone should review the script: the last task
fails then, so Airflow's failure alerts reach whoever owns the DAG.

What each day cost is in XCom ``usage`` (steps, runs, tries, runs replayed as code) and at the end of the
task log; ``max_steps_total`` caps what all retries of one day may spend. ``script_run`` says which script
and revision ran, ``ai_fallback_streak`` how many days in a row the AI took over.

Environment (optional): ``SKYVERN_EXAMPLE_REPLAY_WORKFLOW_ID`` (default ``wpid_123456789``, a placeholder:
your workflow's permanent id); ``SKYVERN_EXAMPLE_POLL_INTERVAL`` (default 10 s). The DAG param
``run_note`` goes into the run's title (shown in Skyvern's run list), e.g. why a day was re-run.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from airflow.sdk import DAG, get_current_context, task

from airflow_provider_skyvern.operators.task import SkyvernRunWorkflowOperator

WORKFLOW_ID = os.environ.get("SKYVERN_EXAMPLE_REPLAY_WORKFLOW_ID", "wpid_123456789")
POLL_INTERVAL = float(os.environ.get("SKYVERN_EXAMPLE_POLL_INTERVAL", "10"))
FALLBACK_DAYS_ALERT = 2
"""From this many days in a row where the AI took over, the site changed for good: review the script."""

with DAG(
    dag_id="skyvern_replay_as_code",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"run_note": ""},
    tags=["skyvern", "example"],
):
    prices = SkyvernRunWorkflowOperator(
        task_id="extract_prices",
        workflow_id=WORKFLOW_ID,
        parameters={"category": "laptops", "report_date": "{{ ds }}"},
        title="Daily laptop prices {{ ds }} {{ params.run_note }}",
        run_with="code",  # replay the cached script; the first run records it
        ai_fallback=True,  # a changed page: the AI takes over instead of failing the day
        on_ai_fallback="warn",
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

"""Replay as code: what a run did with Skyvern's cached script, and what the task does when the AI took over.

A workflow run with ``run_with="code"`` replays Python code Skyvern recorded from an earlier agent run of
the same cache key; with ``ai_fallback`` the AI takes over where the page changed, and Skyvern regenerates
the script. The run's ``script_run`` says which happened. A fallback costs AI steps again, and a streak of
them means the site changed for good: someone should look at the script.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from airflow_provider_skyvern.models import RunResponse

STREAK_XCOM_KEY = "ai_fallback_streak"
STREAK_WARNING = 2
"""From this many scheduled runs in a row where the AI took over, the log says to review the script."""


def fell_back(run: RunResponse) -> bool:
    return run.script_run is not None and run.script_run.ai_fallback_triggered


def script_run_xcom(run: RunResponse) -> dict[str, Any] | None:
    """XCom ``script_run``: None when no cached script was involved (the run was an agent run)."""
    if run.script_run is None:
        return None
    return {
        "ai_fallback_triggered": run.script_run.ai_fallback_triggered,
        "script_id": run.script_run.script_id,
        "script_revision_id": run.script_run.script_revision_id,
    }


def what_it_ran(run: RunResponse, run_with: str | None) -> str | None:
    """One log line saying whether the run replayed code or the AI ran it, and why; None when the run was
    not asked to run as code and no script was involved (an ordinary agent run)."""
    script = run.script_run
    if script is None:
        if run_with != "code":
            return None
        return (
            f"Skyvern run {run.run_id} ran as an agent: no cached script for its cache key yet (run_with='code'); "
            "Skyvern records one from this run for the next to replay"
        )
    which = f"script {script.script_id or '?'}, revision {script.script_revision_id or '?'}"
    if script.ai_fallback_triggered:
        return (
            f"Skyvern run {run.run_id}: the cached script ({which}) failed on the page and the AI took over "
            "(ai_fallback), at the agent's cost in steps"
        )
    return f"Skyvern run {run.run_id} replayed cached code ({which}): no AI steps"


def previous_streak(context: Any, task_id: str) -> int:
    """The streak the same task's latest earlier DAG run pushed (0 when none, or it cannot be read)."""
    ti = context["ti"]
    try:
        value = ti.xcom_pull(
            task_ids=task_id, key=STREAK_XCOM_KEY, include_prior_dates=True, map_indexes=ti.map_index
        )
    except Exception:  # a first run, an Airflow that cannot look back: the streak starts here
        return 0
    if isinstance(value, list):  # some Airflow versions answer a list for one map index
        value = value[-1] if value else None
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def fallback_message(run: RunResponse, streak: int) -> str:
    where = f" at {run.app_url}" if run.app_url else " in Skyvern"
    if streak >= STREAK_WARNING:
        return (
            f"The AI took over from the cached script in {streak} scheduled runs in a row (now run {run.run_id}): "
            f"the site changed; review the script{where}"
        )
    return f"Skyvern run {run.run_id}: the AI took over from the cached script; if the site changed, review the script{where}"


def judge(
    context: Any,
    run: RunResponse,
    *,
    task_id: str,
    run_with: str | None,
    on_ai_fallback: str,
    log: Any,
    push: Callable[[dict[str, Any]], None],
) -> None:
    """Say what ran, push the AI's takeovers in a row (``ai_fallback_streak``), apply ``on_ai_fallback``:
    ``fail`` raises, ``warn`` (or a streak) warns."""
    from airflow_provider_skyvern.compat import AirflowFailException

    said = what_it_ran(run, run_with)
    if said is not None:
        log.info("%s", said)
    streak = previous_streak(context, task_id) + 1 if fell_back(run) else 0
    push({STREAK_XCOM_KEY: streak})
    if not fell_back(run):
        return
    message = fallback_message(run, streak)
    if on_ai_fallback == "fail":
        raise AirflowFailException(f"{message} (on_ai_fallback='fail')")
    if on_ai_fallback == "warn" or streak >= STREAK_WARNING:
        log.warning("%s", message)

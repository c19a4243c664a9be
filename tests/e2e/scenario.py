"""What the e2e session runs: the DAGs and tasks under test, and what was observed of their runs."""

from __future__ import annotations

from dataclasses import dataclass

from airflow_harness import StateRecorder

EXTRACTION = ("skyvern_scheduled_extraction", "extract_products")
FAN_OUT = ("skyvern_fan_out", "cheapest_product")
FAILURE = ("skyvern_e2e_failure", "find_invoice")
CANCEL = ("skyvern_e2e_cancel", "crawl_forever")
CLEAR = ("skyvern_e2e_clear", "reextract")
WORKFLOW = ("skyvern_workflow_scheduled", "download_daily_report")
WAIT_LATER = ("skyvern_start_now_wait_later", "wait_for_price_check")
GATE = ("skyvern_e2e_gate", "gate")
ABANDONED = ("skyvern_e2e_session_abandoned", "crawl_in_session")
LOGIN_DOWNLOAD = ("skyvern_login_download", "download_invoices")
OPENLINEAGE_EVENTS = "openlineage.jsonl"
"""Where the stack's Airflow writes its OpenLineage events (file transport), under the stack's workdir."""
OPENLINEAGE_NAMESPACE = "skyvern-e2e"
EXAMPLE_DAG_IDS = frozenset(
    {
        "skyvern_scheduled_extraction",
        "skyvern_fan_out",
        "skyvern_long_run",
        "skyvern_workflow_scheduled",
        "skyvern_start_now_wait_later",
        "skyvern_login_download",
    }
)
EMULATOR_RUN_SECONDS = 10.0


@dataclass(frozen=True)
class Observed:
    """The triggered DAG runs (dag_id → run_id) and every task state they went through."""

    run_ids: dict[str, str]
    recorder: StateRecorder

    def run_id(self, dag_task: tuple[str, str]) -> str:
        return self.run_ids[dag_task[0]]

    def states(self, dag_task: tuple[str, str], label: str | None = None) -> list[str | None]:
        dag_id, task_id = dag_task
        return self.recorder.states(dag_id, self.run_ids[dag_id], label or task_id)

"""What a finished Skyvern run hands downstream: its XComs and, when it failed, the one-line reason.

One module, so the run operators, the sensor and the trigger (which can end a task itself, with no
worker) push exactly the same XComs and say a failure the same way.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_skyvern.exceptions import one_line
from airflow_provider_skyvern.models import RunResponse, WorkflowRunResponse
from airflow_provider_skyvern.version_compat import AIRFLOW_V_3_1_PLUS

APP_URL_XCOM_KEY = "app_url"
"""The run's page in Skyvern's UI, pushed as soon as the run exists."""
OUTPUT_SUFFIX = "_output"
"""Skyvern keys each workflow block's output ``<label>_output``."""


def block_outputs(output: Any) -> dict[str, Any]:
    """A workflow's outputs by block label; the aggregated keys are left out."""
    if not isinstance(output, dict):
        return {}
    return {
        key.removesuffix(OUTPUT_SUFFIX): value
        for key, value in output.items()
        if key.endswith(OUTPUT_SUFFIX) and key != OUTPUT_SUFFIX
    }


def result_xcoms(run: RunResponse) -> dict[str, Any]:
    """The XComs a run ends with, besides ``return_value`` (its output); workflow runs add their blocks."""
    values: dict[str, Any] = {
        "status": run.status.value,
        "recording_url": run.recording_url,
        "screenshot_urls": run.screenshot_urls or [],
        "downloaded_files": [
            {"url": f.url, "filename": f.filename, "checksum": f.checksum, "size": f.file_size}
            for f in run.downloaded_files or []
        ],
        "step_count": run.step_count,
        "failure_reason": run.failure_reason,
    }
    if isinstance(run, WorkflowRunResponse):
        values["block_outputs"] = block_outputs(run.output)
        values["attempt"] = run.attempt
    return values


def identity_xcoms(run: RunResponse) -> dict[str, Any]:
    """What names the run: pushed as soon as it is known, so a downstream task can find it even if the wait fails."""
    return {"run_id": run.run_id, APP_URL_XCOM_KEY: run.app_url}


def pushable(values: dict[str, Any]) -> dict[str, Any]:
    """
    Airflow 3.0 cannot store a ``None`` XCom (its API answers 422, failing the task): there a ``None`` is
    not pushed, which reads the same (pulling a key nobody pushed gives ``None``).
    """
    return {key: value for key, value in values.items() if value is not None or AIRFLOW_V_3_1_PLUS}


TRACEBACK_START = "Traceback (most recent call last)"
FULL_REASON_NOTE = " (full reason in the task log)"


def reason_summary(reason: str) -> str:
    """
    The first line of a failure reason, without a traceback run into it: Skyvern often appends its
    whole Python traceback, which buries the one sentence a task error should show.
    """
    first = next((line for line in reason.splitlines() if line.strip()), "")
    return one_line(first.split(TRACEBACK_START, 1)[0])


def failure_message(run: RunResponse) -> str:
    """``Skyvern run wr_1 ended failed: <first line of the reason> [error codes: …]``."""
    codes = f" [error codes: {', '.join(run.error_codes)}]" if run.error_codes else ""
    full = run.failure_reason or ""
    reason = reason_summary(full) or one_line(full) or "Skyvern gave no reason"
    note = FULL_REASON_NOTE if _cut_short(full) else ""
    return f"Skyvern run {run.run_id} ended {run.status.value}: {reason}{codes}{note}"


def log_full_reason(run: RunResponse, log: Any) -> None:
    """The task's error shows the reason's first line; when that leaves anything out, log it all."""
    if run.failure_reason and _cut_short(run.failure_reason):
        log.error("Skyvern run %s failure reason, in full:\n%s", run.run_id, run.failure_reason)


def _cut_short(reason: str) -> bool:
    return reason_summary(reason) != " ".join(reason.split())

"""A Skyvern run whose files a second task copies to object storage, run with dag.test() on the emulator.

The destination comes from ``SKYVERN_TEST_ARTIFACTS_URI`` (the test's temporary folder as ``file://``).
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_skyvern.operators.artifacts import SkyvernCopyArtifactsOperator
from airflow_provider_skyvern.operators.task import SkyvernRunTaskOperator

DESTINATION = os.environ.get("SKYVERN_TEST_ARTIFACTS_URI", "file:///tmp/skyvern-artifacts")

with DAG("skyvern_copy_artifacts", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    download = SkyvernRunTaskOperator(
        task_id="download",
        prompt='Download the monthly reports [emulator seconds=1 download_mb=2 files=2 filename="../../etc/passwd"]',
        url="https://example.com/reports",
        deferrable=False,
        poll_interval=0.3,
    )
    keep = SkyvernCopyArtifactsOperator(
        task_id="keep_files",
        run_id="{{ ti.xcom_pull(task_ids='download', key='run_id') }}",
        destination=DESTINATION + "/{{ dag_run.dag_id }}",
    )
    download >> keep

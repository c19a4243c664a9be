"""SkyvernCopyArtifactsOperator: copy an ended run's files to object storage before their URLs expire.

A DAG file imports this module on every parse, so it imports neither the hook nor the copy machinery
(httpx, pydantic models, Airflow's object storage): :meth:`~SkyvernCopyArtifactsOperator.execute` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_skyvern import DEFAULT_CONN_ID
from airflow_provider_skyvern.compat import AirflowFailException
from airflow_provider_skyvern.runs.lineage import SkyvernLineageMixin

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath


class SkyvernCopyArtifactsOperator(SkyvernLineageMixin, BaseOperator):
    """
    Copy the downloaded files, recording and screenshots of an ended Skyvern run to durable storage.

    Skyvern's presigned URLs expire (recordings and screenshots after an hour, other files after a day);
    this copies the files to ``<destination>/<run_id>/`` (``downloads/``, ``recording.webm``,
    ``screenshots/<n>.png``, ``manifest.json``) and returns the manifest (durable URIs, sizes, SHA-256),
    which goes to XCom as ``return_value`` unless ``do_xcom_push=False``. It never starts a Skyvern run,
    and a retry downloads only what is not at the destination yet. With the OpenLineage provider, each
    copied file is an output dataset (docs/lineage.md).

    :param run_id: the Skyvern run (``tsk_...``, ``wr_...``); templated, e.g.
        ``"{{ ti.xcom_pull(task_ids='extract', key='run_id') }}"``.
    :param destination: where the files go: a URI (``s3://bucket/prefix``, ``gs://...``, ``file:///data``)
        or an ``ObjectStoragePath``; templated.
    :param skyvern_conn_id: Airflow connection of type ``skyvern``.
    :param storage_conn_id: Airflow connection of the object store, for a ``destination`` given as a URI
        (an ``ObjectStoragePath`` carries its own).
    :param artifact_types: artifact types copied besides the downloads (default ``recording`` and
        ``screenshot_final``; others such as ``har`` or ``pdf`` go to ``artifacts/<type>/``); ``[]``
        copies only the downloads.
    """

    template_fields: Sequence[str] = ("run_id", "destination")
    lineage_reads_run = True
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        run_id: str,
        destination: str | ObjectStoragePath,
        skyvern_conn_id: str = DEFAULT_CONN_ID,
        storage_conn_id: str | None = None,
        artifact_types: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(artifact_types, str):
            raise ValueError(
                f"{type(self).__name__}(task_id={self.task_id!r}) artifact_types must be a list of types, "
                f"got the string {artifact_types!r}"
            )
        self.run_id = run_id
        self.destination = destination
        self.skyvern_conn_id = skyvern_conn_id
        self.storage_conn_id = storage_conn_id
        self.artifact_types = list(artifact_types) if artifact_types is not None else None

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow_provider_skyvern.artifacts import DEFAULT_ARTIFACT_TYPES, copy_run_artifacts
        from airflow_provider_skyvern.hooks.skyvern import SkyvernHook

        run_id = str(self.run_id or "").strip()
        if not run_id or run_id == "None":
            raise AirflowFailException(
                f"{type(self).__name__}: run_id is empty (rendered {self.run_id!r}); pass the Skyvern run id"
            )
        with SkyvernHook(self.skyvern_conn_id) as hook:
            run = hook.get_run(run_id)
            if not run.is_terminal:
                raise AirflowFailException(
                    f"Skyvern run {run_id} is {run.status.value}, not finished: copy its files once it has "
                    "ended (wait for it with SkyvernRunSensor or the run operator first)"
                )
            manifest = copy_run_artifacts(
                hook,
                run,
                self.destination,
                artifact_types=DEFAULT_ARTIFACT_TYPES if self.artifact_types is None else self.artifact_types,
                conn_id=self.storage_conn_id,
                log=self.log,
            )
        self.skyvern_run, self.skyvern_artifacts = run, manifest  # what OpenLineage reports
        return manifest.to_xcom()

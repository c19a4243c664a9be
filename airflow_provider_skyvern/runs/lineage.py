"""OpenLineage for every operator that starts or copies a Skyvern run: where the data came from (the run's
starting URLs) and where it went (the run's output at Skyvern, the files copied to object storage).

The OpenLineage provider calls ``get_openlineage_facets_on_start/_on_complete/_on_failure`` when a task
starts, succeeds or fails. This module is imported with the operators on every DAG parse, so it imports
nothing of OpenLineage: :mod:`.lineage_facets` does, and only these methods import it, so the provider works
without the OpenLineage provider and a DAG parse pays nothing for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage

    from airflow_provider_skyvern.artifacts.manifest import Manifest
    from airflow_provider_skyvern.models import RunResponse


class SkyvernLineageMixin:
    """
    The three OpenLineage methods, once for all run operators and the copy operator. What they report is
    read from the operator: its rendered arguments (``url``, ``parameters``, ``data_extraction_schema``,
    ``engine``, ``run_id``), and :attr:`skyvern_run` / :attr:`skyvern_artifacts`, which the task sets when the
    run ends and its files are copied.
    """

    lineage_reads_run: ClassVar[bool] = False
    """The task reads an existing run (the copy operator): its input is the run at Skyvern, not web pages."""
    skyvern_run: RunResponse | None = None
    """The run as it ended (set by the task when it reads the final run): what lineage reports of it."""
    skyvern_artifacts: Manifest | None = None
    """What ``artifacts_destination`` (or the copy operator) copied where: the lineage outputs."""

    def get_openlineage_facets_on_start(self) -> OperatorLineage[Any, Any]:
        from airflow_provider_skyvern.runs import lineage_facets

        return lineage_facets.on_start(self)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage[Any, Any]:
        from airflow_provider_skyvern.runs import lineage_facets

        return lineage_facets.on_end(self, failed=False)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> OperatorLineage[Any, Any]:
        from airflow_provider_skyvern.runs import lineage_facets

        return lineage_facets.on_end(self, failed=True)

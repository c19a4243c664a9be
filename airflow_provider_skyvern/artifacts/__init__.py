"""Copying a run's files (downloads, recording, screenshots) to object storage before their URLs expire.

Public API: :func:`copy_run_artifacts` returns a :class:`Manifest` (``to_xcom()`` for XCom) or raises
:class:`ArtifactCopyError`. Imported by operators at execute time only (it loads pydantic models and
Airflow's object storage).
"""

from __future__ import annotations

from airflow_provider_skyvern.artifacts.copying import ArtifactCopyError, copy_run_artifacts
from airflow_provider_skyvern.artifacts.manifest import CopiedFile, Manifest
from airflow_provider_skyvern.artifacts.sources import DEFAULT_ARTIFACT_TYPES

__all__ = ["DEFAULT_ARTIFACT_TYPES", "ArtifactCopyError", "CopiedFile", "Manifest", "copy_run_artifacts"]

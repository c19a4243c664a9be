"""The manifest: what was copied where, small enough for XCom, durable where presigned URLs expire."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from airflow_provider_skyvern.artifacts.storage import StoragePath

FileKind = Literal["download", "recording", "screenshot", "artifact"]
MANIFEST_NAME = "manifest.json"


class CopiedFile(BaseModel):
    """One file at the destination; no presigned URL (it would expire and it carries a signature)."""

    model_config = ConfigDict(frozen=True)

    kind: FileKind
    uri: str
    """Where the file is now: ``<destination>/<run_id>/downloads/invoice.pdf``."""
    filename: str | None
    """The name Skyvern reported (downloads: from the website, untrusted; kept for reference only)."""
    artifact_id: str | None = None
    artifact_type: str | None = None
    size: int
    sha256: str
    verified: bool
    """Skyvern gave a SHA-256 and the bytes matched it (False: there was none to compare)."""
    copied: bool = True
    """False when the file was already at the destination (a task retry) and was not downloaded again."""


class Manifest(BaseModel):
    """Every file of one run at the destination; :meth:`to_xcom` is what operators return."""

    run_id: str
    destination: str
    uri: str
    """Where this manifest is written: ``<destination>/<run_id>/manifest.json``."""
    files: list[CopiedFile] = []
    complete: bool = False
    """False while a copy is under way (or after one failed): the list may be short."""

    def to_xcom(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def by_uri(self) -> dict[str, CopiedFile]:
        return {each.uri: each for each in self.files}


def write_manifest(manifest: Manifest, path: StoragePath) -> None:
    path.write_text(json.dumps(manifest.to_xcom(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

"""What a finished run has to copy, and where each file goes under ``<destination>/<run_id>/``.

Downloads come from ``run.downloaded_files`` (URL, SHA-256, name, size); the recording, the screenshots
and any other artifact type asked for come from ``GET /v1/runs/{id}/artifacts``. Layout::

    <run_id>/downloads/<safe name>      <run_id>/recording.webm       <run_id>/screenshots/<n>.png
    <run_id>/artifacts/<type>/<n><ext>  <run_id>/manifest.json
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from airflow_provider_skyvern.artifacts.manifest import FileKind
from airflow_provider_skyvern.artifacts.naming import extension_of, safe_name, unique_names
from airflow_provider_skyvern.enums import ArtifactType
from airflow_provider_skyvern.exceptions import printable
from airflow_provider_skyvern.models import Artifact, FileInfo

DEFAULT_ARTIFACT_TYPES: tuple[ArtifactType, ...] = (ArtifactType.recording, ArtifactType.screenshot_final)
"""What a copy takes besides the downloads: the run's video and its final screenshots."""
_DEFAULT_EXTENSIONS = {"recording": ".webm", "har": ".har", "pdf": ".pdf", "html": ".html", "trace": ".zip"}


@dataclass(frozen=True)
class Source:
    """One file to copy: where Skyvern serves it, what Skyvern says it is, its path under the run."""

    kind: FileKind
    relative: tuple[str, ...]
    """Safe path segments below ``<destination>/<run_id>/``."""
    url: str = field(repr=False)
    """Presigned (it may carry a signature in its query): never logged or stored as it is."""
    filename: str | None
    size: int | None = None
    sha256: str | None = None
    artifact_id: str | None = None
    artifact_type: str | None = None

    @property
    def label(self) -> str:
        """How messages name the file: Skyvern's name for a download (a website's: control characters
        escaped, so it forges no log line), else its place in the layout."""
        return (
            printable(self.filename) if self.kind == "download" and self.filename else "/".join(self.relative)
        )


def run_folder(run_id: str) -> str:
    return safe_name(run_id, fallback="run")


def download_sources(files: Sequence[FileInfo]) -> list[Source]:
    names = unique_names(each.filename for each in files)
    return [
        Source(
            "download",
            ("downloads", name),
            each.url,
            each.filename,
            each.file_size,
            _sha256(each.checksum),
            each.artifact_id,
            "download",
        )
        for name, each in zip(names, files, strict=True)
    ]


def artifact_sources(artifacts: Sequence[Artifact], content_url: Callable[[str], str]) -> list[Source]:
    """``content_url(artifact_id)`` serves an artifact whose ``signed_url`` is missing or not HTTP."""
    ordered = sorted(artifacts, key=lambda a: (a.created_at, a.artifact_id))
    counts: dict[str, int] = {}
    sources = []
    for artifact in ordered:
        kind_key = str(artifact.artifact_type.value)
        counts[kind_key] = number = counts.get(kind_key, 0) + 1
        url = artifact.signed_url
        if not url or not url.startswith(("http://", "https://")):
            url = content_url(artifact.artifact_id)
        sources.append(
            Source(
                *_place(kind_key, number, artifact.uri),
                url=url,
                filename=artifact.uri.rsplit("/", 1)[-1] or None,
                size=artifact.file_size,
                sha256=_sha256(artifact.checksum),
                artifact_id=artifact.artifact_id,
                artifact_type=kind_key,
            )
        )
    return sources


def _place(artifact_type: str, number: int, uri: str) -> tuple[FileKind, tuple[str, ...]]:
    if artifact_type == "recording":
        name = "recording" if number == 1 else f"recording-{number}"
        return "recording", (f"{name}{extension_of(uri, '.webm')}",)
    if artifact_type.startswith("screenshot"):
        folder = "screenshots" if artifact_type == "screenshot_final" else f"screenshots_{artifact_type}"
        return "screenshot", (safe_name(folder), f"{number}{extension_of(uri, '.png')}")
    extension = extension_of(uri, _DEFAULT_EXTENSIONS.get(artifact_type, ".bin"))
    return "artifact", ("artifacts", safe_name(artifact_type), f"{number}{extension}")


def _sha256(checksum: str | None) -> str | None:
    """Skyvern's checksum when it is a SHA-256 hex digest (anything else cannot be verified)."""
    value = (checksum or "").strip().lower().removeprefix("sha256:")
    return value if len(value) == 64 and all(c in "0123456789abcdef" for c in value) else None

"""Copy a finished run's files from Skyvern's expiring URLs to durable storage: :func:`copy_run_artifacts`."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_skyvern.artifacts.manifest import (
    MANIFEST_NAME,
    CopiedFile,
    Manifest,
    write_manifest,
)
from airflow_provider_skyvern.artifacts.sources import (
    DEFAULT_ARTIFACT_TYPES,
    Source,
    artifact_sources,
    download_sources,
    run_folder,
)
from airflow_provider_skyvern.artifacts.storage import (
    StagedFile,
    StoragePath,
    as_storage_path,
    file_size,
    size_and_sha256,
)
from airflow_provider_skyvern.enums import ArtifactType
from airflow_provider_skyvern.exceptions import SkyvernError, one_line

if TYPE_CHECKING:
    from airflow_provider_skyvern.hooks.skyvern import SkyvernHook
    from airflow_provider_skyvern.models import RunResponse

_LOG = logging.getLogger(__name__)


class Logger(Protocol):
    """A ``logging.Logger`` or an operator's ``self.log``."""

    def info(self, msg: str, /, *args: Any) -> Any: ...


class ArtifactCopyError(SkyvernError):
    """One file of a run could not be copied; the message names the file, the run, the target and why."""


def copy_run_artifacts(
    hook: SkyvernHook,
    run: RunResponse,
    destination: StoragePath | str,
    *,
    artifact_types: Iterable[ArtifactType | str] = DEFAULT_ARTIFACT_TYPES,
    conn_id: str | None = None,
    log: Logger | None = None,
    deadline: float | None = None,
) -> Manifest:
    """
    Copy an ended run's downloaded files, recording and screenshots to ``destination``; return the manifest.

    Call it once the run has ended, with the final ``hook.get_run`` answer (its URLs are fresh). Files go
    to ``<destination>/<run_id>/...`` (see :mod:`.sources`), streamed (one network read at a time, never
    the whole file in memory), resumed where the server allows, checked against Skyvern's SHA-256 and size, written under a temporary name and moved
    in place. A file already there is skipped (a task retry costs no second download) only when Skyvern's
    size and checksum (its size alone when it gives no checksum) prove it whole; else it is fetched again. The manifest is also written to ``<run_id>/manifest.json``.

    :param hook: the Skyvern hook of the run's connection (it does all HTTP).
    :param run: the final ``RunResponse`` of the run.
    :param destination: an ``ObjectStoragePath`` or a URI (``s3://bucket/prefix``, ``file:///data``).
    :param artifact_types: artifact types to copy besides the downloads (default recording and
        ``screenshot_final``); empty copies only the downloads.
    :param conn_id: Airflow connection of the object store, for a ``destination`` given as a string.
    :param log: where progress lines go (an operator passes ``self.log``).
    :param deadline: Unix time by which the copy ends (the operator's ``timeout``): no file is started after
        it, and a download in progress stops there.
    :raises ArtifactCopyError: the run has not ended, its artifacts cannot be listed, or a file failed
        (download, checksum or size mismatch, write); the message names the file and the cause.
    :raises ValueError: ``destination`` is not a URI or path Airflow's object storage can open.
    """
    logger: Logger = log or _LOG
    root = as_storage_path(destination, conn_id)
    run_root = root / run_folder(run.run_id)
    manifest = Manifest(run_id=run.run_id, destination=str(root), uri=str(run_root / MANIFEST_NAME), files=[])
    if not run.is_terminal:
        raise ArtifactCopyError(
            f"Skyvern run {run.run_id} is {run.status.value}, not finished: its files are copied once it ends"
        )
    sources = download_sources(run.downloaded_files or [])
    types = list(artifact_types)
    if types:
        try:
            artifacts = hook.get_run_artifacts(run.run_id, types)
        except SkyvernError as exc:
            raise ArtifactCopyError(
                f"Listing the artifacts of Skyvern run {run.run_id} failed: {exc}"
            ) from None
        sources += artifact_sources(artifacts, hook.artifact_content_url)
    logger.info("Copying %d file(s) of Skyvern run %s to %s", len(sources), run.run_id, run_root)
    for source in sources:
        target = run_root.joinpath(*source.relative)
        copied = _copy_one(hook, run.run_id, source, target, logger, deadline)
        manifest.files.append(copied)
        write_manifest(manifest, run_root / MANIFEST_NAME)  # a retry after a crash skips what is here
    manifest.complete = True
    write_manifest(manifest, run_root / MANIFEST_NAME)
    logger.info("Wrote the manifest of Skyvern run %s to %s", run.run_id, manifest.uri)
    return manifest


def _copy_one(
    hook: SkyvernHook,
    run_id: str,
    source: Source,
    target: StoragePath,
    log: Logger,
    deadline: float | None,
) -> CopiedFile:
    def failure(cause: str) -> ArtifactCopyError:
        return ArtifactCopyError(
            f"Copying {source.label} of Skyvern run {run_id} to {target} failed: {one_line(cause)}"
        )

    if deadline is not None and hook.clock.time() >= deadline:
        raise failure("the operator's time is up (its timeout or execution_timeout) before this file")
    present = _already_there(source, target)
    if present is not None:
        log.info("%s of Skyvern run %s is already at %s: not downloaded again", source.label, run_id, target)
        return _entry(source, target, *present, copied=False)
    try:
        with StagedFile(target) as staged:
            hook.download(source.url, staged, deadline=deadline)
            if source.size is not None and staged.size != source.size:
                raise failure(f"size mismatch (expected {source.size} bytes, got {staged.size})")
            if source.sha256 is not None and staged.sha256 != source.sha256:
                raise failure(f"checksum mismatch (expected sha256 {source.sha256}, got {staged.sha256})")
            staged.commit()
    except ArtifactCopyError:
        raise
    except SkyvernError as exc:
        raise failure(str(exc)) from None
    except OSError as exc:
        raise failure(f"cannot write to the destination: {type(exc).__name__}: {exc}") from None
    verified = "sha256 verified" if source.sha256 else "no checksum from Skyvern to verify"
    log.info(
        "Copied %s of Skyvern run %s to %s (%d bytes, %s)",
        source.label,
        run_id,
        target,
        staged.size,
        verified,
    )
    return _entry(source, target, staged.size, staged.sha256, copied=True)


def _already_there(source: Source, target: StoragePath) -> tuple[int, str] | None:
    """(size, sha256) of the file at ``target`` when Skyvern's own size and checksum prove it is this
    source's; None when it must be downloaded. What an earlier try recorded proves nothing: it may have
    committed a short file that Skyvern gave nothing to check against, and every retry would keep it."""
    if source.sha256 is None and source.size is None:
        return None
    if source.size is not None and file_size(target) != source.size:
        return None
    found = size_and_sha256(target)
    if found is None or (source.sha256 is not None and found[1] != source.sha256):
        return None
    return found


def _entry(source: Source, target: StoragePath, size: int, sha256: str, *, copied: bool) -> CopiedFile:
    return CopiedFile(
        kind=source.kind,
        uri=str(target),
        filename=source.filename,
        artifact_id=source.artifact_id,
        artifact_type=source.artifact_type,
        size=size,
        sha256=sha256,
        verified=source.sha256 is not None and source.sha256 == sha256,
        copied=copied,
    )

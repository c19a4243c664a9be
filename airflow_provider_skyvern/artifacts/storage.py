"""Writing one file to the destination: under a temporary name, hashed as it passes, then moved in place.

Any fsspec file system Airflow's ``ObjectStoragePath`` knows works (``file://``, ``s3://``, ``gs://``...);
a file that failed never stays under its final name.
"""

from __future__ import annotations

import contextlib
import hashlib
from types import TracebackType
from typing import IO

from airflow.sdk import ObjectStoragePath

from airflow_provider_skyvern.compat import record_output_asset
from airflow_provider_skyvern.exceptions import one_line

StoragePath = ObjectStoragePath
READ_CHUNK = 1024 * 1024

_AMAZON = "apache-airflow-providers-amazon[s3fs]"
_GOOGLE = "apache-airflow-providers-google (it brings gcsfs)"
_AZURE = "apache-airflow-providers-microsoft-azure (it brings adlfs)"
INSTALL_FOR_PROTOCOL = {
    "s3": _AMAZON,
    "s3a": _AMAZON,
    "gs": _GOOGLE,
    "gcs": _GOOGLE,
    "abfs": _AZURE,
    "abfss": _AZURE,
    "az": _AZURE,
    "adl": _AZURE,
}
"""What to ``pip install`` where tasks run, so Airflow's ``ObjectStoragePath`` can open a protocol."""


class DestinationUnavailable(ValueError):
    """The destination's file system cannot be opened here; the message names the field and what to install."""


def as_storage_path(destination: ObjectStoragePath | str, conn_id: str | None = None) -> ObjectStoragePath:
    """A URI (``s3://bucket/prefix``, ``file:///data``) or a path as it is; ``conn_id`` for the store."""
    if isinstance(destination, ObjectStoragePath):
        return destination
    if not isinstance(destination, str) or not destination.strip():
        raise ValueError(f"artifacts destination must be a URI or an ObjectStoragePath, got {destination!r}")
    try:
        return ObjectStoragePath(destination.strip(), conn_id=conn_id)
    except TypeError as exc:
        if "incompatible with ObjectStoragePath" not in str(exc):
            raise
        raise ValueError(
            f"Airflow's ObjectStoragePath cannot open {destination!r} ({exc}): Airflow 3.0 needs "
            "universal-pathlib < 0.3 (pip install 'universal-pathlib<0.3')"
        ) from None


def check_destination(
    destination: ObjectStoragePath | str,
    conn_id: str | None = None,
    *,
    field: str = "artifacts_destination",
) -> None:
    """
    Raise :class:`DestinationUnavailable` (one line: ``field``, the protocol, what to install) unless the
    destination's file system can be opened here: fsspec can import the protocol's package, and Airflow's
    object storage opens it with the store's connection. Nothing is written, listed or created.

    Call it before anything is paid for: a run operator calls it before it asks Skyvern for a run.
    """
    import fsspec

    shown = f"{field} {str(destination).split('?')[0]!r}"  # no query: it may hold a signature
    try:
        path = as_storage_path(destination, conn_id)
    except ValueError as exc:  # "Unsupported filesystem: 'x'", or Airflow 3.0's universal-pathlib advice
        raise DestinationUnavailable(f"{shown}: {one_line(str(exc))}") from None
    protocol = path.protocol or "file"
    try:
        fsspec.get_filesystem_class(protocol)  # imports the package (s3fs, gcsfs, adlfs...) it needs
        path.fs  # noqa: B018 - Airflow's file system for the protocol, built with the store's connection
    except (
        ImportError,
        ValueError,
    ) as exc:  # fsspec's "Install s3fs ..."; Airflow's "No filesystem registered"
        install = INSTALL_FOR_PROTOCOL.get(
            protocol, f"the Airflow provider that registers {protocol}:// (and its fsspec package)"
        )
        raise DestinationUnavailable(
            f"{shown}: Airflow cannot open {protocol}:// here ({one_line(str(exc))}); "
            f"install {install} where the tasks run"
        ) from None
    except Exception as exc:  # the store's connection (missing, unreadable)
        connection = f"connection {path.conn_id!r}" if path.conn_id else "default credentials"
        raise DestinationUnavailable(
            f"{shown}: cannot open {protocol}:// with {connection}: {type(exc).__name__}: {one_line(str(exc))}"
        ) from None


def size_and_sha256(path: ObjectStoragePath) -> tuple[int, str] | None:
    """Size and SHA-256 of a file already at the destination, read in chunks; None when it is absent."""
    try:
        if not path.is_file():
            return None
        digest, size = hashlib.sha256(), 0
        with _open(path, "rb") as stream:
            while chunk := stream.read(READ_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except FileNotFoundError:
        return None
    return size, digest.hexdigest()


def _open(path: ObjectStoragePath, mode: str) -> IO[bytes]:
    """The file system's own file object: ``ObjectStoragePath.open`` wraps every ``write`` call in a
    lineage record (a third of the copy's CPU on a fast link); :meth:`StagedFile.commit` records it once."""
    stream: IO[bytes] = path.fs.open(path.path, mode=mode)
    return stream


def file_size(path: ObjectStoragePath) -> int | None:
    try:
        return int(path.stat().st_size) if path.is_file() else None
    except FileNotFoundError:
        return None


class StagedFile:
    """A :class:`~airflow_provider_skyvern.hooks.skyvern.DownloadSink` writing ``.<name>.part`` beside
    ``final``, hashing each piece as it is written; :meth:`commit` moves it in place, and leaving the
    ``with`` block by an error deletes it.

    Written and hashed inline, piece by piece: a writer thread measured slower here (GIL hand-offs cost
    more than the SHA-256 they would hide, bench/README.md).
    """

    def __init__(self, final: ObjectStoragePath) -> None:
        self.final = final
        self.part = final.with_name(f".{final.name}.part")
        self._stream: IO[bytes] | None = None
        self._digest = hashlib.sha256()
        self._size = 0

    @property
    def size(self) -> int:
        return self._size

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()

    def write(self, chunk: bytes) -> None:
        if self._stream is None:
            self._stream = _open(self.part, "wb")
        self._stream.write(chunk)
        self._digest.update(chunk)
        self._size += len(chunk)

    def restart(self) -> None:
        self._close()  # the next write opens the part file afresh ("wb" truncates it)
        self._digest, self._size = hashlib.sha256(), 0

    def commit(self) -> None:
        if self._stream is None:
            self._stream = _open(self.part, "wb")  # an empty file is still a file
        self._close()
        if self.final.exists():
            self.final.unlink()
        self.part.rename(self.final)
        record_output_asset(self.final)

    def discard(self) -> None:
        self._close()
        with contextlib.suppress(OSError):  # the error being raised matters more than this leftover
            self.part.unlink(missing_ok=True)

    def __enter__(self) -> StagedFile:
        self.final.parent.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self.discard()

    def _close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()

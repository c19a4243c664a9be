"""copy_run_artifacts against the emulator: streamed, resumed, verified, idempotent, keyless presigned URLs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_skyvern.artifacts import ArtifactCopyError, Manifest, copy_run_artifacts
from airflow_provider_skyvern.emulator.server import EmulatorServer
from airflow_provider_skyvern.hooks.skyvern import SkyvernHook
from airflow_provider_skyvern.models import RunResponse, TaskRunRequest
from tests.emulator.conftest import RUN_SECONDS, FakeClock

MIB = 1024 * 1024


def _finished_run(hook: SkyvernHook, clock: FakeClock, directive: str) -> RunResponse:
    run = hook.run_task(TaskRunRequest(prompt=f"Download the reports {directive}", url="https://example.com"))
    clock.advance(RUN_SECONDS)
    return hook.get_run(run.run_id)


def _file_requests(emulator: EmulatorServer) -> list[dict[str, Any]]:
    requests: list[dict[str, Any]] = emulator.control.get("/_emulator/file_requests").json()["file_requests"]
    return requests


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_run_s_downloads_recording_and_screenshots_land_at_the_destination_verified(
    hook: SkyvernHook, clock: FakeClock, emulator: EmulatorServer, tmp_path: Path
) -> None:
    run = _finished_run(hook, clock, "[emulator download_mb=3 files=2]")

    manifest = copy_run_artifacts(hook, run, f"file://{tmp_path}")

    folder = tmp_path / run.run_id
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) == [
        "downloads/download-1.bin",
        "downloads/download-2.bin",
        "manifest.json",
        "recording.webm",
        "screenshots/1.png",
        "screenshots/2.png",
    ]
    files = {Path(f.uri.removeprefix("file://")).name: f for f in manifest.files}
    for info in run.downloaded_files or []:
        copied = folder / "downloads" / str(info.filename)
        assert copied.stat().st_size == info.file_size == 3 * MIB
        assert _sha256(copied) == info.checksum == files[copied.name].sha256
        assert files[copied.name].verified
    assert (folder / "recording.webm").read_bytes().startswith(b"\x1a\x45\xdf\xa3")
    assert (folder / "screenshots" / "1.png").read_bytes().startswith(b"\x89PNG")
    assert {f.kind for f in manifest.files} == {"download", "recording", "screenshot"}
    assert all(f.verified and f.copied for f in manifest.files)
    assert manifest.complete
    assert Manifest.model_validate_json((folder / "manifest.json").read_text()) == manifest
    assert json.loads(json.dumps(manifest.to_xcom()))["run_id"] == run.run_id
    assert not list(folder.rglob("*.part"))
    # presigned URLs are not the Skyvern API: the key never went along
    assert {r["api_key_sent"] for r in _file_requests(emulator)} == {False}


def test_a_stream_broken_mid_file_is_resumed_with_a_range_request(
    hook: SkyvernHook,
    clock: FakeClock,
    emulator: EmulatorServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = _finished_run(hook, clock, "[emulator download_mb=4]")
    cut = 1_500_000
    emulator.control.post(
        "/_emulator/faults",
        json=[{"method": "GET", "path": "/_emulator/files/*", "break_after": cut, "times": 1}],
    ).raise_for_status()

    manifest = copy_run_artifacts(hook, run, f"file://{tmp_path}", artifact_types=())

    downloads = [r for r in _file_requests(emulator) if r["path"].endswith("download-1.bin")]
    assert [(r["range"], r["status"]) for r in downloads] == [(None, 200), (f"bytes={cut}-", 206)]
    copied = tmp_path / run.run_id / "downloads" / "download-1.bin"
    assert _sha256(copied) == (run.downloaded_files or [])[0].checksum
    assert manifest.files[0].verified
    logged = capsys.readouterr().out
    assert f"download-1.bin at byte {cut}" in logged
    assert f"Resuming the download of {emulator.base_url}/_emulator/files/" in logged
    assert "sig=" not in logged  # the presigned URL's signature stays out of the log


def test_a_task_retry_downloads_nothing_again(
    hook: SkyvernHook, clock: FakeClock, emulator: EmulatorServer, tmp_path: Path
) -> None:
    run = _finished_run(hook, clock, "[emulator download_mb=1 files=2]")
    first = copy_run_artifacts(hook, run, f"file://{tmp_path}")
    downloaded = len(_file_requests(emulator))

    again = copy_run_artifacts(hook, hook.get_run(run.run_id), f"file://{tmp_path}")

    assert downloaded == 5  # 2 downloads, the recording, 2 screenshots
    assert len(_file_requests(emulator)) == downloaded
    assert [f.uri for f in again.files] == [f.uri for f in first.files]
    assert not any(f.copied for f in again.files)
    assert [f.sha256 for f in again.files] == [f.sha256 for f in first.files]


def test_a_changed_file_at_the_destination_is_downloaded_again(
    hook: SkyvernHook, clock: FakeClock, emulator: EmulatorServer, tmp_path: Path
) -> None:
    run = _finished_run(hook, clock, "[emulator download_mb=1]")
    copy_run_artifacts(hook, run, f"file://{tmp_path}", artifact_types=())
    copied = tmp_path / run.run_id / "downloads" / "download-1.bin"
    copied.write_bytes(b"x" * MIB)  # same size, other bytes

    manifest = copy_run_artifacts(hook, run, f"file://{tmp_path}", artifact_types=())

    assert manifest.files[0].copied
    assert _sha256(copied) == (run.downloaded_files or [])[0].checksum


def test_duplicate_and_malicious_names_from_the_site_stay_inside_the_run_folder(
    hook: SkyvernHook, clock: FakeClock, tmp_path: Path
) -> None:
    run = _finished_run(hook, clock, '[emulator files=3 filename="../../etc/passwd"]')

    manifest = copy_run_artifacts(hook, run, f"file://{tmp_path}", artifact_types=())

    downloads = (tmp_path / run.run_id / "downloads").resolve()
    paths = [Path(f.uri.removeprefix("file://")).resolve() for f in manifest.files]
    assert [p.name for p in paths] == ["passwd", "passwd-2", "passwd-3"]
    assert all(p.parent == downloads and p.is_file() for p in paths)
    assert [f.filename for f in manifest.files] == ["../../etc/passwd"] * 3


def test_the_recording_and_every_other_artifact_type_asked_for_are_copied(
    hook: SkyvernHook, clock: FakeClock, tmp_path: Path
) -> None:
    run = _finished_run(hook, clock, "[emulator seconds=10]")

    manifest = copy_run_artifacts(
        hook, run, f"file://{tmp_path}", artifact_types=["recording", "har", "pdf", "html", "skyvern_log"]
    )

    folder = tmp_path / run.run_id
    assert sorted(str(Path(f.uri.removeprefix("file://")).relative_to(folder)) for f in manifest.files) == [
        "artifacts/har/1.har",
        "artifacts/html/1.html",
        "artifacts/pdf/1.pdf",
        "artifacts/skyvern_log/1.log",
        "downloads/invoice.pdf",
        "recording.webm",
    ]
    assert all(f.verified for f in manifest.files)


def test_an_artifact_without_a_signed_url_is_read_from_the_content_endpoint_with_the_key(
    hook: SkyvernHook, clock: FakeClock, emulator: EmulatorServer
) -> None:
    run = _finished_run(hook, clock, "[emulator seconds=10]")
    (recording,) = hook.get_run_artifacts(run.run_id, "recording")

    class Sink:
        def __init__(self) -> None:
            self.data = b""

        @property
        def size(self) -> int:
            return len(self.data)

        def write(self, chunk: bytes) -> None:
            self.data += chunk

        def restart(self) -> None:
            self.data = b""

    sink = Sink()
    hook.download(hook.artifact_content_url(recording.artifact_id), sink)

    assert hashlib.sha256(sink.data).hexdigest() == recording.checksum
    (request,) = _file_requests(emulator)
    assert request["path"] == f"/v1/artifacts/{recording.artifact_id}/content"
    assert request["api_key_sent"]


def test_a_run_that_has_not_ended_is_refused(hook: SkyvernHook, tmp_path: Path) -> None:
    run = hook.run_task(TaskRunRequest(prompt="Download it", url="https://example.com"))

    with pytest.raises(ArtifactCopyError, match=rf"Skyvern run {run.run_id} is \w+, not finished"):
        copy_run_artifacts(hook, hook.get_run(run.run_id), f"file://{tmp_path}")
    assert not any(tmp_path.iterdir())

"""The emulator's file serving: generated large downloads, HTTP Range, the content endpoint, stream breaks."""

from __future__ import annotations

import hashlib
import time

import httpx
import pytest

from airflow_provider_skyvern.emulator.blobs import PatternBlob, RangeNotSatisfiable, byte_range
from airflow_provider_skyvern.emulator.server import EmulatorServer
from airflow_provider_skyvern.hooks.skyvern import SkyvernHook
from airflow_provider_skyvern.models import FileInfo, TaskRunRequest
from tests.emulator.conftest import RUN_SECONDS, FakeClock

MIB = 1024 * 1024


def _download(hook: SkyvernHook, clock: FakeClock, directive: str) -> list[FileInfo]:
    run = hook.run_task(TaskRunRequest(prompt=f"Get the files {directive}", url="https://example.com"))
    clock.advance(RUN_SECONDS)
    return hook.get_run(run.run_id).downloaded_files or []


def test_a_directive_asks_for_large_generated_downloads_with_their_checksum_and_size(
    hook: SkyvernHook, clock: FakeClock
) -> None:
    files = _download(hook, clock, '[emulator download_mb=5 files=2 filename="report.bin"]')

    assert [(f.filename, f.file_size) for f in files] == [("report.bin", 5 * MIB)] * 2
    bodies = [httpx.get(f.url).content for f in files]
    assert [hashlib.sha256(b).hexdigest() for b in bodies] == [f.checksum for f in files]
    assert bodies[0] != bodies[1]  # each file its own bytes


def test_ranges_are_answered_206_with_content_range_and_416_outside_the_file(
    hook: SkyvernHook, clock: FakeClock
) -> None:
    (info,) = _download(hook, clock, "[emulator download_mb=1]")
    whole = httpx.get(info.url)

    part = httpx.get(info.url, headers={"Range": "bytes=1000-"})
    middle = httpx.get(info.url, headers={"Range": "bytes=10-19"})
    tail = httpx.get(info.url, headers={"Range": "bytes=-5"})
    beyond = httpx.get(info.url, headers={"Range": f"bytes={MIB}-"})

    assert whole.headers["accept-ranges"] == "bytes"
    assert (part.status_code, part.headers["content-range"]) == (206, f"bytes 1000-{MIB - 1}/{MIB}")
    assert part.content == whole.content[1000:]
    assert (middle.status_code, middle.content) == (206, whole.content[10:20])
    assert tail.content == whole.content[-5:]
    assert (beyond.status_code, beyond.headers["content-range"]) == (416, f"bytes */{MIB}")


def test_a_stream_break_fault_cuts_one_body_after_n_bytes(
    hook: SkyvernHook, clock: FakeClock, emulator: EmulatorServer
) -> None:
    (info,) = _download(hook, clock, "[emulator download_mb=2]")
    emulator.control.post(
        "/_emulator/faults", json=[{"path": "/_emulator/files/*", "break_after": 100_000, "times": 1}]
    ).raise_for_status()

    with pytest.raises(httpx.RemoteProtocolError, match="received 100000 bytes"):
        httpx.get(info.url)
    assert len(httpx.get(info.url).content) == 2 * MIB  # once only


def test_the_content_endpoint_wants_the_key_and_honours_ranges(
    hook: SkyvernHook, clock: FakeClock, emulator: EmulatorServer
) -> None:
    run = hook.run_task(TaskRunRequest(prompt="Get it", url="https://example.com"))
    clock.advance(RUN_SECONDS)
    (har,) = hook.get_run_artifacts(run.run_id, "har")
    url = f"{emulator.base_url}/v1/artifacts/{har.artifact_id}/content"

    keyless = httpx.get(url)
    keyed = httpx.get(url, headers={"x-api-key": emulator.api_key, "Range": "bytes=0-6"})

    assert keyless.status_code == 403
    assert (keyed.status_code, keyed.content) == (206, b'{"log":')


def test_generated_bytes_do_not_depend_on_where_a_read_starts() -> None:
    blob = PatternBlob("seed", 300_000)
    whole = b"".join(blob.chunks(0, blob.size))

    assert b"".join(blob.chunks(70_001, 200_000)) == whole[70_001:200_000]
    assert hashlib.sha256(whole).hexdigest() == blob.sha256
    assert byte_range("bytes=0-1,5-6", 10) is None  # several ranges: the whole file, as RFC 9110 allows
    with pytest.raises(RangeNotSatisfiable):
        byte_range("bytes=5-2", 10)


def test_a_paced_download_goes_no_faster_than_asked(hook: SkyvernHook, clock: FakeClock) -> None:
    (info,) = _download(hook, clock, "[emulator download_mb=2 download_mbps=20]")

    started = time.monotonic()
    body = httpx.get(info.url).content
    elapsed = time.monotonic() - started

    assert hashlib.sha256(body).hexdigest() == info.checksum
    assert elapsed >= 2 * MIB / 20e6 * 0.9

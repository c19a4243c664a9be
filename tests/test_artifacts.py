"""copy_run_artifacts against respx: untrusted names, checksum failures, key hygiene, restarts, memory://."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from airflow_provider_skyvern.artifacts import ArtifactCopyError, copy_run_artifacts
from airflow_provider_skyvern.artifacts.naming import MAX_NAME_BYTES, safe_name, unique_names
from airflow_provider_skyvern.artifacts.storage import DestinationUnavailable, StoragePath, check_destination
from airflow_provider_skyvern.hooks.skyvern import SkyvernHook
from airflow_provider_skyvern.models import RunResponse, parse_run_response
from tests.conftest import API_KEY, BASE_URL, FastClock, set_connection

FILES_HOST = "https://files.s3.test"
SIGNATURE = "X-Amz-Signature=deadbeefSIGNATURE"
MALICIOUS = [
    "../../etc/passwd",
    "/etc/shadow",
    "C:\\Windows\\system32\\x.dll",
    "a\x00b\x01c\x1f.pdf",
    "..",
    ".",
    "",
    None,
    "x" * 10_000 + ".pdf",
    "Rechnung März 請求書 🧾.pdf",
    "invoice.pdf",
    "invoice.pdf",
    "INVOICE.pdf",
    "CON.txt",
    "..\\..\\boot.ini",
    "name with trailing dots...",
]


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[SkyvernHook]:
    set_connection(monkeypatch, extra={"max_retries": 3})
    FastClock(monkeypatch)
    with SkyvernHook() as skyvern_hook:
        yield skyvern_hook


@pytest.fixture
def files() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as mock:
        yield mock


def _run(downloads: list[dict[str, Any]], run_id: str = "wr_1", status: str = "completed") -> RunResponse:
    return parse_run_response(
        {
            "run_id": run_id,
            "run_type": "workflow_run",
            "status": status,
            "downloaded_files": downloads,
            "created_at": "2026-12-01T00:00:00",
            "modified_at": "2026-12-01T00:00:00",
        }
    )


def _serve(mock: respx.MockRouter, name: str, body: bytes, *, checksum: str | None = None) -> dict[str, Any]:
    path = f"/bucket/{hashlib.md5(name.encode(), usedforsecurity=False).hexdigest()}"
    mock.get(f"{FILES_HOST}{path}").respond(200, content=body)
    return {
        "url": f"{FILES_HOST}{path}?{SIGNATURE}",
        "filename": name,
        "checksum": checksum or hashlib.sha256(body).hexdigest(),
        "file_size": len(body),
    }


def test_every_untrusted_name_lands_inside_the_run_s_downloads_folder_unique_and_capped(
    hook: SkyvernHook, files: respx.MockRouter, tmp_path: Path
) -> None:
    downloads = [_serve(files, f"{i}:{name}", f"file {i}".encode()) for i, name in enumerate(MALICIOUS)]
    for entry, name in zip(downloads, MALICIOUS, strict=True):
        entry["filename"] = name

    manifest = copy_run_artifacts(hook, _run(downloads), f"file://{tmp_path}", artifact_types=())

    inside = (tmp_path / "wr_1" / "downloads").resolve()
    paths = [Path(f.uri.removeprefix("file://")).resolve() for f in manifest.files]
    assert all(p.parent == inside for p in paths)
    assert len({p.name.casefold() for p in paths}) == len(MALICIOUS)
    assert all(len(p.name.encode()) <= MAX_NAME_BYTES for p in paths)
    assert [p.read_bytes() for p in paths] == [f"file {i}".encode() for i in range(len(MALICIOUS))]
    names = [p.name for p in paths]
    assert names[0] == "passwd"
    assert names[1] == "shadow"
    assert names[2] == "x.dll"
    assert names[3] == "abc.pdf"
    assert names[8].endswith(".pdf")
    assert names[9] == "Rechnung März 請求書 🧾.pdf"
    assert names[10:13] == ["invoice.pdf", "invoice-2.pdf", "INVOICE-3.pdf"]
    assert names[13] == "_CON.txt"
    assert names[14] == "boot.ini"
    assert names[15] == "name with trailing dots"
    assert [f.filename for f in manifest.files] == MALICIOUS  # the site's names, kept for reference
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wr_1"]  # nothing escaped the run folder


def test_names_are_deterministic_so_a_retry_finds_its_files() -> None:
    assert unique_names(MALICIOUS) == unique_names(MALICIOUS)
    assert safe_name("../wr_1/../../x") == "x"
    capped = safe_name("a" * 300 + ".tar.gz")
    assert capped.endswith(".gz")
    assert len(capped.encode()) == MAX_NAME_BYTES
    assert len(safe_name("é" * 500 + ".pdf").encode()) <= MAX_NAME_BYTES


def test_a_checksum_mismatch_fails_naming_the_file_and_leaves_nothing_under_its_name(
    hook: SkyvernHook, files: respx.MockRouter, tmp_path: Path
) -> None:
    good = _serve(files, "report.csv", b"a,b\n")
    bad = _serve(files, "invoice.pdf", b"%PDF-tampered", checksum="0" * 64)

    with pytest.raises(ArtifactCopyError) as raised:
        copy_run_artifacts(hook, _run([good, bad]), f"file://{tmp_path}", artifact_types=())

    got = hashlib.sha256(b"%PDF-tampered").hexdigest()
    assert str(raised.value) == (
        f"Copying invoice.pdf of Skyvern run wr_1 to file://{tmp_path}/wr_1/downloads/invoice.pdf failed: "
        f"checksum mismatch (expected sha256 {'0' * 64}, got {got})"
    )
    folder = tmp_path / "wr_1" / "downloads"
    assert sorted(p.name for p in folder.iterdir()) == ["report.csv"]  # no invoice.pdf, no .part
    partial = json.loads((tmp_path / "wr_1" / "manifest.json").read_text())
    assert partial["complete"] is False
    assert [f["filename"] for f in partial["files"]] == ["report.csv"]


def test_a_size_mismatch_fails_too(hook: SkyvernHook, files: respx.MockRouter, tmp_path: Path) -> None:
    short = _serve(files, "data.bin", b"12345")
    short.update(checksum=None, file_size=6)

    with pytest.raises(ArtifactCopyError, match=r"data\.bin .* size mismatch \(expected 6 bytes, got 5\)"):
        copy_run_artifacts(hook, _run([short]), f"file://{tmp_path}", artifact_types=())
    assert not list((tmp_path / "wr_1" / "downloads").iterdir())


def test_presigned_urls_get_no_api_key_and_the_api_s_content_endpoint_does(
    hook: SkyvernHook, files: respx.MockRouter, tmp_path: Path
) -> None:
    download = _serve(files, "invoice.pdf", b"%PDF")
    recording = {
        "artifact_id": "a_1",
        "artifact_type": "recording",
        "uri": "file:///data/artifacts/wr_1/recording.webm",  # self-hosted local storage: not HTTP
        "organization_id": "o_1",
        "created_at": "2026-12-01T00:00:00",
        "modified_at": "2026-12-01T00:00:00",
        "signed_url": "file:///data/artifacts/wr_1/recording.webm",
        "checksum": hashlib.sha256(b"webm").hexdigest(),
    }
    files.get(f"{BASE_URL}/v1/runs/wr_1/artifacts").respond(200, json=[recording])
    content = files.get(f"{BASE_URL}/v1/artifacts/a_1/content").respond(200, content=b"webm")

    manifest = copy_run_artifacts(hook, _run([download]), f"file://{tmp_path}", artifact_types=["recording"])

    (presigned,) = [c.request for c in files.calls if c.request.url.host == "files.s3.test"]
    assert "x-api-key" not in presigned.headers
    assert content.calls.last.request.headers["x-api-key"] == API_KEY
    assert (tmp_path / "wr_1" / "recording.webm").read_bytes() == b"webm"
    assert [f.kind for f in manifest.files] == ["download", "recording"]


def test_no_message_manifest_or_log_line_shows_the_key_or_a_url_signature(
    hook: SkyvernHook,
    files: respx.MockRouter,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="httpx")  # httpx logs each URL (Airflow 3.0 shows it in task logs)
    ok = _serve(files, "ok.txt", b"fine")
    expired = _serve(files, "report.pdf", b"")
    files.get(expired["url"].split("?")[0]).respond(
        403,
        content=b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
        b"<Message>Request has expired</Message><X-Amz-Expires>3600</X-Amz-Expires>"
        b"<SignatureProvided>deadbeefSIGNATURE</SignatureProvided><AWSAccessKeyId>AKIAEXAMPLE</AWSAccessKeyId>"
        b"</Error>",
    )

    with pytest.raises(ArtifactCopyError) as raised:
        copy_run_artifacts(hook, _run([ok, expired]), f"file://{tmp_path}", artifact_types=())

    message = str(raised.value)
    assert message.startswith(f"Copying report.pdf of Skyvern run wr_1 to file://{tmp_path}/wr_1/downloads/")
    assert message.endswith(
        "HTTP 403: AccessDenied: Request has expired (a presigned URL expired or was refused: read the run "
        "again for fresh URLs)"
    )
    assert "AKIAEXAMPLE" not in message
    assert "HTTP Request: GET https://files.s3.test/bucket/" in caplog.text
    logged = capsys.readouterr().out + caplog.text
    everything = message + logged + (tmp_path / "wr_1" / "manifest.json").read_text()
    assert API_KEY not in everything
    assert "SIGNATURE" not in everything
    assert "X-Amz" not in everything
    assert API_KEY not in repr(hook)


class _Breaks(httpx.SyncByteStream):
    """A body that stops with a read error after ``body``: a connection that died mid-download."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def __iter__(self) -> Iterator[bytes]:
        yield self.body
        raise httpx.ReadError("connection reset by peer")


def test_a_server_that_ignores_range_sends_everything_again_and_the_copy_starts_over(
    hook: SkyvernHook, files: respx.MockRouter, tmp_path: Path
) -> None:
    body = bytes(range(256)) * 4096
    entry = _serve(files, "big.bin", body)
    route = files.get(entry["url"].split("?")[0])
    route.side_effect = [
        httpx.Response(200, stream=_Breaks(body[:300_000])),
        httpx.Response(200, content=body),  # asked for bytes=300000-, got the whole file
    ]

    manifest = copy_run_artifacts(hook, _run([entry]), f"file://{tmp_path}", artifact_types=())

    assert route.calls[1].request.headers["range"] == "bytes=300000-"
    assert (tmp_path / "wr_1" / "downloads" / "big.bin").read_bytes() == body
    assert manifest.files[0].verified


def test_an_object_storage_path_destination_works_like_its_uri(
    hook: SkyvernHook, files: respx.MockRouter, tmp_path: Path
) -> None:
    from airflow.sdk import ObjectStoragePath

    entry = _serve(files, "a.txt", b"hello")
    destination = ObjectStoragePath(f"file://{tmp_path}/exports")

    manifest = copy_run_artifacts(hook, _run([entry], run_id="tsk_9"), destination, artifact_types=())

    assert manifest.destination == f"file://{tmp_path}/exports"
    assert manifest.files[0].uri == f"file://{tmp_path}/exports/tsk_9/downloads/a.txt"
    assert (destination / "tsk_9" / "downloads" / "a.txt").read_bytes() == b"hello"
    assert json.loads((destination / "tsk_9" / "manifest.json").read_text())["complete"] is True


def test_a_stream_that_keeps_breaking_gives_up_after_the_retry_budget_naming_the_file(
    hook: SkyvernHook, files: respx.MockRouter, tmp_path: Path
) -> None:
    body = b"y" * 100_000
    entry = _serve(files, "flaky.bin", body)
    route = files.get(entry["url"].split("?")[0])

    def one_more_byte(request: httpx.Request) -> httpx.Response:
        if "range" not in request.headers:
            return httpx.Response(200, stream=_Breaks(b"y"))
        start = int(request.headers["range"].removeprefix("bytes=").rstrip("-"))
        headers = {"content-range": f"bytes {start}-{len(body) - 1}/{len(body)}"}
        return httpx.Response(206, headers=headers, stream=_Breaks(b"y"))

    route.side_effect = one_more_byte

    with pytest.raises(ArtifactCopyError) as raised:
        copy_run_artifacts(hook, _run([entry]), f"file://{tmp_path}", artifact_types=())

    message = str(raised.value)
    assert message.startswith(
        f"Copying flaky.bin of Skyvern run wr_1 to file://{tmp_path}/wr_1/downloads/flaky.bin failed: "
    )
    assert "ReadError: connection reset by peer" in message
    assert "gave up after 4 attempts" in message  # max_retries=3: bounded, not a loop
    assert [c.request.headers.get("range") for c in route.calls] == [None, "bytes=1-", "bytes=2-", "bytes=3-"]
    assert not list((tmp_path / "wr_1" / "downloads").iterdir())


def test_a_stream_that_broke_after_its_last_byte_is_complete_when_the_server_says_416(
    hook: SkyvernHook, files: respx.MockRouter, tmp_path: Path
) -> None:
    body = b"z" * 50_000
    entry = _serve(files, "whole.bin", body)
    route = files.get(entry["url"].split("?")[0])
    route.side_effect = [
        httpx.Response(200, stream=_Breaks(body)),
        httpx.Response(416, headers={"content-range": f"bytes */{len(body)}"}),
    ]

    manifest = copy_run_artifacts(hook, _run([entry]), f"file://{tmp_path}", artifact_types=())

    assert route.calls[1].request.headers["range"] == f"bytes={len(body)}-"
    assert (tmp_path / "wr_1" / "downloads" / "whole.bin").read_bytes() == body
    assert manifest.files[0].verified


def _unchecked(mock: respx.MockRouter, name: str) -> tuple[dict[str, Any], respx.Route]:
    """A download Skyvern lists with neither checksum nor size (nothing to check the bytes against)."""
    path = f"/bucket/{name}"
    return {"url": f"{FILES_HOST}{path}?{SIGNATURE}", "filename": name}, mock.get(f"{FILES_HOST}{path}")


def test_a_server_that_caps_each_range_is_asked_for_the_rest_until_the_whole_file_is_there(
    hook: SkyvernHook, files: respx.MockRouter, tmp_path: Path
) -> None:
    body = bytes(range(256)) * 40  # 10240 bytes; a CDN answers at most 3000 of them per range
    entry, route = _unchecked(files, "capped.bin")

    def capped(request: httpx.Request) -> httpx.Response:
        if "range" not in request.headers:
            return httpx.Response(200, stream=_Breaks(body[:1000]))
        start = int(request.headers["range"].removeprefix("bytes=").rstrip("-"))
        end = min(start + 3000, len(body)) - 1
        headers = {"content-range": f"bytes {start}-{end}/{len(body)}"}
        return httpx.Response(206, headers=headers, content=body[start : end + 1])

    route.side_effect = capped

    manifest = copy_run_artifacts(hook, _run([entry]), f"file://{tmp_path}", artifact_types=())

    assert [c.request.headers.get("range") for c in route.calls] == [
        None,
        "bytes=1000-",
        "bytes=4000-",
        "bytes=7000-",
        "bytes=10000-",
    ]
    assert (tmp_path / "wr_1" / "downloads" / "capped.bin").read_bytes() == body
    assert manifest.files[0].size == len(body)


def test_a_capped_range_that_never_reaches_its_total_commits_nothing(
    hook: SkyvernHook, files: respx.MockRouter, tmp_path: Path
) -> None:
    entry, route = _unchecked(files, "stuck.bin")
    route.side_effect = [
        httpx.Response(200, stream=_Breaks(b"a" * 10)),
        *[httpx.Response(206, headers={"content-range": "bytes 10-9/100"}, content=b"")] * 5,
    ]

    with pytest.raises(ArtifactCopyError, match=r"stuck\.bin .* failed: .*short of its total of 100 bytes"):
        copy_run_artifacts(hook, _run([entry]), f"file://{tmp_path}", artifact_types=())

    assert not list((tmp_path / "wr_1" / "downloads").iterdir())


def test_a_file_an_earlier_try_kept_without_proof_is_downloaded_again(
    hook: SkyvernHook, files: respx.MockRouter, tmp_path: Path
) -> None:
    entry, route = _unchecked(files, "report.csv")
    route.respond(200, content=b"short")  # the first try got less than the file (nothing could tell)
    copy_run_artifacts(hook, _run([entry]), f"file://{tmp_path}", artifact_types=())
    route.respond(200, content=b"the whole report")

    manifest = copy_run_artifacts(hook, _run([entry]), f"file://{tmp_path}", artifact_types=())

    assert (tmp_path / "wr_1" / "downloads" / "report.csv").read_bytes() == b"the whole report"
    assert manifest.files[0].copied


def test_a_file_an_earlier_try_kept_is_skipped_when_skyverns_size_and_checksum_match(
    hook: SkyvernHook, files: respx.MockRouter, tmp_path: Path
) -> None:
    entry = _serve(files, "ok.csv", b"proven")
    copy_run_artifacts(hook, _run([entry]), f"file://{tmp_path}", artifact_types=())

    manifest = copy_run_artifacts(hook, _run([entry]), f"file://{tmp_path}", artifact_types=())

    assert not manifest.files[0].copied
    assert manifest.files[0].verified


def test_a_file_name_with_a_line_break_or_an_ansi_escape_forges_no_log_line_or_message(
    hook: SkyvernHook, files: respx.MockRouter, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    forged = "a.pdf\n[2026-12-01] INFO - Task exited with return code 0\x1b[2K"
    ok = _serve(files, forged, b"fine")
    bad = _serve(files, "b\r\nERROR fake.pdf", b"body", checksum="0" * 64)

    with pytest.raises(ArtifactCopyError) as raised:
        copy_run_artifacts(
            hook, _run([ok, bad]), f"file://{tmp_path}", artifact_types=(), log=logging.getLogger("t")
        )

    message = str(raised.value)
    assert message.startswith("Copying b\\r\\nERROR fake.pdf of Skyvern run wr_1")
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert (
        "Copied a.pdf\\n[2026-12-01] INFO - Task exited with return code 0\\x1b[2K of Skyvern run" in logged
    )
    for text in (message, logged):
        assert "\x1b" not in text
        assert "\r" not in text
    assert "\nERROR" not in logged
    assert "\n[2026" not in logged


@pytest.mark.parametrize(
    ("failure", "name"),
    [
        (httpx.TooManyRedirects("Exceeded maximum allowed redirects."), "TooManyRedirects"),
        (httpx.DecodingError("Error -3 while decompressing data"), "DecodingError"),
    ],
)
def test_a_redirect_loop_or_an_undecodable_body_fails_once_naming_the_file(
    hook: SkyvernHook, files: respx.MockRouter, tmp_path: Path, failure: Exception, name: str
) -> None:
    entry = _serve(files, "loop.pdf", b"")
    route = files.get(entry["url"].split("?")[0])
    route.side_effect = failure

    with pytest.raises(ArtifactCopyError) as raised:
        copy_run_artifacts(hook, _run([entry]), f"file://{tmp_path}", artifact_types=())

    message = str(raised.value)
    assert message.startswith(f"Copying loop.pdf of Skyvern run wr_1 to file://{tmp_path}/wr_1/downloads/")
    assert f"GET {FILES_HOST}/bucket/" in message
    assert f"{name}: " in message
    assert "SIGNATURE" not in message
    assert route.call_count == 1  # the same answer again: not retried


def test_a_copy_past_its_deadline_downloads_nothing_more_and_says_so(
    hook: SkyvernHook, files: respx.MockRouter, tmp_path: Path
) -> None:
    import time

    entry = _serve(files, "late.pdf", b"late")
    route = files.get(entry["url"].split("?")[0])

    with pytest.raises(ArtifactCopyError, match=r"late\.pdf .*the operator's time is up"):
        copy_run_artifacts(
            hook, _run([entry]), f"file://{tmp_path}", artifact_types=(), deadline=time.time() - 1
        )

    assert route.call_count == 0


def test_checking_a_destination_writes_nothing(tmp_path: Path) -> None:
    destination = tmp_path / "not" / "yet"
    check_destination(f"file://{destination}")
    check_destination(StoragePath(f"file://{destination}"))
    assert list(tmp_path.iterdir()) == []  # no folder made, no probe file left


def test_a_destination_that_cannot_be_opened_is_one_line_naming_the_field() -> None:
    with pytest.raises(DestinationUnavailable) as raised:
        check_destination("hdfs://namenode/skyvern?sig=SECRET")
    assert str(raised.value) == (
        "artifacts_destination 'hdfs://namenode/skyvern': Airflow cannot open hdfs:// here (No filesystem "
        "registered for scheme hdfs); install the Airflow provider that registers hdfs:// (and its fsspec "
        "package) where the tasks run"
    )


def test_an_unknown_protocol_is_one_line_naming_the_field_and_the_protocol() -> None:
    """Airflow 3.3 says "Unsupported filesystem: 'nosuch'", 3.0 "Protocol not known: nosuch"."""
    with pytest.raises(DestinationUnavailable) as raised:
        check_destination("nosuch://bucket/x")
    message = str(raised.value)
    assert message.startswith("artifacts_destination 'nosuch://bucket/x': ")
    assert "nosuch" in message.removeprefix("artifacts_destination 'nosuch://bucket/x': ")
    assert "\n" not in message

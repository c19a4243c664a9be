"""``artifacts_destination`` on the run operators, against the emulator: the files land at the destination
when the run ends, XCom ``artifacts`` holds the manifest, and a failed copy fails the task naming the file
while its retry copies again without starting a second Skyvern run."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_skyvern.compat import AirflowFailException
from airflow_provider_skyvern.emulator.server import EmulatorServer
from airflow_provider_skyvern.operators.task import SkyvernRunFailedError, SkyvernRunTaskOperator
from airflow_provider_skyvern.runs.ledger import STATE_KEY
from tests.emulator.conftest import RUN_SECONDS, FakeClock
from tests.operator_support import FakeStateStore, FakeTaskInstance, make_context

pytestmark = pytest.mark.usefixtures("hook")
PROMPT = "Download last month's invoices [emulator download_mb=1 files=2]"


def _operator(destination: str, **kwargs: Any) -> SkyvernRunTaskOperator:
    return SkyvernRunTaskOperator(
        task_id="invoices",
        prompt=PROMPT,
        url="https://portal.example.com",
        deferrable=False,
        poll_interval=1,
        artifacts_destination=destination,
        **kwargs,
    )


def _runs(emulator: EmulatorServer) -> list[dict[str, Any]]:
    return list(emulator.control.get("/_emulator/runs").json()["runs"])


def _run_to_the_end(operator: SkyvernRunTaskOperator, context: dict[str, Any], clock: FakeClock) -> Any:
    """The blocking wait polls on the fake clock: each sleep moves emulated time on."""
    from airflow_provider_skyvern.hooks.clock import Clock

    original = Clock.sleep

    def sleep(self: Clock, seconds: float) -> None:
        clock.advance(RUN_SECONDS)
        original(self, 0)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Clock, "sleep", sleep)
        return operator.execute(context)


def test_the_files_land_at_the_destination_and_xcom_gets_the_manifest(
    emulator: EmulatorServer, clock: FakeClock, tmp_path: Path
) -> None:
    context = make_context(FakeStateStore())
    returned = _run_to_the_end(_operator(f"file://{tmp_path}"), context, clock)

    xcoms = context["ti"].xcoms
    manifest = xcoms["artifacts"]
    run_id = xcoms["run_id"]
    assert returned is not None
    assert manifest["run_id"] == run_id
    assert manifest["complete"] is True
    downloads = [f for f in manifest["files"] if f["kind"] == "download"]
    assert len(downloads) == 2
    for entry, info in zip(downloads, xcoms["downloaded_files"], strict=True):
        copied = Path(entry["uri"].removeprefix("file://"))
        assert copied.is_relative_to(tmp_path / run_id / "downloads")
        assert hashlib.sha256(copied.read_bytes()).hexdigest() == entry["sha256"] == info["checksum"]
        assert entry["verified"] is True
    assert {f["kind"] for f in manifest["files"]} >= {"download", "recording", "screenshot"}
    assert (tmp_path / run_id / "manifest.json").is_file()
    assert len(_runs(emulator)) == 1


def test_a_failed_copy_fails_the_try_and_the_retry_copies_without_a_new_run(
    emulator: EmulatorServer, clock: FakeClock, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the destination folder should be")
    store = FakeStateStore()

    with pytest.raises(SkyvernRunFailedError) as failed:
        _run_to_the_end(
            _operator(f"file://{blocker}", retries=1),
            make_context(store, FakeTaskInstance(try_number=1, max_tries=1)),
            clock,
        )
    message = str(failed.value)
    assert "Copying " in message
    assert "failed: cannot write to the destination" in message
    assert message.endswith("a retry copies again, without a new Skyvern run")
    assert store.values  # the run is still remembered for the retry

    blocker.unlink()
    blocker.mkdir()
    context = make_context(store, FakeTaskInstance(try_number=2, max_tries=1))
    _run_to_the_end(_operator(f"file://{blocker}", retries=1), context, clock)

    (run,) = _runs(emulator)  # one paid run for both tries
    assert context["ti"].xcoms["artifacts"]["run_id"] == run["run_id"]
    assert (blocker / run["run_id"] / "manifest.json").is_file()
    assert store.values[STATE_KEY]["phase"] == "ended"  # kept for a retry should the result's push fail


def test_a_failed_copy_no_retry_can_recover_says_how_to_copy_the_files(
    emulator: EmulatorServer, clock: FakeClock, tmp_path: Path
) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    with pytest.raises(AirflowFailException) as failed:
        _run_to_the_end(_operator(f"file://{blocker}"), make_context(FakeStateStore()), clock)
    (run,) = _runs(emulator)
    assert f"copy its files with SkyvernCopyArtifactsOperator(run_id='{run['run_id']}')" in str(failed.value)


def test_a_destination_that_is_not_a_uri_fails_the_dag_parse() -> None:
    with pytest.raises(ValueError, match=r"artifacts_destination: 'data/invoices' is not a URI"):
        _operator("data/invoices")


@pytest.mark.parametrize(
    ("destination", "hidden", "install"),
    [
        ("s3://aws_default@my-bucket/invoices/{{ ds }}", "s3fs", "apache-airflow-providers-amazon[s3fs]"),
        ("gs://my-bucket/invoices", "gcsfs", "apache-airflow-providers-google"),
        ("abfs://container/invoices", "adlfs", "apache-airflow-providers-microsoft-azure"),
    ],
)
def test_a_store_that_cannot_be_opened_fails_before_any_skyvern_run_is_started(
    emulator: EmulatorServer,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    destination: str,
    hidden: str,
    install: str,
) -> None:
    monkeypatch.setitem(sys.modules, hidden, None)  # the store's fsspec package is not installed
    operator = _operator(destination, retries=3)
    operator.artifacts_destination = destination.replace("{{ ds }}", "2026-12-01")  # as rendered

    with pytest.raises(AirflowFailException) as failed:
        _run_to_the_end(operator, make_context(FakeStateStore()), clock)

    message = str(failed.value)
    protocol = destination.split("://")[0]
    assert "\n" not in message
    assert message.startswith("SkyvernRunTaskOperator: artifacts_destination ")
    assert f"{protocol}://" in message
    assert install in message
    assert failed.value.__cause__ is None
    assert _runs(emulator) == []  # nothing started, nothing paid for
    assert emulator.state.requests == []  # not even a lookup of an earlier run

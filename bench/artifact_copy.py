"""Copying a large Skyvern download to object storage: peak memory and wall time (issue 11, item 3).

    python bench/artifact_copy.py [--quick] [--mb 200] [--repeat 5]

The emulator runs in another process (``python -m airflow_provider_skyvern.emulator``) with one
completed run whose download is ``--mb`` MiB, generated on the fly (``[emulator download_mb=N]``). Each
measurement is a fresh interpreter that imports everything, warms up on a 1 MiB run, reads its RSS, then
samples RSS every 5 ms in a thread while it copies the big file to a ``file://`` destination in /tmp:

* ours: ``copy_run_artifacts(hook, run, "file:///tmp/...", artifact_types=())``, which streams through
  ``SkyvernHook.download`` in 1 MiB writes, hashes SHA-256 on the way, verifies checksum and size,
  writes ``.<name>.part`` and renames it, and writes ``manifest.json``;
* baseline: ``httpx.Client().stream("GET", url)`` of the same presigned URL (client made before the clock
  starts), each ``iter_bytes()`` piece written to a file as it comes: no hashing, no checks, no rename;
* baseline+sha256: the same with ``hashlib.sha256().update(piece)`` in the loop, the least any copy that
  verifies Skyvern's checksum must do (on loopback the client's CPU is the limit, and SHA-256 is a large
  part of it).

With ``--mbps N`` the emulator serves the big file at N MB/s, as a network link would: the case of a real
S3 presigned URL, where the link and not the client's CPU is the limit. The three rotate (each goes first in turn), ``--repeat`` times each; the medians and the ratios to the
baselines are printed. Goals: peak extra RSS of ours at most +50 MB; time ratio at most 1.2.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    API_KEY,
    Server,
    airflow_home,
    banner,
    connection_json,
    http,
    last_json,
    median,
    ratio,
    run_python,
    table,
)

CHILD = r"""
import hashlib, json, os, sys, threading, time
import httpx
from airflow_provider_skyvern.artifacts import copy_run_artifacts
from airflow_provider_skyvern.hooks.skyvern import SkyvernHook

variant, big_id, small_id, folder = sys.argv[1:5]

def rss():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

client = httpx.Client(timeout=60)  # made before the clock starts (an SSL context costs ~50 ms)

def plain(url, path, digest=None):
    with client.stream("GET", url) as response, open(path, "wb") as out:
        response.raise_for_status()
        for chunk in response.iter_bytes():  # as httpcore reads them: no re-chunking
            out.write(chunk)
            if digest is not None:
                digest.update(chunk)

def copy(hook, run_id, target):
    run = hook.get_run(run_id)
    if variant == "ours":
        copy_run_artifacts(hook, run, f"file://{target}", artifact_types=())
    elif variant == "baseline":
        plain(run.downloaded_files[0].url, os.path.join(target, "plain.bin"))
    else:  # the same plus SHA-256 in the loop: the floor of any copy that verifies Skyvern's checksum
        digest = hashlib.sha256()
        plain(run.downloaded_files[0].url, os.path.join(target, "plain.bin"), digest)
        assert digest.hexdigest() == run.downloaded_files[0].checksum

with SkyvernHook() as hook:
    os.makedirs(os.path.join(folder, "big"), exist_ok=True)
    os.makedirs(os.path.join(folder, "warm"), exist_ok=True)
    copy(hook, small_id, os.path.join(folder, "warm"))  # imports, first connection, first write
    base = rss()
    peak = [base]
    done = threading.Event()
    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.005)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    copy(hook, big_id, os.path.join(folder, "big"))
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    peak[0] = max(peak[0], rss())
print(json.dumps({"seconds": seconds, "extra_rss": peak[0] - base, "base_rss": base}))
"""


def _finished_run(base_url: str, megabytes: float, mbps: float = 0.0) -> str:
    headers = {"x-api-key": API_KEY}
    body = {
        "prompt": f"Download the export [emulator download_mb={megabytes:g} download_mbps={mbps:g} seconds=0.2]",
        "url": "https://example.com",
    }
    run_id: str = http("POST", f"{base_url}/v1/run/tasks", body, headers)["run_id"]
    for _ in range(100):
        if http("GET", f"{base_url}/v1/runs/{run_id}", headers=headers)["status"] == "completed":
            return run_id
        time.sleep(0.1)
    raise RuntimeError(f"emulated run {run_id} did not complete")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mb", type=float, default=200.0, help="size of the download in MiB (default 200)")
    parser.add_argument("--repeat", type=int, default=5, help="measurements of each variant (default 5)")
    parser.add_argument("--quick", action="store_true", help="3 measurements each")
    parser.add_argument(
        "--mbps",
        type=float,
        default=0.0,
        help="the emulator serves the download at this pace in MB/s, like a real link (default 0: as fast as it can)",
    )
    args = parser.parse_args()
    repeat = 3 if args.quick else args.repeat
    print(banner("Copying a Skyvern download to object storage", sys.argv), flush=True)

    variants = ("ours", "baseline", "baseline+sha256")
    results: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    with airflow_home() as env:
        emulator_cmd = [sys.executable, "-m", "airflow_provider_skyvern.emulator", "--port", "0"]
        with Server([*emulator_cmd, "--api-key", API_KEY], env) as emulator:
            env["AIRFLOW_CONN_SKYVERN_DEFAULT"] = connection_json(emulator.base_url)
            big = _finished_run(emulator.base_url, args.mb, args.mbps)
            small = _finished_run(emulator.base_url, 1)
            http("GET", f"{emulator.base_url}/v1/runs/{big}", headers={"x-api-key": API_KEY})  # checksum made
            for index in range(repeat):
                order = variants[index % 3 :] + variants[: index % 3]
                for variant in order:
                    with tempfile.TemporaryDirectory(prefix="skyvern_bench_copy_") as folder:
                        out, _ = run_python(CHILD, env, variant, big, small, folder)
                    result = last_json(out)
                    results[variant].append(result)
                    print(
                        f"  {variant:15} {result['seconds']:6.2f} s  +{result['extra_rss'] / 1e6:6.1f} MB RSS",
                        flush=True,
                    )

    seconds = {v: median([r["seconds"] for r in rs]) for v, rs in results.items()}
    extra = {v: median([r["extra_rss"] / 1e6 for r in rs]) for v, rs in results.items()}
    peak = {v: max(r["extra_rss"] / 1e6 for r in rs) for v, rs in results.items()}
    throughput = {v: args.mb * 1.048576 / seconds[v] for v in seconds}
    print()
    print(
        table(
            ["variant", f"median wall time ({repeat} runs)", "MB/s", "median extra RSS", "max extra RSS"],
            [
                [v, f"{seconds[v]:.2f} s", f"{throughput[v]:.0f}", f"{extra[v]:.1f} MB", f"{peak[v]:.1f} MB"]
                for v in variants
            ],
        )
    )
    print(
        f"\ntime ratio ours / plain httpx.stream: {ratio(seconds['ours'], seconds['baseline'])} (goal <= 1.2)"
    )
    print(
        f"time ratio ours / plain httpx.stream + sha256: {ratio(seconds['ours'], seconds['baseline+sha256'])}"
    )
    print(f"peak extra RSS of ours: {peak['ours']:.1f} MB (goal <= 50 MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Extra import time of the operator module over ``import airflow.sdk``, in fresh interpreters.

    python bench/import_cost.py [--quick] [--runs N]

Each run is a pair of fresh interpreters sharing one AIRFLOW_HOME: A imports ``airflow.sdk`` alone, B
imports ``airflow.sdk`` then ``airflow_provider_skyvern.operators.task`` (the import every DAG file
using the operator pays). The order inside a pair alternates, so drift on a shared machine hits both
sides. Figures are medians in ms: A, B, the paired difference B - A (the issue's figure), and B's own
split (time spent in the second import, measured inside the same interpreter). One more run of B under
``python -X importtime`` shows where the provider's share goes.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict

from _common import airflow_home, banner, last_json, median, ratio, run_python, table

OPERATOR_MODULE = "airflow_provider_skyvern.operators.task"
GOAL_MS = 30.0

SDK_ONLY = """
import json, time
t0, c0 = time.perf_counter(), time.process_time()
import airflow.sdk
t1, c1 = time.perf_counter(), time.process_time()
print(json.dumps({"total": t1 - t0, "total_cpu": c1 - c0}))
"""

SDK_AND_OPERATOR = f"""
import json, sys, time
t0, c0 = time.perf_counter(), time.process_time()
import airflow.sdk
t1, c1 = time.perf_counter(), time.process_time()
sys.stderr.write("BENCH-MARK after airflow.sdk\\n")
sys.stderr.flush()
import {OPERATOR_MODULE}
t2, c2 = time.perf_counter(), time.process_time()
print(json.dumps({{"total": t2 - t0, "total_cpu": c2 - c0, "operator": t2 - t1, "operator_cpu": c2 - c1}}))
"""


def parse_importtime(stderr: str) -> tuple[list[tuple[str, int, int]], list[tuple[str, int, int]]]:
    """(modules imported before the marker, after it): name, self us, cumulative us."""
    before: list[tuple[str, int, int]] = []
    after: list[tuple[str, int, int]] = []
    target = before
    for line in stderr.splitlines():
        if line.startswith("BENCH-MARK"):
            target = after
            continue
        if not line.startswith("import time:") or "imported package" in line:
            continue
        _, self_us, cumulative_us, name = (
            part.strip() for part in line.replace("import time:", "|").split("|")
        )
        target.append((name, int(self_us), int(cumulative_us)))
    return before, after


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=15, help="pairs of fresh interpreters (default 15)")
    parser.add_argument("--quick", action="store_true", help="5 pairs")
    args = parser.parse_args()
    runs = 5 if args.quick else args.runs
    print(banner("import_cost: operator module over airflow.sdk", sys.argv))

    samples: dict[str, list[float]] = defaultdict(list)
    with airflow_home() as env:
        run_python(SDK_AND_OPERATOR, env)  # warm-up, not counted: writes airflow.cfg, fills __pycache__
        for i in range(runs):
            order = (SDK_ONLY, SDK_AND_OPERATOR) if i % 2 == 0 else (SDK_AND_OPERATOR, SDK_ONLY)
            for code in order:
                result = last_json(run_python(code, env)[0])
                side = "A" if code is SDK_ONLY else "B"
                for key, value in result.items():
                    samples[f"{side}.{key}"].append(value * 1000)
        _, profile = run_python(SDK_AND_OPERATOR, env, options=("-X", "importtime"))

    rows = []
    for clock, suffix in (("wall", ""), ("CPU", "_cpu")):
        a_values, b_values = samples[f"A.total{suffix}"], samples[f"B.total{suffix}"]
        paired = [b - a for a, b in zip(a_values, b_values, strict=True)]
        a, b, extra = median(a_values), median(b_values), median(paired)
        inside = samples[f"B.operator{suffix}"]
        rows += [
            [f"A: import airflow.sdk (baseline), {clock}", f"{a:.1f}", _range(a_values), "1.00"],
            [f"B: import airflow.sdk + operator module, {clock}", f"{b:.1f}", _range(b_values), ratio(b, a)],
            [
                f"extra = B - A, median of paired differences, {clock}",
                f"{extra:+.1f}",
                _range(paired),
                ratio(extra, a),
            ],
            [
                f"extra measured inside B (second import only), {clock}",
                f"{median(inside):.1f}",
                _range(inside),
                ratio(median(inside), a),
            ],
        ]
    print(
        f"\n{runs} pairs of fresh interpreters; medians in ms; ratio = over A's median; goal: extra <= {GOAL_MS:.0f} ms (wall)\n"
    )
    print(table(["measurement", "median ms", "range ms", "ratio to A"], rows))

    before, after = parse_importtime(profile)
    loaded_by_sdk = {name for name, _, _ in before}
    new = [row for row in after if row[0] not in loaded_by_sdk]
    print("\nOne run under -X importtime (its own overhead included): the modules the operator import loaded")
    print("on top of airflow.sdk, by self time (module body only; cumulative includes what it imported):\n")
    top = sorted(new, key=lambda row: -row[1])[:15]
    print(
        table(
            ["module", "self ms", "cumulative ms"],
            [[n, f"{s / 1000:.1f}", f"{c / 1000:.1f}"] for n, s, c in top],
        )
    )
    by_package: dict[str, int] = defaultdict(int)
    count: dict[str, int] = defaultdict(int)
    for name, self_us, _ in new:
        by_package[name.split(".")[0]] += self_us
        count[name.split(".")[0]] += 1
    total = sum(by_package.values())
    print(
        f"\nall {len(new)} modules new to the process, self time summed by top-level package (total {total / 1000:.1f} ms):\n"
    )
    packages = sorted(by_package.items(), key=lambda kv: -kv[1])[:12]
    print(
        table(
            ["package", "modules", "self ms", "share"],
            [[p, count[p], f"{us / 1000:.1f}", f"{us / total:.0%}"] for p, us in packages],
        )
    )
    return 0


def _range(values: list[float]) -> str:
    return f"[{min(values):.1f}, {max(values):.1f}]"


if __name__ == "__main__":
    sys.exit(main())

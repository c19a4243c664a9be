"""DagBag parse time of a DAG file with one SkyvernRunTaskOperator vs the same file with one plain operator.

    python bench/dag_parse.py [--quick] [--runs N]

Three DAG files, identical but for their one task: ``EmptyOperator`` (the baseline), ``BashOperator``
(a second plain reference) and ``SkyvernRunTaskOperator`` (prompt, url, an extraction schema, deferrable).
Each parse runs in a fresh interpreter that first does what Airflow 3.3's DAG processor does before it
forks the parsing child: ``airflow.sdk`` and the DagBag loaded, ``_AIRFLOW_PROCESS_CONTEXT=client``, and
the file's ``airflow.*`` imports pre-imported (``[dag_processor] parsing_pre_import_modules``; this
covers ``airflow.providers.standard`` but not ``airflow_provider_skyvern``, which each parse imports).
The timed part is ``BundleDagBag(file, bundle_path, bundle_name, load_op_links=False)``, the processor's
own call. A fourth row parses the Skyvern file with the operator module pre-imported too: what remains
once the import is paid (the operator's constructor and checks). Each run parses the files in a rotating order; figures are medians in ms, and the
difference to the EmptyOperator file is the median of the per-run differences.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from _common import airflow_home, banner, last_json, median, ratio, run_python, table

GOAL_MS = 20.0
HEADER = """from datetime import datetime

from airflow.sdk import DAG
{import_line}

with DAG(dag_id="bench_{name}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
    {task}
"""
DAGS = {
    "empty": (
        "from airflow.providers.standard.operators.empty import EmptyOperator",
        'EmptyOperator(task_id="run")',
    ),
    "bash": (
        "from airflow.providers.standard.operators.bash import BashOperator",
        'BashOperator(task_id="run", bash_command="echo run")',
    ),
    "skyvern": (
        "from airflow_provider_skyvern.operators.task import SkyvernRunTaskOperator",
        "SkyvernRunTaskOperator(\n"
        '        task_id="run",\n'
        '        prompt="Find the cheapest product on this page; extract its name and price in USD.",\n'
        '        url="https://webscraper.io/test-sites/e-commerce/allinone",\n'
        "        data_extraction_schema={\n"
        '            "type": "object",\n'
        '            "properties": {"name": {"type": "string"}, "price": {"type": "number"}},\n'
        '            "required": ["name", "price"],\n'
        "        },\n"
        "        max_steps=10,\n"
        "        deferrable=True,\n"
        "    )",
    ),
}
LABELS = {
    "empty": "one EmptyOperator (baseline)",
    "bash": "one BashOperator",
    "skyvern": "one SkyvernRunTaskOperator",
    "skyvern_preimported": "same, operator module pre-imported (not timed)",
}
OPERATOR_MODULE = "airflow_provider_skyvern.operators.task"

PARSE = """
import importlib, json, os, sys, time
from pathlib import Path
os.environ["_AIRFLOW_PROCESS_CONTEXT"] = "client"  # as the processor's parsing child
import airflow.sdk
from airflow.dag_processing.dagbag import BundleDagBag
from airflow.utils.file import iter_airflow_imports
path = Path(sys.argv[1])
for module in iter_airflow_imports(str(path)):  # the processor's parsing_pre_import_modules
    importlib.import_module(module)
for module in sys.argv[2:]:  # only for the "pre-imported" row: what is left besides the import
    importlib.import_module(module)
t0, c0 = time.perf_counter(), time.process_time()
bag = BundleDagBag(dag_folder=str(path), bundle_path=path.parent, bundle_name="bench", load_op_links=False)
t1, c1 = time.perf_counter(), time.process_time()
tasks = [len(dag.tasks) for dag in bag.dags.values()]
print(json.dumps({"wall": t1 - t0, "cpu": c1 - c0, "tasks": tasks, "errors": bag.import_errors}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=15, help="fresh interpreters per DAG file (default 15)")
    parser.add_argument("--quick", action="store_true", help="5 runs")
    args = parser.parse_args()
    runs = 5 if args.quick else args.runs
    print(banner("dag_parse: DagBag parse of a DAG file, Skyvern operator vs plain operators", sys.argv))

    samples: dict[str, list[float]] = defaultdict(list)
    with airflow_home() as env, tempfile.TemporaryDirectory(prefix="skyvern_bench_dags_") as folder:
        files = {}
        for name, (import_line, task) in DAGS.items():
            files[name] = Path(folder, f"bench_{name}.py")
            files[name].write_text(HEADER.format(import_line=import_line, name=name, task=task))
        files["skyvern_preimported"] = files["skyvern"]
        names = list(LABELS)
        for name in names:  # warm-up, not counted: airflow.cfg, __pycache__
            _parse(files[name], env, name)
        for i in range(runs):
            order = names[i % len(names) :] + names[: i % len(names)]
            for name in order:
                result = _parse(files[name], env, name)
                samples[f"{name}.wall"].append(result["wall"] * 1000)
                samples[f"{name}.cpu"].append(result["cpu"] * 1000)

    print(
        f"\n{runs} parses per file, each in a fresh interpreter; medians in ms; goal: Skyvern - Empty <= +{GOAL_MS:.0f} ms\n"
    )
    rows = []
    for clock in ("wall", "cpu"):
        base = samples[f"empty.{clock}"]
        for name in names:
            values = samples[f"{name}.{clock}"]
            diff = (
                "-"
                if name == "empty"
                else f"{median([v - b for v, b in zip(values, base, strict=True)]):+.1f}"
            )
            rows.append(
                [
                    f"{LABELS[name]}, {clock}",
                    f"{median(values):.1f}",
                    _range(values),
                    diff,
                    ratio(median(values), median(base)),
                ]
            )
    print(table(["DAG file", "median ms", "range ms", "vs Empty, ms (paired)", "ratio to Empty"], rows))
    return 0


def _parse(path: Path, env: dict[str, str], name: str) -> dict[str, Any]:
    extra = [OPERATOR_MODULE] if name == "skyvern_preimported" else []
    result: dict[str, Any] = last_json(run_python(PARSE, env, str(path), *extra)[0])
    if result["errors"] or result["tasks"] != [1]:
        raise RuntimeError(f"{path.name} did not parse to one DAG with one task: {result}")
    return result


def _range(values: list[float]) -> str:
    return f"[{min(values):.1f}, {max(values):.1f}]"


if __name__ == "__main__":
    sys.exit(main())

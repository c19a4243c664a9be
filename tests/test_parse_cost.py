"""A DAG file that only constructs operators imports neither the hook, the trigger nor the response models
(issue 9, item 3): measured in bench/, guarded here by what a fresh interpreter has imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from airflow_provider_skyvern.version_compat import AIRFLOW_V_3_1_PLUS

PARSE = """
import json, sys
from airflow.sdk import DAG, BaseOperator  # what any DAG file imports: not ours to count
airflow_own = set(sys.modules)
from airflow_provider_skyvern.operators.task import SkyvernRunTaskOperator, SkyvernRunWorkflowOperator
SkyvernRunTaskOperator(task_id="t", prompt="Get the title", url="https://example.com", model={"name": "m"},
                       proxy_location={"country": "us"}, max_steps=3)
SkyvernRunWorkflowOperator(task_id="w", workflow_id="wpid_1", parameters={"day": "{{ ds }}"},
                           max_elapsed_time_minutes=60)
from airflow_provider_skyvern.sensors.skyvern import SkyvernRunSensor
SkyvernRunSensor(task_id="s", run_id="{{ ti.xcom_pull(task_ids='t') }}", deferrable=True,
                 skip_statuses=["canceled"])
errors = []
for bad in (lambda: SkyvernRunTaskOperator(task_id="bad", prompt="p", model="gpt-4"),
            lambda: SkyvernRunWorkflowOperator(task_id="bad", workflow_id="wpid_1", browser_type="lynx"),
            lambda: SkyvernRunSensor(task_id="bad", run_id="wr_1", success_statuses=["done"])):
    try:
        bad()
    except ValueError as exc:
        errors.append(str(exc))
print(json.dumps({"error": " | ".join(errors), "modules": sorted(set(sys.modules) - airflow_own)}))
"""


def _parse_in_fresh_interpreter() -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", PARSE], capture_output=True, text=True, check=True, env=dict(os.environ)
    )
    parsed: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return parsed


def test_parsing_a_dag_keeps_the_runtime_modules_out_but_still_checks_values() -> None:
    parsed = _parse_in_fresh_interpreter()
    modules = set(parsed["modules"])  # type: ignore[call-overload]
    assert "model: Input should be a valid dictionary" in str(parsed["error"])  # still checked at parse
    assert "browser_type: 'lynx' is not accepted" in str(parsed["error"])
    assert "success_statuses: 'done' is not a final Skyvern status" in str(parsed["error"])
    for runtime_only in (
        "airflow_provider_skyvern.hooks.skyvern",
        "airflow_provider_skyvern.models",
        "airflow_provider_skyvern.triggers.skyvern",
        "airflow_provider_skyvern.runs.claim",
    ):
        assert runtime_only not in modules, runtime_only
    # OpenLineage is imported by the operators' lineage methods only, never by a parse (issue 21)
    assert not [name for name in modules if name.startswith(("openlineage", "airflow.providers.openlineage"))]
    assert "airflow_provider_skyvern.runs.lineage_facets" not in modules
    if AIRFLOW_V_3_1_PLUS:  # 3.0's airflow.exceptions, where AirflowException lives there, imports it
        assert "airflow.triggers.base" not in modules


TASK_ONLY = """
import json, sys
from airflow.sdk import DAG, BaseOperator
from airflow_provider_skyvern.operators.task import SkyvernRunTaskOperator
SkyvernRunTaskOperator(task_id="t", prompt="Get the title", url="https://example.com")
print(json.dumps(sorted(m for m in sys.modules if m.startswith("airflow_provider_skyvern"))))
"""


def test_a_dag_with_only_task_operators_does_not_load_the_workflow_operator() -> None:
    result = subprocess.run(
        [sys.executable, "-c", TASK_ONLY], capture_output=True, text=True, check=True, env=dict(os.environ)
    )
    modules = json.loads(result.stdout.strip().splitlines()[-1])
    assert "airflow_provider_skyvern.operators.task" in modules
    assert "airflow_provider_skyvern.operators.workflow" not in modules
    assert "airflow_provider_skyvern.requests.workflow" not in modules


SESSION_LOGIN_DOWNLOAD = """
import json, sys
from airflow.sdk import DAG, BaseOperator
airflow_own = set(sys.modules)
from airflow_provider_skyvern.operators.browser_session import skyvern_browser_session
from airflow_provider_skyvern.operators.download_files import SkyvernDownloadFilesOperator
from airflow_provider_skyvern.operators.login import SkyvernLoginOperator
with DAG("d", schedule=None):
    session = skyvern_browser_session("portal", session_timeout=30)
    login = SkyvernLoginOperator(task_id="login", credential_type="1password", onepassword_vault_id="v",
                                 onepassword_item_id="i", browser_session_id=session.browser_session_id)
    files = SkyvernDownloadFilesOperator(task_id="files", navigation_goal="Get the invoice",
                                         browser_session_id=session.browser_session_id)
    session.create >> login >> files >> session.close
try:
    SkyvernLoginOperator(task_id="bad", credential_type="skyvern")
    error = ""
except ValueError as exc:
    error = str(exc)
print(json.dumps({"error": error, "modules": sorted(set(sys.modules) - airflow_own)}))
"""


def test_session_login_and_download_operators_parse_without_the_runtime_modules() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SESSION_LOGIN_DOWNLOAD],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ),
    )
    parsed = json.loads(result.stdout.strip().splitlines()[-1])
    assert "credential_id: is required when credential_type is 'skyvern'" in parsed["error"]
    for runtime_only in (
        "airflow_provider_skyvern.hooks.skyvern",
        "airflow_provider_skyvern.models",
        "airflow_provider_skyvern.runs.claim",
        "airflow_provider_skyvern.runs.kinds",
        "airflow_provider_skyvern.requests.workflow",
    ):
        assert runtime_only not in parsed["modules"], runtime_only


ONE_IMPORT = """
import json, sys
from airflow.sdk import DAG, BaseOperator
from airflow_provider_skyvern.operators import SkyvernRunTaskOperator
SkyvernRunTaskOperator(task_id="t", prompt="Get the title", url="https://example.com")
loaded = sorted(m for m in sys.modules if m.startswith("airflow_provider_skyvern"))
import airflow_provider_skyvern.operators as operators
from airflow_provider_skyvern.operators.artifacts import SkyvernCopyArtifactsOperator
from airflow_provider_skyvern.operators.browser_session import (
    SkyvernCloseBrowserSessionOperator, SkyvernCreateBrowserSessionOperator, skyvern_browser_session)
from airflow_provider_skyvern.operators.download_files import SkyvernDownloadFilesOperator
from airflow_provider_skyvern.operators.login import SkyvernLoginOperator
from airflow_provider_skyvern.operators.task import SkyvernRunTaskOperator as Task
from airflow_provider_skyvern.operators.workflow import SkyvernRunWorkflowOperator
same = all(getattr(operators, obj.__name__) is obj for obj in (
    SkyvernCopyArtifactsOperator, SkyvernCloseBrowserSessionOperator, SkyvernCreateBrowserSessionOperator,
    skyvern_browser_session, SkyvernDownloadFilesOperator, SkyvernLoginOperator, Task,
    SkyvernRunWorkflowOperator))
try:
    operators.SkyvernNoSuchOperator
    missing = ""
except AttributeError as exc:
    missing = str(exc)
print(json.dumps({"loaded": loaded, "same": same, "all": sorted(operators.__all__), "missing": missing}))
"""


def test_every_operator_imports_from_one_package_lazily() -> None:
    """``from airflow_provider_skyvern.operators import ...``: only the module of the name asked for loads."""
    result = subprocess.run(
        [sys.executable, "-c", ONE_IMPORT], capture_output=True, text=True, check=True, env=dict(os.environ)
    )
    parsed = json.loads(result.stdout.strip().splitlines()[-1])
    assert "airflow_provider_skyvern.operators.task" in parsed["loaded"]
    for not_asked_for in (
        "airflow_provider_skyvern.hooks.skyvern",
        "airflow_provider_skyvern.operators.workflow",
        "airflow_provider_skyvern.operators.login",
        "airflow_provider_skyvern.operators.browser_session",
        "airflow_provider_skyvern.operators.artifacts",
    ):
        assert not_asked_for not in parsed["loaded"], not_asked_for
    assert parsed["same"]
    assert parsed["all"] == [
        "SkyvernCloseBrowserSessionOperator",
        "SkyvernCopyArtifactsOperator",
        "SkyvernCreateBrowserSessionOperator",
        "SkyvernDownloadFilesOperator",
        "SkyvernLoginOperator",
        "SkyvernRunTaskOperator",
        "SkyvernRunWorkflowOperator",
        "skyvern_browser_session",
    ]
    assert parsed["missing"] == (
        "module 'airflow_provider_skyvern.operators' has no attribute 'SkyvernNoSuchOperator'"
    )

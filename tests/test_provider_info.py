"""The provider registers with Airflow: entry point, schema-valid info, importable modules, connection form."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import distribution, entry_points, version
from pathlib import Path

import pytest
from packaging.version import Version

from airflow_provider_skyvern import get_provider_info


def test_entry_point_resolves_to_get_provider_info() -> None:
    (entry_point,) = [
        ep
        for ep in entry_points(group="apache_airflow_provider")
        if ep.value.startswith("airflow_provider_skyvern")
    ]
    assert entry_point.load() is get_provider_info


def test_package_name_equals_the_distribution_name() -> None:
    assert get_provider_info()["package-name"] == distribution("airflow-provider-skyvern").metadata["Name"]


def test_info_validates_against_airflows_schema() -> None:
    from airflow.providers_manager import _create_provider_info_schema_validator

    _create_provider_info_schema_validator().validate(get_provider_info())


def test_every_listed_module_and_class_imports() -> None:
    info = get_provider_info()
    for kind in ("hooks", "operators", "triggers", "sensors"):
        for entry in info.get(kind, []):
            for module in entry["python-modules"]:
                importlib.import_module(module)
    for class_path in [c["hook-class-name"] for c in info["connection-types"]] + info.get("extra-links", []):
        module, _, name = class_path.rpartition(".")
        assert getattr(importlib.import_module(module), name)


def test_connection_type_matches_the_hook() -> None:
    from airflow_provider_skyvern.hooks.skyvern import SkyvernHook

    (conn_type,) = get_provider_info()["connection-types"]
    assert conn_type["connection-type"] == SkyvernHook.conn_type
    assert SkyvernHook.default_conn_name == "skyvern_default"
    assert SkyvernHook.conn_name_attr == "skyvern_conn_id"


def test_providers_manager_sees_the_connection_form() -> None:
    from airflow.providers_manager import ProvidersManager

    if Version(version("apache-airflow-core")) < Version("3.2"):
        pytest.skip("the declarative connection form (conn-fields) is read by Airflow 3.2+")
    manager = ProvidersManager()
    assert "airflow-provider-skyvern" in manager.providers
    assert manager.hooks["skyvern"] is not None
    assert manager.hooks["skyvern"].hook_class_name == "airflow_provider_skyvern.hooks.skyvern.SkyvernHook"
    behaviour = manager.field_behaviours["skyvern"]
    assert behaviour["relabeling"] == {"host": "Base URL", "password": "API key"}
    assert set(behaviour["hidden_fields"]) == {"schema", "port", "login"}
    assert {"extra__skyvern__request_timeout", "extra__skyvern__max_retries"} <= set(
        manager.connection_form_widgets
    )


def test_provider_package_import_stays_light() -> None:
    """Airflow imports the package in every process; it must not pull in httpx, pydantic or airflow."""
    code = (
        "import sys, airflow_provider_skyvern; "
        "print(sorted(m for m in ('httpx', 'pydantic', 'airflow', 'tenacity') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_one_version_everywhere() -> None:
    """pyproject reads the version from __init__.py; the installed metadata and the provider info agree."""
    from airflow_provider_skyvern import __version__

    assert get_provider_info()["versions"] == [__version__]
    # An editable install keeps the metadata of its install: after a bump, reinstall (`uv pip install -e .`).
    assert version("airflow-provider-skyvern") == __version__


def test_wheel_carries_the_license_and_the_version(tmp_path: Path) -> None:
    """The built wheel (about 2 s with uv's cached hatchling) has LICENSE and the version of __init__.py."""
    from airflow_provider_skyvern import __version__

    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not installed (bash scripts/bootstrap.sh installs it into .venv)")
    root = Path(__file__).resolve().parents[1]
    subprocess.run(
        [uv, "build", "--wheel", "--quiet", "--out-dir", str(tmp_path), str(root)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (wheel,) = tmp_path.glob("*.whl")
    dist_info = f"airflow_provider_skyvern-{__version__}.dist-info"
    with zipfile.ZipFile(wheel) as archive:
        license_text = archive.read(f"{dist_info}/licenses/LICENSE").decode()
        metadata = archive.read(f"{dist_info}/METADATA").decode().splitlines()
    assert "Apache License" in license_text
    assert "Version 2.0, January 2004" in license_text
    assert f"Version: {__version__}" in metadata
    assert "License-File: LICENSE" in metadata

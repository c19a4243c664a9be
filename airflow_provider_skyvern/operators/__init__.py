"""Every Skyvern operator under one import: ``from airflow_provider_skyvern.operators import SkyvernRunTaskOperator``.

Loaded lazily (module ``__getattr__``): Airflow parses a DAG file again and again, and a name imports only
its own module, so a DAG with task operators alone still pays for neither the workflow, login or session
operators nor, as always at parse time, the hook. The per-module paths keep working.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_skyvern.operators.artifacts import SkyvernCopyArtifactsOperator
    from airflow_provider_skyvern.operators.browser_session import (
        SkyvernCloseBrowserSessionOperator,
        SkyvernCreateBrowserSessionOperator,
        skyvern_browser_session,
    )
    from airflow_provider_skyvern.operators.download_files import SkyvernDownloadFilesOperator
    from airflow_provider_skyvern.operators.login import SkyvernLoginOperator
    from airflow_provider_skyvern.operators.task import SkyvernRunTaskOperator
    from airflow_provider_skyvern.operators.workflow import SkyvernRunWorkflowOperator

MODULE_OF = {
    "SkyvernRunTaskOperator": "skyvern",
    "SkyvernRunWorkflowOperator": "workflow",
    "SkyvernLoginOperator": "login",
    "SkyvernDownloadFilesOperator": "download_files",
    "SkyvernCreateBrowserSessionOperator": "browser_session",
    "SkyvernCloseBrowserSessionOperator": "browser_session",
    "skyvern_browser_session": "browser_session",
    "SkyvernCopyArtifactsOperator": "artifacts",
}
"""Where each public name lives, under this package."""

__all__ = [
    "SkyvernCloseBrowserSessionOperator",
    "SkyvernCopyArtifactsOperator",
    "SkyvernCreateBrowserSessionOperator",
    "SkyvernDownloadFilesOperator",
    "SkyvernLoginOperator",
    "SkyvernRunTaskOperator",
    "SkyvernRunWorkflowOperator",
    "skyvern_browser_session",
]


def __getattr__(name: str) -> Any:
    module = MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})

"""Airflow names that moved into ``airflow.sdk`` after 3.0, imported from wherever this Airflow keeps them.

``apache-airflow-providers-common-compat`` (installed with Airflow) does the lookup: it tries the
``airflow.sdk`` location first and falls back to the Airflow 3.0 one (``airflow.hooks.base``,
``airflow.configuration``, ``airflow.exceptions``). Version 1.12.0 is the first to map ``conf``; the
other four names are older there. The rest of the provider imports these names from this module only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseHook,
    conf,
    mask_secret,
)

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

__all__ = [
    "AirflowException",
    "AirflowFailException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "BaseHook",
    "amask_secret",
    "conf",
    "mask_secret",
    "record_output_asset",
]


def record_output_asset(path: ObjectStoragePath) -> None:
    """Tell Airflow's lineage a file was written (``ObjectStoragePath.open`` does it on every write call).
    Skipped when this common-compat release does not map the collector (it is not needed to run)."""
    try:
        from airflow.providers.common.compat.sdk import get_hook_lineage_collector
    except ImportError:  # pragma: no cover - older common-compat
        return
    get_hook_lineage_collector().add_output_asset(context=path, uri=str(path))


async def amask_secret(secret: str) -> None:
    """``mask_secret`` from the event loop: Airflow's async form where it has one (it never blocks on the
    supervisor's channel while another request is in flight), else the sync one off the loop's thread."""
    try:
        from airflow.sdk.log import amask_secret as airflow_amask_secret
    except ImportError:  # pragma: no cover - older Airflow
        from asgiref.sync import sync_to_async

        await sync_to_async(mask_secret)(secret)
        return
    await airflow_amask_secret(secret)

"""Airflow names that moved into ``airflow.sdk`` after 3.0, imported from wherever this Airflow keeps them.

``apache-airflow-providers-common-compat`` (installed with Airflow) does the lookup: it tries the
``airflow.sdk`` location first and falls back to the Airflow 3.0 one (``airflow.hooks.base``,
``airflow.configuration``, ``airflow.exceptions``). Version 1.12.0 is the first to map ``conf``; the
other four names are older there. The rest of the provider imports these names from this module only.
"""

from __future__ import annotations

from airflow.providers.common.compat.sdk import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseHook,
    TaskDeferred,
    conf,
    get_hook_lineage_collector,
)

__all__ = [
    "AirflowException",
    "AirflowFailException",
    "AirflowSensorTimeout",
    "AirflowSkipException",
    "BaseHook",
    "TaskDeferred",
    "conf",
    "get_hook_lineage_collector",
]

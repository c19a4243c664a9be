"""Airflow names that moved into ``airflow.sdk`` after 3.0: taken from there when present.

The provider supports Airflow 3.0+; this module is the one place that knows where 3.0 kept them.
"""

from __future__ import annotations

try:
    from airflow.sdk import BaseHook
except ImportError:  # Airflow 3.0
    from airflow.hooks.base import BaseHook  # type: ignore[attr-defined,no-redef]

try:
    from airflow.sdk import conf
except ImportError:  # Airflow < 3.2
    from airflow.configuration import conf  # type: ignore[assignment]

try:
    from airflow.sdk.exceptions import AirflowException, AirflowFailException, TaskDeferred
except ImportError:  # Airflow < 3.2
    from airflow.exceptions import (  # type: ignore[no-redef,attr-defined]
        AirflowException,
        AirflowFailException,
        TaskDeferred,
    )

__all__ = ["AirflowException", "AirflowFailException", "BaseHook", "TaskDeferred", "conf"]

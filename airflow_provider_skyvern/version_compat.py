"""Airflow version gates: the provider supports 3.0+ and switches on newer APIs where they exist.

Not taken from ``airflow.providers.common.compat.version_compat``: that file asks providers to keep their
own copy rather than import it, and its ``AIRFLOW_V_3_3_PLUS`` is newer than the common-compat 1.12.0
that compat.py needs.
"""

from __future__ import annotations

from importlib.metadata import version

from packaging.version import Version

_AIRFLOW_VERSION = Version(Version(version("apache-airflow-core")).base_version)

AIRFLOW_V_3_1_PLUS = Version("3.1.0") <= _AIRFLOW_VERSION
"""``BaseHook.aget_connection`` exists."""
AIRFLOW_V_3_3_PLUS = Version("3.3.0") <= _AIRFLOW_VERSION
"""``BaseTrigger.on_kill`` and ``context["task_state_store"]`` exist."""

"""The task operator's first import path, kept working: it is now :mod:`airflow_provider_skyvern.operators.task`
(or, documented, ``from airflow_provider_skyvern.operators import SkyvernRunTaskOperator``)."""

from airflow_provider_skyvern.operators.task import SkyvernRunFailedError, SkyvernRunTaskOperator

__all__ = ["SkyvernRunFailedError", "SkyvernRunTaskOperator"]

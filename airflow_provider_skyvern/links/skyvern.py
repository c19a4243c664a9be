"""SkyvernRunLink: the "Skyvern run" button on a task instance, to the run in Skyvern's UI."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey


class SkyvernRunLink(BaseOperatorLink):
    """
    Airflow 3 resolves links in the worker when a try ends or defers, on the live operator, and stores
    the result: so the link is the operator's ``skyvern_app_url``, with no XCom lookup (and no "XCom not
    found" error logged for a task that failed before any run existed). Empty until a run exists.
    """

    name = "Skyvern run"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        url = getattr(operator, "skyvern_app_url", None)
        return url if isinstance(url, str) else ""

"""SkyvernRunLink: the "Skyvern run" button on a task instance, to the run in Skyvern's UI."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

APP_URL_XCOM_KEY = "app_url"


class SkyvernRunLink(BaseOperatorLink):
    """Reads the app URL the operator pushed before deferring, so the link works while the task waits."""

    name = "Skyvern run"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        url = XCom.get_value(key=APP_URL_XCOM_KEY, ti_key=ti_key)
        return url if isinstance(url, str) else ""

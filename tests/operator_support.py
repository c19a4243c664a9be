"""A minimal task-instance context for operator unit tests (no DB, no API server)."""

from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

DAG_RUN_START = datetime(2026, 11, 30, 0, 0, 1, 123456, tzinfo=timezone.utc)


class FakeTaskInstance:
    def __init__(
        self,
        dag_id: str = "nightly",
        task_id: str = "extract",
        run_id: str = "manual__1",
        map_index: int = -1,
        *,
        try_number: int = 1,
        max_tries: int = 0,
    ) -> None:
        self.dag_id, self.task_id, self.run_id, self.map_index = dag_id, task_id, run_id, map_index
        self.try_number = try_number
        self.max_tries = max_tries  # retries; a clear raises it
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value

    def xcom_pull(self, task_ids: str | None = None, key: str = "return_value", **_: Any) -> Any:
        return self.xcoms.get(key)


class FakeStateStore:
    """The Airflow 3.3 task state store's sync API."""

    def __init__(self, **values: Any) -> None:
        self.values = dict(values)

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any, *, retention: Any = None) -> None:
        self.values[key] = value

    def delete(self, key: str) -> None:
        self.values.pop(key, None)


def make_context(
    store: FakeStateStore | None = None,
    ti: FakeTaskInstance | None = None,
    dag_run_start: datetime = DAG_RUN_START,
) -> dict[str, Any]:
    context: dict[str, Any] = {
        "ti": ti or FakeTaskInstance(),
        "dag_run": SimpleNamespace(start_date=dag_run_start),
    }
    if store is not None:
        context["task_state_store"] = store
    return context

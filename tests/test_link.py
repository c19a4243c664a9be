"""SkyvernRunLink reads the app URL pushed before deferral."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_skyvern.links.skyvern import SkyvernRunLink
from airflow_provider_skyvern.operators.skyvern import SkyvernRunTaskOperator


@pytest.mark.parametrize(
    ("stored", "expected"),
    [("https://app.skyvern.com/runs/tsk_1", "https://app.skyvern.com/runs/tsk_1"), (None, "")],
)
def test_link_is_the_app_url_from_xcom(monkeypatch: pytest.MonkeyPatch, stored: Any, expected: str) -> None:
    from airflow.sdk.execution_time.xcom import XCom

    asked: dict[str, Any] = {}

    def get_value(*, ti_key: Any, key: str) -> Any:
        asked.update(ti_key=ti_key, key=key)
        return stored

    monkeypatch.setattr(XCom, "get_value", get_value)
    operator = SkyvernRunTaskOperator(task_id="t", prompt="p")
    assert SkyvernRunLink().get_link(operator, ti_key="KEY") == expected  # type: ignore[arg-type]
    assert asked == {"ti_key": "KEY", "key": "app_url"}


def test_operator_declares_the_link() -> None:
    (link,) = SkyvernRunTaskOperator.operator_extra_links
    assert isinstance(link, SkyvernRunLink)
    assert link.name == "Skyvern run"

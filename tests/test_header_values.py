"""Values that become HTTP headers (``user_agent``; ``extra_http_headers``, which the browser sends; the TOTP
identifier) are refused with a line break or a control character in them, at DAG parse time when known, after
rendering otherwise, naming the field and never echoing a header's value."""

from __future__ import annotations

from typing import Any

import pytest
import respx

from airflow_provider_skyvern.compat import AirflowFailException
from airflow_provider_skyvern.operators.download_files import SkyvernDownloadFilesOperator
from airflow_provider_skyvern.operators.login import SkyvernLoginOperator
from airflow_provider_skyvern.operators.task import SkyvernRunTaskOperator
from airflow_provider_skyvern.operators.workflow import SkyvernRunWorkflowOperator
from tests.operator_support import make_context

OPERATORS: dict[str, tuple[type[Any], dict[str, Any]]] = {
    "task": (SkyvernRunTaskOperator, {"prompt": "Read the page", "url": "https://example.com"}),
    "workflow": (SkyvernRunWorkflowOperator, {"workflow_id": "wpid_1"}),
    "login": (
        SkyvernLoginOperator,
        {"url": "https://example.com", "credential_type": "skyvern", "credential_id": "cred_1"},
    ),
    "download": (SkyvernDownloadFilesOperator, {"url": "https://example.com", "navigation_goal": "Get it"}),
}
SECRET_VALUE = "Bearer tok-9c1d"


@pytest.mark.parametrize("kind", OPERATORS)
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "user_agent",
            "airflow\r\nX-Injected: yes",
            "user_agent: holds a line break, which an HTTP header cannot carry; remove it",
        ),
        (
            "user_agent",
            "air\x00flow",
            "user_agent: holds a control character, which an HTTP header cannot carry",
        ),
        (
            "extra_http_headers",
            {"Authorization": SECRET_VALUE + "\nX-Injected: yes"},
            "extra_http_headers: the value of header 'Authorization' holds a line break, which an HTTP header "
            "cannot carry; remove it (the value is not shown)",
        ),
        (
            "extra_http_headers",
            {"Bad Header": "x"},
            "extra_http_headers: 'Bad Header' is not an HTTP header name",
        ),
        (
            "totp_identifier",
            "me@example.com\n",
            "totp_identifier: holds a line break, which an HTTP header cannot carry; remove it",
        ),
    ],
)
def test_a_header_value_with_a_line_break_fails_the_parse(
    kind: str, field: str, value: Any, message: str
) -> None:
    operator_class, required = OPERATORS[kind]
    with pytest.raises(ValueError, match=r"^\S+\(task_id='t'\) ") as raised:
        operator_class(task_id="t", **required, **{field: value})
    assert message in str(raised.value)
    assert "tok-9c1d" not in str(raised.value)


@pytest.mark.parametrize("kind", OPERATORS)
def test_good_header_values_pass(kind: str) -> None:
    operator_class, required = OPERATORS[kind]
    operator_class(
        task_id="t",
        **required,
        user_agent="airflow-nightly/1.0",
        extra_http_headers={"Authorization": SECRET_VALUE, "X-Trace": "a\tb"},
        totp_identifier="me@example.com",
    )


@pytest.mark.parametrize("kind", OPERATORS)
def test_a_templated_header_value_is_checked_after_rendering_and_starts_no_run(
    kind: str, skyvern: respx.MockRouter, skyvern_conn: None
) -> None:
    operator_class, required = OPERATORS[kind]
    op = operator_class(task_id="t", **required, user_agent="{{ params.agent }}")
    op.render_template_fields({"params": {"agent": "nightly\r\nX-Injected: yes"}})
    with pytest.raises(
        AirflowFailException,
        match=r"user_agent: holds a line break, which an HTTP header cannot carry; remove it \(after rendering",
    ):
        op.execute(make_context())
    assert [call.request.method for call in skyvern.calls] == []

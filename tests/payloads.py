"""Skyvern response bodies as the server sends them (API.md §3), for respx-mocked tests."""

from __future__ import annotations

from typing import Any

NOW = "2026-11-22T10:00:00.123456"


def task_run(run_id: str, status: str, *, run_type: str = "task_v2", **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "run_id": run_id,
        "status": status,
        "run_type": run_type,
        "created_at": NOW,
        "modified_at": NOW,
        "app_url": f"https://app.skyvern.com/runs/{run_id}",
        "output": None,
        "step_count": 0,
        "run_request": {"prompt": "p"},
    }
    body.update(fields)
    return body


def workflow_run(run_id: str, status: str, **fields: Any) -> dict[str, Any]:
    body = task_run(run_id, status, run_type="workflow_run", run_with="agent")
    body["run_request"] = {"workflow_id": "wpid_7"}
    body.update(fields)
    return body


def timeline_entry() -> dict[str, Any]:
    return {
        "type": "block",
        "block": {"workflow_run_block_id": "wrb_1", "block_type": "task", "label": "extract"},
        "thought": None,
        "children": [],
        "created_at": NOW,
        "modified_at": NOW,
    }


def artifact(artifact_id: str) -> dict[str, Any]:
    return {
        "artifact_id": artifact_id,
        "artifact_type": "recording",
        "uri": "s3://bucket/rec.webm",
        "organization_id": "o_1",
        "created_at": NOW,
        "modified_at": NOW,
        "signed_url": "https://files.example.com/rec.webm?sig=1",
    }


def webhook_replay(run_id: str) -> dict[str, Any]:
    return {"run_id": run_id, "run_type": "task_v2", "payload": "{}", "headers": {}, "status_code": 200}


def run_list_item(
    run_id: str,
    status: str = "running",
    title: str | None = None,
    *,
    run_type: str = "task_v2",
    created_at: str = NOW,
) -> dict[str, Any]:
    return {
        "task_run_id": f"tr_{run_id}",
        "run_id": run_id,
        "task_run_type": run_type,
        "status": status,
        "title": title,
        "created_at": created_at,
    }


def browser_session(session_id: str) -> dict[str, Any]:
    return {
        "browser_session_id": session_id,
        "organization_id": "o_1",
        "status": "running",
        "created_at": NOW,
        "modified_at": NOW,
    }

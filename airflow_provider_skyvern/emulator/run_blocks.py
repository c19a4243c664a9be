"""What the emulator checks and stores of a login or download_files request, as Skyvern 1.0.56 does.

The real server makes a new one-block workflow (``Login`` / ``File Download``, a fresh ``wpid_…``) for
every such request and starts it; the run's ``run_request`` echoes that workflow's id and title, the
proxy, webhook and TOTP endpoints, the session and profile and the scroll count - never the credential
references, the url, the prompt or the goal (``routes/run_blocks.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import HttpUrl, ValidationError

from airflow_provider_skyvern.requests.run_block import DownloadFilesRequest, LoginRequest

LOGIN_MAX_STEPS = 10  # the login block's max_steps_per_run on the real server
REQUIRED_BY_CREDENTIAL_TYPE = {
    "skyvern": (("credential_id", "Skyvern credential"),),
    "1password": (
        ("onepassword_vault_id", "1Password credential"),
        ("onepassword_item_id", "1Password credential"),
    ),
    "azure_vault": (
        ("azure_vault_name", "Azure Vault credential"),
        ("azure_vault_username_key", "Azure Vault credential"),
        ("azure_vault_password_key", "Azure Vault credential"),
    ),
}


class Refused(Exception):
    """The answer the real server gives instead of a run."""

    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail


KNOWN_CREDENTIAL = re.compile(r"cred_\d+")
"""The emulator keeps no credential store: a Skyvern id of the real shape (``cred_`` and digits) exists;
anything else is not found, as on the real server (``cred_does_not_exist`` answers 404 there too)."""


@dataclass(frozen=True)
class RunBlock:
    block: str
    wire: dict[str, Any]
    """What the run stores: the workflow made for it and the request's echoed fields."""
    texts: list[str]
    """Where ``[emulator ...]`` directives are read from."""
    max_steps: int | None


def login(request: LoginRequest, workflow_id: str) -> RunBlock:
    for name, what in REQUIRED_BY_CREDENTIAL_TYPE.get(request.credential_type, ()):
        if not getattr(request, name):
            raise Refused(400, f"{name} is required to login with {what}")
    if request.credential_type == "skyvern" and not KNOWN_CREDENTIAL.fullmatch(str(request.credential_id)):
        raise Refused(404, f"Credential {request.credential_id} not found")
    texts = [request.prompt or "", request.url or ""]
    return RunBlock("login", _stored(request, workflow_id), texts, LOGIN_MAX_STEPS)


def download_files(request: DownloadFilesRequest, workflow_id: str) -> RunBlock:
    texts = [request.navigation_goal, request.url or ""]
    stored = _stored(request, workflow_id)
    stored["navigation_goal"] = request.navigation_goal
    return RunBlock("file_download", stored, texts, request.max_steps_per_run)


def _stored(request: LoginRequest | DownloadFilesRequest, workflow_id: str) -> dict[str, Any]:
    for name in ("url", "totp_url", "webhook_url"):
        value = getattr(request, name)
        if value:
            try:
                HttpUrl(value)
            except ValidationError:
                raise Refused(400, f"Invalid {name}: {value}") from None
    wire = request.to_wire()
    stored: dict[str, Any] = {"workflow_id": workflow_id}
    for name in ("proxy_location", "webhook_url", "totp_url", "totp_identifier", "browser_session_id"):
        stored[name] = wire.get(name)
    stored["browser_profile_id"] = wire.get("browser_profile_id")
    stored["start_fresh_browser"] = bool(wire.get("start_fresh_browser"))
    stored["max_screenshot_scrolls"] = wire.get("max_screenshot_scrolling_times")
    stored["url"] = wire.get("url")
    return stored

"""The bodies of Skyvern's run-block endpoints, ``POST /v1/run/tasks/login`` and ``/v1/run/tasks/download_files``.

Each call makes the server build a one-block workflow on the fly and start it, so both answer a workflow
run (``wr_…``). Kept apart from :mod:`.requests` and :mod:`.workflow_requests`: only DAG files that use the
login or download operator pay for importing them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from airflow_provider_skyvern.enums import ProxyLocation
from airflow_provider_skyvern.requests.base import RequestBody

CREDENTIAL_TYPES = ("skyvern", "bitwarden", "1password", "azure_vault")
"""``credential_type`` as the server spells it (``CredentialType`` values)."""
CredentialType = Literal["skyvern", "bitwarden", "1password", "azure_vault"]


class RunBlockRequest(RequestBody):
    """
    The fields every run-block request shares (server ``BaseRunBlockRequest``).

    ``proxy_location`` takes a named pool only (no geo target or URL), and the screenshot scroll count is
    ``max_screenshot_scrolling_times`` here, unlike the task and workflow bodies.
    """

    url: str | None = None
    webhook_url: str | None = None
    proxy_location: ProxyLocation | None = None
    totp_identifier: str | None = None
    totp_url: str | None = None
    browser_session_id: str | None = None
    browser_profile_id: str | None = None
    start_fresh_browser: bool | None = None
    browser_address: str | None = None
    extra_http_headers: dict[str, str] | None = None
    cdp_connect_headers: dict[str, str] | None = None
    max_screenshot_scrolling_times: int | None = Field(default=None, ge=0)


class LoginRequest(RunBlockRequest):
    """
    Body of ``POST /v1/run/tasks/login``: log in with a stored credential, referenced by id only.

    Which reference fields apply depends on ``credential_type``: ``credential_id`` (``cred_…``) for
    ``skyvern``; a collection and/or item for ``bitwarden``; a vault and item for ``1password``; a vault
    name and the secret names holding username, password and TOTP secret for ``azure_vault``.
    """

    credential_type: CredentialType
    prompt: str | None = None
    credential_id: str | None = None
    bitwarden_collection_id: str | None = None
    bitwarden_item_id: str | None = None
    onepassword_vault_id: str | None = None
    onepassword_item_id: str | None = None
    onepassword_totp_field_name: str | None = None
    azure_vault_name: str | None = None
    azure_vault_username_key: str | None = None
    azure_vault_password_key: str | None = None
    azure_vault_totp_secret_key: str | None = None


class DownloadFilesRequest(RunBlockRequest):
    """Body of ``POST /v1/run/tasks/download_files``: navigate per ``navigation_goal`` and download files."""

    navigation_goal: str = Field(min_length=1)
    download_suffix: str | None = None
    """The downloaded file's name; may hold ``{{ original_filename }}``, which Skyvern fills in."""
    download_timeout: float | None = Field(default=None, gt=0)
    """Seconds Skyvern waits for a download to finish."""
    max_steps_per_run: int | None = Field(default=None, ge=1)

"""SkyvernLoginOperator: log in to a site with a credential stored in Skyvern or a vault, from a DAG.

Imported on DAG parse: module level holds only what constructing and checking the operator needs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import ValidationError

from airflow_provider_skyvern.operators import validation as check
from airflow_provider_skyvern.operators.run_block import (
    COMMON_CHECKED,
    COMMON_RENDERERS,
    COMMON_TEMPLATE_FIELDS,
    SkyvernRunBlockOperatorBase,
    common_fields,
)
from airflow_provider_skyvern.requests.run_block import CREDENTIAL_TYPES, LoginRequest

if TYPE_CHECKING:
    from airflow_provider_skyvern.runs.kinds import RunKind

CREDENTIAL_TYPE_NAMES = {
    "skyvern": "skyvern",
    "bitwarden": "bitwarden",
    "1password": "1password",
    "onepassword": "1password",
    "one_password": "1password",
    "azure_vault": "azure_vault",
    "azurevault": "azure_vault",
}
"""Python-friendly spellings (any case, ``-`` for ``_``) of each ``credential_type``; the wire gets the value."""
CREDENTIAL_FIELDS = (
    "credential_id",
    "bitwarden_collection_id",
    "bitwarden_item_id",
    "onepassword_vault_id",
    "onepassword_item_id",
    "onepassword_totp_field_name",
    "azure_vault_name",
    "azure_vault_username_key",
    "azure_vault_password_key",
    "azure_vault_totp_secret_key",
)
REQUIRED_FIELDS = {
    "skyvern": ("credential_id",),
    "1password": ("onepassword_vault_id", "onepassword_item_id"),
    "azure_vault": ("azure_vault_name", "azure_vault_username_key", "azure_vault_password_key"),
}
"""What Skyvern refuses a login without (400), by credential type."""


class SkyvernLoginOperator(SkyvernRunBlockOperatorBase):
    """
    Log in to a website with a stored credential (``POST /v1/run/tasks/login``), wait, return the output.

    Skyvern runs the login as a one-block workflow it makes for the request, so this is a workflow run
    (``wr_…``) with everything the other run operators do: deferrable or blocking wait, timeout and
    cancel, XComs (``run_id``, ``status``, ``app_url``, ``recording_url``, ``screenshot_urls``,
    ``downloaded_files``, ``step_count``, ``failure_reason``, ``attempt``, ``browser_session_id``) and the
    extra link. Run it in a browser session (``browser_session_id``) to keep the logged-in browser for the
    tasks after it.

    The credential is passed by reference only (ids and secret names, never a password): Skyvern reads
    the secret from its own store or the vault.

    :param credential_type: required: ``skyvern``, ``bitwarden``, ``1password`` (also ``onepassword``) or
        ``azure_vault``; sent as Skyvern spells it.
    :param credential_id: the Skyvern credential (``cred_…``); required for ``skyvern``.
    :param bitwarden_collection_id: the Bitwarden collection to look the login up in.
    :param bitwarden_item_id: the Bitwarden item holding the login.
    :param onepassword_vault_id: the 1Password vault; required for ``1password``.
    :param onepassword_item_id: the 1Password item; required for ``1password``.
    :param onepassword_totp_field_name: the item's field holding the TOTP secret.
    :param azure_vault_name: the Azure Key Vault; required for ``azure_vault``.
    :param azure_vault_username_key: the secret holding the username; required for ``azure_vault``.
    :param azure_vault_password_key: the secret holding the password; required for ``azure_vault``.
    :param azure_vault_totp_secret_key: the secret holding the TOTP secret.
    :param prompt: how to log in, in plain words (unset: Skyvern's default login goal).
    :param url: the page to start on (http/https).
    :param webhook_url: called by Skyvern when the run ends.
    :param proxy_location: a ProxyLocation name such as ``RESIDENTIAL_GB`` or ``NONE`` (these endpoints take
        no geo target); unset, Skyvern's default (``RESIDENTIAL``) applies.
    :param totp_identifier: the identifier Skyvern matches 2FA codes pushed to it by.
    :param totp_url: an endpoint Skyvern polls for 2FA codes.
    :param browser_session_id: run in this persistent browser session (``pbs_…``), e.g. the XCom of
        :func:`~airflow_provider_skyvern.operators.browser_session.skyvern_browser_session`'s setup task.
    :param browser_profile_id: start the browser from this saved profile (``bp_…``).
    :param start_fresh_browser: start from a clean browser, no saved memory or session.
    :param browser_address: CDP address (http/https/ws/wss) of a browser of your own.
    :param extra_http_headers: headers the browser sends to every site it visits.
    :param max_screenshot_scrolling_times: how many scrolls a full-page screenshot may take.
    :param user_agent: sent as ``x-user-agent`` (never ``skyvern-ui``, which truncates outputs).
    :param wait_for_completion: wait for the run and return its output (default); False returns the run id.
    :param timeout: seconds to wait before the run is canceled and the task fails (default 1800). A
        shorter ``execution_timeout`` binds the same way, in both modes.
    :param poll_interval: the longest gap between status polls, in seconds (default 30).
    :param deferrable: wait in the triggerer instead of a worker slot (default ``[operators] default_deferrable``).
    :param reattach: a retry adopts the run an earlier try started when its id was recorded (Airflow 3.3+
        task state store). Skyvern's login and download runs cannot be found by looking, so when an
        earlier try's answer was lost the retry fails saying it could not tell whether a run was created
        instead of starting a second one (docs/reattach.md).
    :param cancel_on_kill: cancel the Skyvern run when the task is killed, marked failed/success or cleared
        while it waits (default True).
    :param skyvern_conn_id: Airflow connection of type ``skyvern``.
    """

    template_fields: Sequence[str] = (
        *COMMON_TEMPLATE_FIELDS,
        "credential_type",
        "prompt",
        *CREDENTIAL_FIELDS,
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {**COMMON_RENDERERS, "prompt": "md"}
    checked_arguments: ClassVar[tuple[str, ...]] = (
        *COMMON_CHECKED,
        "credential_type",
        "prompt",
        *CREDENTIAL_FIELDS,
    )

    def __init__(
        self,
        *,
        credential_type: str | None = None,
        credential_id: str | None = None,
        bitwarden_collection_id: str | None = None,
        bitwarden_item_id: str | None = None,
        onepassword_vault_id: str | None = None,
        onepassword_item_id: str | None = None,
        onepassword_totp_field_name: str | None = None,
        azure_vault_name: str | None = None,
        azure_vault_username_key: str | None = None,
        azure_vault_password_key: str | None = None,
        azure_vault_totp_secret_key: str | None = None,
        prompt: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.credential_type = credential_type
        self.credential_id = credential_id
        self.bitwarden_collection_id = bitwarden_collection_id
        self.bitwarden_item_id = bitwarden_item_id
        self.onepassword_vault_id = onepassword_vault_id
        self.onepassword_item_id = onepassword_item_id
        self.onepassword_totp_field_name = onepassword_totp_field_name
        self.azure_vault_name = azure_vault_name
        self.azure_vault_username_key = azure_vault_username_key
        self.azure_vault_password_key = azure_vault_password_key
        self.azure_vault_totp_secret_key = azure_vault_totp_secret_key
        self.prompt = prompt
        self._check_now()

    @classmethod
    def _check_given(cls, values: Mapping[str, Any]) -> None:
        _login_request(values)

    def _run_kind(self) -> RunKind:
        from airflow_provider_skyvern.runs.kinds import LoginRun

        return LoginRun(_login_request(self._values()), user_agent=self.user_agent)


def credential_type(value: Any) -> str:
    """The wire value of a credential type given in any accepted spelling."""
    if value is None:  # left out: Python's own TypeError would name neither the task nor the values
        raise check.InvalidParameter(
            "credential_type", f"is required; use one of {', '.join(CREDENTIAL_TYPES)}"
        )
    name = value.strip().lower().replace("-", "_") if isinstance(value, str) else None
    wire = CREDENTIAL_TYPE_NAMES.get(name or "")
    if wire is None:
        raise check.InvalidParameter(
            "credential_type", f"{value!r} is not accepted; use one of {', '.join(CREDENTIAL_TYPES)}"
        )
    return wire


def _login_request(values: Mapping[str, Any]) -> LoginRequest:
    """At DAG parse time ``values`` holds only the known ones (not templates or XComs): the others are skipped."""
    fields = common_fields(values)
    if "credential_type" not in values:  # a template: its required references are checked after rendering
        fields["credential_type"] = "skyvern"
        required: tuple[str, ...] = ()
    else:
        fields["credential_type"] = credential_type(values["credential_type"])
        required = REQUIRED_FIELDS.get(fields["credential_type"], ())
    for name in (*CREDENTIAL_FIELDS, "prompt"):
        value = values.get(name)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise check.InvalidParameter(name, "must be a non-empty string")
        if value is not None:
            fields[name] = value
    for name in required:
        if name in values and values[name] is None:  # absent from values: a template, known later
            raise check.InvalidParameter(
                name, f"is required when credential_type is {fields['credential_type']!r}"
            )
    try:
        return LoginRequest(**fields)
    except ValidationError as exc:
        raise check.invalid_from(exc) from None

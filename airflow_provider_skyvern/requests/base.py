"""The request bodies the operators check at DAG parse time, and the base of every request body.

Requests reject unknown fields and omit every field the caller did not set. Kept apart from the other
models (:mod:`.models`) because a DAG file pays for what it imports, on every parse.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
)

from airflow_provider_skyvern.enums import ProxyLocation


class RequestBody(BaseModel):
    """
    Requests reject unknown fields (a typo must not be dropped silently) and send only set, non-null fields.

    A field set to ``None`` counts as not given and is left out rather than sent as ``null``: Skyvern 1.0.56
    answers 422 to a null ``engine``, ``publish_workflow``, ``start_fresh_browser`` or
    ``generate_browser_profile``, and a field left out gets the server's default. Only the keys in
    :attr:`NULL_IS_MEANINGFUL` keep an explicit ``null``.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)

    NULL_IS_MEANINGFUL: ClassVar[frozenset[str]] = frozenset()
    """Wire keys whose explicit ``None`` is sent as ``null``, because the server reads null differently."""

    @model_serializer(mode="wrap")
    def _drop_nulls(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        return {
            key: value for key, value in data.items() if value is not None or key in self.NULL_IS_MEANINGFUL
        }

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_unset=True, by_alias=True)


PROXY_NULL_IS_MEANINGFUL = frozenset({"proxy_location"})
"""``proxy_location=None`` goes out as ``null`` on purpose: Skyvern 1.0.56 reads an omitted proxy_location as
RESIDENTIAL, but a null one as "not chosen", so a workflow run inherits the workflow's saved proxy location
(the only way to get it) and a task gets the server's runtime default. For a browser session both are the same."""


class GeoTarget(RequestBody):
    """
    A proxy geo target, normalised as Skyvern 1.0.56's own ``GeoTarget`` does on arrival.

    ``country`` is upper-cased (``us`` -> ``US``) and ``subdivision`` upper-cased without its country prefix
    (``US-CA`` -> ``CA``), so what is sent (and fingerprinted) is what the server keeps. ``is_isp`` is the
    wire key ``isISP``.
    """

    country: str = Field(min_length=2, max_length=2, description="ISO 3166-1 alpha-2 code.")
    subdivision: str | None = Field(
        default=None, max_length=10, description="ISO 3166-2 code without the country prefix, e.g. CA."
    )
    city: str | None = Field(default=None, max_length=100, description="English city name (GeoNames).")
    is_isp: bool | None = Field(default=None, alias="isISP", description="Use an ISP proxy for this target.")

    @field_validator("country")
    @classmethod
    def _upper_country(cls, value: str) -> str:
        return value.upper()

    @field_validator("subdivision")
    @classmethod
    def _subdivision_without_country(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.upper()
        return value.split("-", 1)[1] if "-" in value else value


ProxySetting = ProxyLocation | GeoTarget | dict[str, Any]
"""A named proxy pool, a geographic target, or (self-hosted) ``{"url": "http://user:pass@host:port"}``."""

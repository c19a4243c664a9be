"""Checks of operator arguments, each failing with one line that names the parameter and what is accepted.

Values known when the DAG file is parsed are checked in ``__init__`` (the DAG shows an import error at
once); templated values are checked again after rendering, just before the run is submitted.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from airflow_provider_skyvern.enums import ProxyLocation, RunEngine
from airflow_provider_skyvern.requests.base import GeoTarget

RUN_WITH_VALUES = ("agent", "code")
FORBIDDEN_USER_AGENTS = ("skyvern-ui",)  # makes Skyvern truncate output values (API.md §1)


BROWSER_TYPES = ("msedge", "chrome", "stealth-chromium")
"""Skyvern's browser types (workflow runs and browser sessions)."""


class InvalidParameter(ValueError):
    """A bad operator argument; the message is one actionable line."""

    def __init__(self, parameter: str, problem: str) -> None:
        self.parameter = parameter
        super().__init__(f"{parameter}: {problem}")


def is_template(value: Any) -> bool:
    """True when the value still holds Jinja and can only be checked after rendering."""
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, Mapping):
        return any(is_template(k) or is_template(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(is_template(v) for v in value)
    return False


def is_unresolved(value: Any) -> bool:
    """A template or an upstream task's output (``XComArg``): known only when the task runs."""
    from airflow.sdk import XComArg

    return isinstance(value, XComArg) or is_template(value)


def invalid_from(error: ValidationError) -> InvalidParameter:
    """The first problem pydantic found, as the parameter it belongs to."""
    first = error.errors()[0]
    parameter = str(first["loc"][0]) if first["loc"] else "request"
    where = ".".join(str(part) for part in first["loc"][1:])
    got = f", got {first['input']!r:.80}" if "input" in first else ""
    return InvalidParameter(parameter, f"{first['msg']}{' at ' + where if where else ''}{got}")


def check_prompt(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidParameter("prompt", "must be a non-empty string describing what Skyvern should do")
    return value


def check_url(parameter: str, value: Any, schemes: tuple[str, ...] = ("http", "https")) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in schemes or not parts.netloc:
        accepted = " or ".join(f"{scheme}://" for scheme in schemes)
        raise InvalidParameter(
            parameter, f"{value!r} is not a URL; it must start with {accepted} and name a host"
        )
    return str(value)


def check_engine(value: Any) -> RunEngine | None:
    if value is None:
        return None
    engine = RunEngine(value) if isinstance(value, (str, RunEngine)) else None
    if engine is None or not engine.is_known:
        raise InvalidParameter(
            "engine", f"{value!r} is not a Skyvern engine; use one of {', '.join(RunEngine.accepted_names())}"
        )
    return engine


def check_proxy_location(value: Any) -> ProxyLocation | dict[str, Any] | None:
    """A geo target (a mapping with ``country``) comes back normalised as Skyvern normalises it."""
    if value is None:
        return None
    problem = ""
    if isinstance(value, (str, ProxyLocation)):
        proxy = ProxyLocation(value)
        if proxy.is_known:
            return proxy
    elif isinstance(value, Mapping) and "country" in value:
        try:
            return GeoTarget.model_validate(value).to_wire()
        except ValidationError as exc:
            first = exc.errors()[0]
            problem = f" ({'.'.join(str(part) for part in first['loc']) or 'geo target'}: {first['msg']})"
    elif isinstance(value, Mapping) and isinstance(value.get("url"), str):
        return dict(value)
    raise InvalidParameter(
        "proxy_location",
        f"{value!r} is not accepted{problem}; use a ProxyLocation such as 'RESIDENTIAL' or 'RESIDENTIAL_GB' or "
        "'NONE', a geo target {'country': 'US', 'subdivision'?: 'CA', 'city'?: '...', 'isISP'?: True}, "
        "or {'url': 'http://host:port'}",
    )


def check_positive(parameter: str, value: Any, *, allow_zero: bool = False, integer: bool = True) -> Any:
    if value is None:
        return None
    kind_ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    in_range = kind_ok and (value >= 0 if allow_zero else value > 0)
    if isinstance(value, bool) or not in_range:
        kind = "an integer" if integer else "a number"
        raise InvalidParameter(parameter, f"must be {kind} {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return value


def check_string_map(parameter: str, value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = _json(parameter, value)
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidParameter(parameter, f"must be a mapping of strings to strings, got {value!r}")
    return dict(value)


HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
"""An HTTP field name (RFC 9110 token)."""


def _forbidden_in_header(text: str) -> str | None:
    """The kind of the first character an HTTP header value cannot carry (a tab it can)."""
    for char in text:
        if char in "\r\n":
            return "a line break"
        if (char < " " and char != "\t") or char == "\x7f":
            return "a control character"
    return None


def check_header_value(parameter: str, value: Any) -> str | None:
    """A value sent as (or turned into) an HTTP header: a line break in it would inject another header."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidParameter(parameter, f"must be a string, got {type(value).__name__}")
    odd = _forbidden_in_header(value)
    if odd is not None:
        raise InvalidParameter(parameter, f"holds {odd}, which an HTTP header cannot carry; remove it")
    return value


def check_header_map(parameter: str, value: Any) -> dict[str, str] | None:
    """Headers the browser sends: valid names, values without line breaks; values (often credentials) are
    never echoed."""
    headers = check_string_map(parameter, value)
    for name, header_value in (headers or {}).items():
        if not HEADER_NAME.fullmatch(name):
            raise InvalidParameter(
                parameter, f"{name!r} is not an HTTP header name (letters, digits, -, _ ...)"
            )
        odd = _forbidden_in_header(header_value)
        if odd is not None:
            raise InvalidParameter(
                parameter,
                f"the value of header {name!r} holds {odd}, which an HTTP header cannot carry; remove it "
                "(the value is not shown)",
            )
    return headers


ON_AI_FALLBACK_VALUES = ("allow", "warn", "fail")
"""What a task does when the AI took over from Skyvern's cached script (``on_ai_fallback``)."""


def check_choice(parameter: str, value: Any, choices: tuple[str, ...]) -> str | None:
    if value is None:
        return None
    if value not in choices:
        raise InvalidParameter(parameter, f"{value!r} is not accepted; use one of {', '.join(choices)}")
    return str(value)


def check_user_agent(value: Any) -> str | None:
    """Sent as the ``x-user-agent`` header."""
    if value is None:
        return None
    agent = check_header_value("user_agent", value)
    if agent is not None and agent.strip().lower() in FORBIDDEN_USER_AGENTS:
        raise InvalidParameter(
            "user_agent", f"{value!r} is not accepted: 'skyvern-ui' makes Skyvern truncate the output"
        )
    return agent


def normalize_schema(value: Any) -> dict[str, Any] | list[Any] | None:
    """A dict, a JSON string, or a pydantic model class, returned as a checked JSON Schema."""
    if value is None:
        return None
    if isinstance(value, type) and issubclass(value, BaseModel):
        value = value.model_json_schema()
    elif isinstance(value, str):
        value = _json("data_extraction_schema", value)
    if not isinstance(value, (dict, list)):
        raise InvalidParameter(
            "data_extraction_schema",
            f"must be a JSON Schema (dict, JSON string or pydantic model class), got {type(value).__name__}",
        )
    if isinstance(value, dict):
        import jsonschema  # only DAGs that give a schema pay for it

        validator_class = jsonschema.validators.validator_for(value, default=jsonschema.Draft202012Validator)
        try:
            validator_class.check_schema(value)
        except jsonschema.SchemaError as exc:
            error = _most_specific(exc)
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            raise InvalidParameter(
                "data_extraction_schema", f"not a valid JSON Schema at {where}: {error.message}"
            ) from None
    return value


def _most_specific(error: Any) -> Any:
    """
    The sub-error that says what is wrong: the metaschema's ``anyOf`` only says "is not valid under any
    of the given schemas", its deepest alternatives say e.g. "'strin' is not one of ['array', ...]".
    """
    from jsonschema.exceptions import best_match

    while error.context:
        deepest = max(len(sub.absolute_path) for sub in error.context)
        error = best_match(sub for sub in error.context if len(sub.absolute_path) == deepest)
    return error


def output_schema_errors(schema: dict[str, Any] | list[Any] | None, output: Any) -> list[str]:
    """Where the extracted output breaks the requested schema, one short line per problem."""
    if not isinstance(schema, dict) or output is None:
        return []
    import jsonschema

    validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    problems = []
    for error in sorted(validator_class(schema).iter_errors(output), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        problems.append(f"{where}: {error.message[:200]}")
    return problems


def _json(parameter: str, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidParameter(
            parameter, f"is a string but not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None

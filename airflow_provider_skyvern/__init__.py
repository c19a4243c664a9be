"""Apache Airflow provider for Skyvern.

Airflow imports this module in every process (provider discovery), so it must stay import-free.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

CONN_TYPE = "skyvern"
DEFAULT_CONN_ID = "skyvern_default"
DEFAULT_BASE_URL = "https://api.skyvern.com"


def get_provider_info() -> dict[str, Any]:
    """Provider metadata read by Airflow's providers manager (entry point ``apache_airflow_provider``)."""
    return {
        "package-name": "airflow-provider-skyvern",
        "name": "Skyvern",
        "description": "Run Skyvern AI browser automations from Airflow and collect their output.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Skyvern",
                "external-doc-url": "https://docs.skyvern.com",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {"integration-name": "Skyvern", "python-modules": ["airflow_provider_skyvern.hooks.skyvern"]}
        ],
        "operators": [
            {
                "integration-name": "Skyvern",
                "python-modules": [
                    "airflow_provider_skyvern.operators.task",
                    "airflow_provider_skyvern.operators.workflow",
                    "airflow_provider_skyvern.operators.login",
                    "airflow_provider_skyvern.operators.download_files",
                    "airflow_provider_skyvern.operators.browser_session",
                    "airflow_provider_skyvern.operators.artifacts",
                ],
            }
        ],
        "sensors": [
            {"integration-name": "Skyvern", "python-modules": ["airflow_provider_skyvern.sensors.skyvern"]}
        ],
        "triggers": [
            {"integration-name": "Skyvern", "python-modules": ["airflow_provider_skyvern.triggers.skyvern"]}
        ],
        "extra-links": ["airflow_provider_skyvern.links.skyvern.SkyvernRunLink"],
        "connection-types": [
            {
                "connection-type": CONN_TYPE,
                "hook-class-name": "airflow_provider_skyvern.hooks.skyvern.SkyvernHook",
                "hook-name": "Skyvern",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login"],
                    "relabeling": {"host": "Base URL", "password": "API key"},
                    "placeholders": {
                        "host": f"{DEFAULT_BASE_URL} (empty), or http://localhost:8000 for self-hosted",
                        "password": "Skyvern API key (Settings > API Keys)",
                    },
                },
                "conn-fields": {
                    "request_timeout": {
                        "label": "Request timeout (s)",
                        "description": "Timeout of one HTTP request to Skyvern. Default 60.",
                        "schema": {"type": ["number", "null"], "minimum": 1},
                    },
                    "total_timeout": {
                        "label": "Call time budget (s)",
                        "description": "Longest time one call may take, every retry and wait included. Default 180.",
                        "schema": {"type": ["number", "null"], "minimum": 1},
                    },
                    "max_retries": {
                        "label": "Retry budget",
                        "description": "Retries of one request on network errors, 429 and 5xx. Default 5.",
                        "schema": {"type": ["integer", "null"], "minimum": 0, "maximum": 20},
                    },
                },
            }
        ],
    }

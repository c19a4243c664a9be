"""A Skyvern-compatible HTTP server for the demo, this provider's tests and users' own offline DAG tests.

Not Skyvern: no browser runs. Runs move created -> queued -> running -> a final status on a clock, their
output is shaped after ``data_extraction_schema``, and their recording, screenshots and downloads are
real files served by the emulator. A ``[emulator outcome=failed seconds=5 steps=3]`` directive in a
run's prompt (or title) picks how it ends; ``/_emulator/faults`` injects errors, latency and resets.

Start it with ``python -m airflow_provider_skyvern.emulator`` (port 8731), or in-process with
:class:`~airflow_provider_skyvern.emulator.server.EmulatorServer`. See ``docs/emulator.md``.
"""

"""SmartChat campaigns: contact files in, validated campaigns, SMS conversations, replies in DuckDB.

This package is the part every layer shares (settings, errors) and the `smartchat` CLI. It never
imports Prefect, so quick commands answer in well under a second of start-up; the Prefect flows in
`flows/` call the same plain functions in `tasks/` that the CLI calls.
"""

__version__ = "0.1.0"

"""The pipeline's steps: plain functions grouped by I/O boundary, importable without Prefect.

The Prefect `@task` wrappers live in the `*_tasks.py` modules (`validation_tasks`,
`campaign_tasks`), the only ones here that import Prefect, so the CLI's quick commands never pay
Prefect's start-up.
"""

"""The pipeline's steps: plain functions grouped by I/O boundary, importable without Prefect.

The Prefect `@task` wrappers live in `tasks/prefect_tasks.py`, the only module here that imports
Prefect, so the CLI's quick commands never pay Prefect's start-up.
"""

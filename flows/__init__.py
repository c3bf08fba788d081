"""Prefect flows: the entry points people run, schedule and watch in the Prefect UI."""

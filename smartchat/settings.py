"""Configuration: one object, read from the environment (`SMARTCHAT_*`) on first use."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the pipeline, with the embedded defaults that make `smartchat` work offline."""

    model_config = SettingsConfigDict(env_prefix="SMARTCHAT_", extra="ignore")

    db: Path = Field(
        default=Path("data/smartchat.duckdb"),
        description="DuckDB file holding chatbots, campaigns, messages and replies.",
    )
    store_lock_timeout: float = Field(
        default=10.0,
        description="Seconds to wait for another smartchat process to release the DuckDB file.",
    )
    max_message_chars: int = Field(
        default=1600, description="Longest rendered message a contact may receive."
    )
    default_send_rate: float = Field(
        default=10.0, description="Messages per second a campaign sends at unless --rate says."
    )
    report_sample: int = Field(
        default=20, description="Errors shown per rule in the terminal report (--json has all)."
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()

"""Settings from the environment (docs/configuration.md)."""

import hashlib
import hmac
import secrets
from datetime import time
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_PLACEHOLDERS = {"changeme", "change-me", "secret", "xxx", "todo", "placeholder"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", case_sensitive=False)

    database_url: str = "sqlite:///./aopbot.db"
    aop_registry: str = "./aops.yml"
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    host: str = "127.0.0.1"
    port: int = Field(default=3000, ge=0, le=65535)
    aop_timezone: str = "UTC"
    aop_digest_time: str = "09:00"
    aop_digest_channel: str | None = None
    # Extensions to the original contract, all optional.
    aop_public_url: str | None = None  # base of poll_url when behind a proxy
    aop_tick_seconds: float = Field(default=1.0, gt=0)
    aop_max_body_bytes: int = Field(default=1_048_576, gt=0)
    aop_env: str = "development"
    aop_log_level: str = "INFO"
    # Hosts (comma-separated) a callback_url may name with http:// and a private address: local development.
    aop_callback_allow: str = ""
    # The built-in sandbox: unset = on without Slack credentials on a loopback HOST; 1 = on; 0 = off.
    aop_sandbox: bool | None = None
    # Keys the hash that picks which recorded actions sampling QA reviews; unset: derived from
    # SLACK_SIGNING_SECRET (docs/configuration.md).
    aop_qa_key: SecretStr | None = None
    # Delivery (timers, Slack and callback lanes) in a child process of `serve`: unset = on with
    # PostgreSQL and off with SQLite or the sandbox; 1 = on; 0 = off (bot/ops/worker.py).
    aop_delivery_process: bool | None = None

    @field_validator("slack_api_url")
    @classmethod
    def _trailing_slash(cls, v: str) -> str:
        return v if v.endswith("/") else v + "/"

    @field_validator("aop_timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"unknown time zone {v!r}") from e
        return v

    @field_validator("aop_digest_time")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        try:
            time.fromisoformat(v)
        except ValueError as e:
            raise ValueError(f"AOP_DIGEST_TIME must be HH:MM, got {v!r}") from e
        return v

    @field_validator("slack_signing_secret", "slack_bot_token", "slack_app_token", "aop_qa_key")
    @classmethod
    def _no_placeholder(cls, v: SecretStr | None, info) -> SecretStr | None:
        if v is not None and v.get_secret_value().strip().lower() in _PLACEHOLDERS:
            raise ValueError(f"{info.field_name.upper()} is a placeholder; set the real value")
        return v

    @property
    def callback_allow(self) -> frozenset[str]:
        return frozenset(h.strip().lower() for h in self.aop_callback_allow.split(",") if h.strip())

    @property
    def local_url(self) -> str:
        """How this process reaches its own listener (a wildcard bind is reached on loopback)."""
        host = self.host
        if host in ("0.0.0.0", "", "::"):  # noqa: S104 - not binding, just naming loopback
            host = "127.0.0.1"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def public_url(self) -> str:
        """The base URL agents use (AOP_PUBLIC_URL behind a proxy): poll_url and callbacks build on it."""
        return (self.aop_public_url or self.local_url).rstrip("/")

    def poll_url(self, esc_id: str) -> str:
        return f"{self.public_url}/api/v1/escalations/{esc_id}"

    @property
    def signing_secret(self) -> str | None:
        return self.slack_signing_secret.get_secret_value() if self.slack_signing_secret else None

    @property
    def bot_token(self) -> str | None:
        return self.slack_bot_token.get_secret_value() if self.slack_bot_token else None

    @property
    def qa_key(self) -> bytes:
        """The sampling key: AOP_QA_KEY, else one derived from the signing secret (so it is as secret as
        that, and stable across restarts and replicas), else a random one for this process only."""
        if self.aop_qa_key is not None:
            return self.aop_qa_key.get_secret_value().encode()
        if self.signing_secret:
            return hmac.new(self.signing_secret.encode(), b"aopbot qa sampling v1", hashlib.sha256).digest()
        return _EPHEMERAL_QA_KEY


_EPHEMERAL_QA_KEY = secrets.token_bytes(32)  # no secret to derive from: nothing to reproduce against either


@lru_cache
def get_settings() -> Settings:
    return Settings()

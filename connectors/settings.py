"""How to reach Qdrant: an embedded folder, ``:memory:``, or a server URL with an API key."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

from qdrant_distill.errors import ConfigError

DEFAULT_PATH = "./qdrant_data"

__all__ = ["DEFAULT_PATH", "QdrantSettings"]


class QdrantSettings(BaseModel):
    """Connection settings. With neither ``url`` nor ``location``, the embedded store at ``path`` is used.

    ``api_key`` is a ``SecretStr``: it prints as ``**********`` and is never logged or written to a journal.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str | None = None
    api_key: SecretStr | None = None
    path: str | None = None
    location: str | None = None  # ":memory:"
    prefer_grpc: bool = False
    grpc_port: int = 6334
    timeout: float = 60.0

    @model_validator(mode="after")
    def _one_target(self) -> QdrantSettings:
        given = [k for k in ("url", "path", "location") if getattr(self, k)]
        if len(given) > 1:
            raise ConfigError(f"give one of url, path or location, not {' and '.join(given)}")
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"bad Qdrant URL {self.url!r}", hint="expected http(s)://host:port")
        return self

    @property
    def target(self) -> str:
        """A loggable description: never the API key, nor credentials written into the URL."""
        if self.url:
            parts = urlsplit(self.url)
            if parts.username or parts.password:
                host = parts.hostname or ""
                netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
                return urlunsplit(parts._replace(netloc=netloc))
            return self.url
        if self.location:
            return self.location
        return f"embedded:{self.path or DEFAULT_PATH}"

    @property
    def embedded(self) -> bool:
        return not self.url

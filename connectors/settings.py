"""How to reach Qdrant: an embedded folder, ``:memory:``, or a server URL with an API key."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, SecretStr, model_validator

from qdrant_distill.errors import ConfigError
from qdrant_distill.redact import redact_url

DEFAULT_PATH = "./qdrant_data"
DEFAULT_PORT = 6333  # what qdrant-client uses for a URL without a port

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
        if self.url:
            _check_url(self.url)
        return self

    @property
    def target(self) -> str:
        """A loggable description: never the API key; of a URL, only its scheme, host and port
        (:func:`qdrant_distill.redact.redact_url`); with gRPC, ``grpc://host:GRPC_PORT``, the address dialled."""
        if self.url and self.prefer_grpc:  # the client dials the gRPC port, not the URL's: name the one dialled
            parts = urlsplit(self.url)
            host = parts.hostname or ""
            host = f"[{host}]" if ":" in host else host
            return f"grpc{'s' if parts.scheme.lower() == 'https' else ''}://{host}:{self.grpc_port}"
        if self.url:
            return redact_url(self.url)
        if self.location:
            return self.location
        return f"embedded:{self.path or DEFAULT_PATH}"

    @property
    def identity(self) -> str:
        """Which store this is, stable and secret-free (a run folder records it): ``scheme://host:port`` of a server
        (never its credentials, path, query or fragment: the redaction rule of :mod:`qdrant_distill.redact`), the
        location (``:memory:``), or ``embedded:`` and the resolved folder."""
        if self.url:
            parts = urlsplit(self.url)
            return f"{parts.scheme.lower()}://{(parts.hostname or '').lower()}:{parts.port or DEFAULT_PORT}"
        if self.location:
            return self.location
        return f"embedded:{Path(self.path or DEFAULT_PATH).expanduser().resolve()}"

    @property
    def embedded(self) -> bool:
        return not self.url


def _check_url(url: str) -> None:
    """Refuse a URL that is not http(s)://host[:port] with a valid port; the message shows only its scheme, host
    and port."""
    shown = redact_url(url)
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"bad Qdrant URL {shown!r}", hint="expected http(s)://host:port")
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a port out of range or not a number
    except ValueError as exc:
        reason = "port out of range 0-65535" if "range" in str(exc) else "not a valid URL"
        raise ConfigError(f"bad Qdrant URL {shown!r}: {reason}", hint="expected http(s)://host:port") from None
    if not parts.hostname:
        raise ConfigError(f"bad Qdrant URL {shown!r}: no host", hint="expected http(s)://host:port")

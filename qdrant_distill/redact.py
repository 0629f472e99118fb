"""What may be shown of a URL: the one redaction rule, for every message, log line, journal and report.

A URL is shown as ``scheme://host:port`` only. Its userinfo (``user:password@``), its path, its query and its
fragment are never shown: any of them may carry a credential (``?api_key=...``, a token in an endpoint's path), and
nothing here can tell which do. :func:`redact_url` applies the rule to one URL, :func:`redact_text` to every URL in a
free text (a foreign exception's message, a traceback, a log line), and :func:`redact_logs` to every log record of
the process (the command line installs it: httpx and qdrant-client log the URLs they call).
"""

from __future__ import annotations

import logging
import re
import traceback
from typing import Any

__all__ = ["redact_logs", "redact_record", "redact_text", "redact_url"]

_SCHEME = re.compile(r"^\s*(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._~%-]*)(:[0-9]*)?$")
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]*")
UNREADABLE_HOST = "<host>"


def redact_url(url: str) -> str:
    """``scheme://host:port`` of ``url`` (``host:port`` when it has no scheme); never its userinfo, path, query or
    fragment. An authority that is not a plain host and port, with an ``@`` further on (a password with a ``/`` in
    it), shows as ``<host>``."""
    text = str(url)
    match = _SCHEME.match(text)
    scheme, rest = (f"{match.group('scheme')}://", text[match.end():]) if match else ("", text.strip())
    head, *tail = re.split(r"[/?#\\]", rest, maxsplit=1)
    authority = head.rpartition("@")[2]
    plain = _HOST_PORT.match(authority) or not ("@" in "".join(tail) or any(c.isspace() for c in authority))
    return scheme + (authority if plain else UNREADABLE_HOST)


def redact_text(text: str) -> str:
    """``text`` with every URL in it (``scheme://...`` up to a space or a quote) reduced by :func:`redact_url`."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """The record with URLs redacted from its message, traceback and stack (in place; returned for chaining). A
    record without URLs is left exactly as it was, its traceback included."""
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a message that does not format: logging reports it when it is emitted
        return record
    clean = redact_text(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and record.exc_info[1] is not None:
        shown = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        if redact_text(shown) != shown:  # the handler would print the URL: print the redacted traceback instead
            record.msg, record.args = f"{record.getMessage()}\n{redact_text(shown)}", None
            record.exc_info, record.exc_text = None, None
    if record.stack_info:
        record.stack_info = redact_text(record.stack_info)
    return record


def redact_logs() -> None:
    """Redact every log record of this process from now on, whoever logs it and whichever handler prints it (a
    record factory: handlers and logger filters of other libraries stay as they are). Idempotent."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_qdrant_distill_redacts", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return redact_record(previous(*args, **kwargs))

    factory._qdrant_distill_redacts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)

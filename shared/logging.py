"""Structured JSON logs that carry the trace id and never carry a phone number or an email address."""

from __future__ import annotations

import contextlib
import logging
import re
import sys
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.json import JsonFormatter

trace_id_var: ContextVar[str | None] = ContextVar("trace_id", default=None)

EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
# E.164 (+15551234567), grouped national formats ((555) 123-4567, 555.123.4567) and bare 10–11 digit runs.
PHONE = re.compile(
    r"\+[1-9]\d{6,14}(?!\d)"
    r"|(?<![\w-])(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}(?![\w-])"
    r"|(?<![\w.-])1?\d{10}(?![\w.-])"
)
EMAIL_MASK = "[email redacted]"
PHONE_MASK = "[phone redacted]"


def redact(text: str) -> str:
    return PHONE.sub(PHONE_MASK, EMAIL.sub(EMAIL_MASK, text))


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redact_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_redact_value(item) for item in value)
    return value


_STANDARD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class RedactionFilter(logging.Filter):
    """Scrubs contact details from the message, its arguments, extra fields and exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        for name, value in list(record.__dict__.items()):
            if name not in _STANDARD_ATTRS:
                setattr(record, name, _redact_value(value))
        if record.exc_info:
            formatter = logging.Formatter()
            record.exc_text = redact(formatter.formatException(record.exc_info))
            record.exc_info = None
        return True


class TraceFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self._service
        record.trace_id = trace_id_var.get()
        return True


class RepeatFilter(logging.Filter):
    """Lets a library's repeated complaint through once per ``window`` seconds, saying how many were held back.

    During a broker outage aiokafka logs "Unable connect to node" about ten times a second per client: that would
    bury the one line an operator needs. Our own code logs an outage once, when it starts waiting.
    """

    def __init__(self, loggers: tuple[str, ...] = ("aiokafka", "kafka"), window: float = 10.0) -> None:
        super().__init__()
        self._loggers = loggers
        self._window = window
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self._loggers):
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = time.monotonic()
        since, held = self._seen.get(key, (-self._window, 0))
        if now - since < self._window:
            self._seen[key] = (since, held + 1)
            return False
        self._seen[key] = (now, 0)
        if held:
            record.msg = f"{record.msg} (and {held} more like it in the last {self._window:.0f} s)"
        return True


@contextlib.contextmanager
def trace_context(trace_id: str | None) -> Iterator[None]:
    token = trace_id_var.set(trace_id)
    try:
        yield
    finally:
        trace_id_var.reset(token)


def configure_logging(service: str, level: str = "INFO", stream: Any = None) -> logging.Handler:
    """Route all logging (ours, uvicorn's, aiokafka's) through one redacting JSON handler on stderr."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(service)s %(trace_id)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    handler.addFilter(TraceFilter(service))
    handler.addFilter(RepeatFilter())
    handler.addFilter(RedactionFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # httpx logs every request's URL at INFO, and a provider's query string can hold a recipient's number.
    for noisy in ("aiokafka", "kafka", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    return handler

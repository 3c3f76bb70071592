import io
import json
import logging

import pytest

from shared.logging import RepeatFilter, configure_logging, redact, trace_context


@pytest.mark.parametrize(
    "text",
    [
        "call +15551234567 now",
        "call (555) 123-4567 now",
        "call 555-123-4567 now",
        "call 555.123.4567 now",
        "call 5551234567 now",
        "write to jane.doe+alerts@example.org now",
        "+447700900123",
    ],
)
def test_contacts_are_redacted(text: str) -> None:
    cleaned = redact(text)
    for secret in ("5551234567", "123-4567", "123.4567", "jane.doe", "7700900123"):
        assert secret not in cleaned


@pytest.mark.parametrize(
    "text",
    [
        "batch 3f2a9c1e-55b2-4bd1-8a4f-0c9e1b2d3e4f took 12 ms",
        "effective 2026-11-27T18:09:45+00:00",
        "offset 1234567 of partition 3",
    ],
)
def test_ordinary_text_survives(text: str) -> None:
    assert redact(text) == text


def test_log_lines_are_json_with_trace_id_and_no_contacts() -> None:
    stream = io.StringIO()
    configure_logging("test-service", "INFO", stream=stream)
    logger = logging.getLogger("tests.redaction")
    with trace_context("trace-123"):
        logger.info("sent to %s", "+15551234567", extra={"contact": "jane@example.org"})
        try:
            raise ValueError("bad address jane@example.org")
        except ValueError:
            logger.exception("failed")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["message"] == "sent to [phone redacted]"
    assert lines[0]["contact"] == "[email redacted]"
    assert lines[0]["trace_id"] == "trace-123"
    assert lines[0]["service"] == "test-service"
    assert "jane@example.org" not in stream.getvalue()
    assert "+15551234567" not in stream.getvalue()
    assert "ValueError" in lines[1]["exc_info"] or "ValueError" in json.dumps(lines[1])


def test_a_library_s_repeated_complaint_is_let_through_once_per_window(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr("shared.logging.time.monotonic", lambda: now[0])
    repeats = RepeatFilter(window=10.0)

    def record(name: str, message: str = "Unable connect to node with id %s") -> logging.LogRecord:
        return logging.LogRecord(name, logging.ERROR, __file__, 1, message, (1,), None)

    assert repeats.filter(record("aiokafka.conn"))
    held = [repeats.filter(record("aiokafka.conn")) for _ in range(57)]
    assert not any(held)
    assert repeats.filter(record("aiokafka.conn", "another complaint")), "a different message is its own"
    assert repeats.filter(record("services.delivery")), "our own lines always pass"
    assert repeats.filter(record("services.delivery"))
    now[0] += 10.5
    again = record("aiokafka.conn")
    assert repeats.filter(again)
    assert again.getMessage() == "Unable connect to node with id 1 (and 57 more like it in the last 10 s)"

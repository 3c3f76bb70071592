"""The ``cw-`` headers a record carries through the retry and dead-letter topics, and reading any header."""

from __future__ import annotations

from aiokafka import ConsumerRecord

H_ATTEMPT = "cw-attempt"
H_NOT_BEFORE = "cw-not-before"
H_ORIGINAL_TOPIC = "cw-original-topic"
H_ORIGINAL_PARTITION = "cw-original-partition"
H_ORIGINAL_OFFSET = "cw-original-offset"
H_ERROR = "cw-error"


def header(message: ConsumerRecord[bytes, bytes], name: str) -> str | None:
    for key, value in message.headers or ():
        if key == name:
            return str(value.decode(errors="replace"))
    return None


def source_topic(record: ConsumerRecord[bytes, bytes]) -> str:
    """The topic the record was first published to, also when it comes back through the retry topic."""
    return header(record, H_ORIGINAL_TOPIC) or record.topic

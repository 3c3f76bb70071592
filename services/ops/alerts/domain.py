"""Alerts from every service (``ops.alert.v1``), as the dashboard lists them."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class Alert(BaseModel):
    source: str
    kind: str
    agency_id: str
    message: str
    at: datetime

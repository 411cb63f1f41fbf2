"""``[layers.service.dashboard]``: how much the dashboard remembers and how much it accepts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DashboardSettings:
    """Every bound of the dashboard. All memory is in-process and bounded by these numbers."""

    #: Seconds of per-second traffic buckets kept (the Traffic page's window).
    traffic_seconds: int = 3600
    #: Recent decisions kept for the Audit page (oldest dropped first).
    recent_decisions: int = 2000
    #: Traders remembered with their usage (least recently seen dropped first).
    subjects_max: int = 10_000
    #: Traders shown on the Traders page (most recently seen first).
    subjects_shown: int = 200
    #: Largest form body accepted; larger gets 413.
    max_body_bytes: int = 8 * 1024
    #: Largest query string accepted; longer gets 414.
    max_query_bytes: int = 2 * 1024
    #: Seconds a form's CSRF token stays valid after the page was rendered.
    csrf_max_age_seconds: int = 900
    #: Used CSRF tokens remembered to refuse a replay (a full table refuses new forms with 503).
    csrf_used_max: int = 10_000
    #: Seconds between the Traffic page's polls of its JSON endpoint.
    poll_seconds: int = 5

    def __post_init__(self) -> None:
        if not 60 <= self.traffic_seconds <= 86_400:
            raise ValueError("traffic_seconds must be between 60 and 86400")
        if not 10 <= self.recent_decisions <= 1_000_000:
            raise ValueError("recent_decisions must be between 10 and 1000000")
        if not 10 <= self.subjects_max <= 1_000_000:
            raise ValueError("subjects_max must be between 10 and 1000000")
        if not 1 <= self.subjects_shown <= 5_000:
            raise ValueError("subjects_shown must be between 1 and 5000")
        if not 256 <= self.max_body_bytes <= 256 * 1024:
            raise ValueError("max_body_bytes must be between 256 and 262144")
        if not 128 <= self.max_query_bytes <= 16 * 1024:
            raise ValueError("max_query_bytes must be between 128 and 16384")
        if not 30 <= self.csrf_max_age_seconds <= 86_400:
            raise ValueError("csrf_max_age_seconds must be between 30 and 86400")
        if not 100 <= self.csrf_used_max <= 1_000_000:
            raise ValueError("csrf_used_max must be between 100 and 1000000")
        if not 1 <= self.poll_seconds <= 300:
            raise ValueError("poll_seconds must be between 1 and 300")

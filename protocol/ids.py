"""Typed identifiers shared by every layer."""

from __future__ import annotations

from typing import NewType

SessionId = NewType("SessionId", str)
"""One attempt of one candidate at one interview."""

InterviewId = NewType("InterviewId", str)
UserId = NewType("UserId", str)
"""The JWT ``sub`` of a candidate, recruiter or admin."""

Millis = int
"""Unix epoch milliseconds of the server clock, or a duration in milliseconds."""

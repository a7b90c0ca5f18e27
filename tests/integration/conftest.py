"""Integration fixtures: an interview definition with keys, and stored interviews."""

from __future__ import annotations

import pytest

from protocol.definition import InterviewDefinition, parse_definition
from protocol.ids import UserId
from server.storage.attempts import DatabaseStorage, InterviewRecord

CREATED_AT = 1_800_000_000_000


@pytest.fixture
def definition() -> InterviewDefinition:
    return parse_definition(
        {
            "title": "Backend developer",
            "description": "Three questions",
            "settings": {"max_attempts": 2, "grace_s": 1.5},
            "questions": [
                {
                    "type": "mcq",
                    "text": "Which is a prime?",
                    "points": 2,
                    "time_limit_s": 30,
                    "options": [{"id": "a", "text": "4"}, {"id": "b", "text": "7"}],
                    "correct_answer": "b",
                },
                {
                    "type": "short_answer",
                    "text": "What does ACID stand for?",
                    "points": 5,
                    "difficulty": "hard",
                    "time_limit_s": 60,
                    "expected_keywords": ["atomicity", "isolation"],
                },
                {
                    "type": "code",
                    "text": "Write add(a, b)",
                    "points": 10,
                    "time_limit_s": 120,
                    "sample_solution": "def add(a, b): return a + b",
                    "tests": {
                        "entrypoint": "add",
                        "cases": [{"args": [1, 2], "expected": 3}],
                    },
                },
            ],
        }
    )


@pytest.fixture
async def interview(
    storage: DatabaseStorage, definition: InterviewDefinition
) -> InterviewRecord:
    return await storage.create_interview(
        org="acme", created_by=UserId("rita"), definition=definition, now=CREATED_AT
    )

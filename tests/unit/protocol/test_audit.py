"""Audit log entries (protocol/audit.py)."""

from __future__ import annotations

import pytest

from protocol import audit
from protocol.attempt import QuestionView, begin
from protocol.audit import AuditEntry, AuditKind
from protocol.ids import InterviewId, SessionId, UserId


def test_an_audit_entry_without_data_has_its_own_empty_data() -> None:
    first = AuditEntry(at=1, actor="server", kind=AuditKind.EXPIRED)
    second = AuditEntry(at=2, actor="server", kind=AuditKind.EXPIRED)

    assert first.data == {}
    assert first.data is not second.data


def test_audit_kinds_are_the_strings_recruiters_see() -> None:
    assert AuditKind.LATE_ANSWER.value == "late_answer"
    assert {kind.value for kind in AuditKind} >= {
        "started",
        "attached",
        "taken_over",
        "answer_accepted",
        "late_answer",
        "expired",
        "abandoned",
        "completed",
    }


def test_an_attach_is_recorded_as_taken_over_only_when_the_lock_was_taken() -> None:
    assert audit.attached("candidate:c-1", 5, taken_over=False) == AuditEntry(
        at=5, actor="candidate:c-1", kind=AuditKind.ATTACHED
    )
    assert audit.attached("candidate:c-1", 5, taken_over=True).kind is (
        AuditKind.TAKEN_OVER
    )


@pytest.mark.parametrize("taken_over", [False, True])
def test_a_lease_reattach_is_recorded_as_an_attach_that_says_so(
    taken_over: bool,
) -> None:
    entry = audit.reattached("candidate:c-1", 5, taken_over=taken_over)

    assert entry == AuditEntry(
        at=5,
        actor="candidate:c-1",
        kind=AuditKind.ATTACHED,
        data={"lease": True, "taken_over": taken_over},
    )


def test_a_detach_keeps_the_close_code() -> None:
    entry = audit.detached("candidate:c-1", 7, 4409)

    assert (entry.kind, entry.at, entry.data) == (
        AuditKind.DETACHED,
        7,
        {"close_code": 4409},
    )


def test_start_and_start_over_name_the_attempt_numbers() -> None:
    view = QuestionView(
        index=0,
        type="short_answer",
        text="q",
        options=None,
        language=None,
        points=1.0,
        difficulty="easy",
        time_limit_s=60,
    )
    second = begin(
        session_id=SessionId("s-2"),
        interview_id=InterviewId("i-1"),
        title="t",
        candidate_id=UserId("c-1"),
        number=2,
        questions=(view,),
        grace_ms=0,
        now=3,
    )
    actor = audit.candidate("c-1")

    assert actor == "candidate:c-1"
    assert audit.started(second, actor, 3) == AuditEntry(
        at=3, actor=actor, kind=AuditKind.STARTED, data={"attempt": 2}
    )
    assert audit.abandoned(second, actor, 3) == AuditEntry(
        at=3, actor=actor, kind=AuditKind.ABANDONED, data={"next": 2}
    )


# -- late answers: what the audit log keeps of them ---------------------------------

BUDGET = audit.LateAnswerBudget(texts=3, chars=10)


def late(text: str, question_index: int = 0) -> AuditEntry:
    return audit.late_answer("candidate:c-1", 7, question_index, text)


def kept_in_turn(
    texts: list[str], budget: audit.LateAnswerBudget = BUDGET
) -> list[AuditEntry | None]:
    """What the store keeps of ``texts``, sent one after another to one question."""
    tally = audit.LateAnswerTally()
    stored = []
    for text in texts:
        entry = late(text)
        decided = audit.late_answer_kept(entry, tally, budget)
        stored.append(decided)
        kept = decided is entry
        tally = audit.LateAnswerTally(
            received=tally.received + 1,
            kept=tally.kept + kept,
            kept_chars=tally.kept_chars + (len(text) if kept else 0),
        )
    return stored


def test_a_late_answer_entry_holds_its_question_and_whole_text() -> None:
    assert late("too slow", 2) == AuditEntry(
        at=7,
        actor="candidate:c-1",
        kind=AuditKind.LATE_ANSWER,
        data={"question_index": 2, "text": "too slow"},
    )


def test_late_answers_are_kept_whole_while_they_fit_the_budget() -> None:
    first, second = late("four"), late("six ch")

    assert kept_in_turn(["four", "six ch"]) == [first, second]


def test_the_first_late_answer_over_the_budget_is_recorded_by_size_and_digest() -> None:
    stored = kept_in_turn(["four", "seven c", "x"])

    assert stored[0] == late("four")
    assert stored[1] == AuditEntry(
        at=7,
        actor="candidate:c-1",
        kind=AuditKind.LATE_ANSWER,
        data={
            "question_index": 0,
            "number": 2,
            "chars": 7,
            "sha256": audit.text_digest("seven c"),
            "text_kept": False,
        },
    )
    # Counted from then on, even when a later one would fit.
    assert stored[2] is None


def test_no_more_late_answers_are_kept_whole_than_the_budget_allows() -> None:
    stored = kept_in_turn(["a", "b", "c", "d", "e"])

    assert [entry is not None and "text" in entry.data for entry in stored] == [
        True,
        True,
        True,
        False,
        False,
    ]
    assert stored[3] is not None and stored[3].data["number"] == 4
    assert stored[4] is None


def test_the_default_budget_keeps_two_answers_of_the_longest_length() -> None:
    longest = "x" * 100_000

    stored = kept_in_turn([longest] * 200, audit.LateAnswerBudget())

    assert [entry for entry in stored if entry is not None] == [
        late(longest),
        late(longest),
        AuditEntry(
            at=7,
            actor="candidate:c-1",
            kind=AuditKind.LATE_ANSWER,
            data={
                "question_index": 0,
                "number": 3,
                "chars": 100_000,
                "sha256": audit.text_digest(longest),
                "text_kept": False,
            },
        ),
    ]


def test_a_text_digest_accepts_lone_surrogates() -> None:
    assert len(audit.text_digest("\ud800")) == 64
    assert audit.text_digest("a") != audit.text_digest("b")


def test_a_detached_entry_names_the_signals_counted_but_not_stored() -> None:
    quiet = audit.detached("candidate:c-1", 5, 1000)
    counted = audit.detached("candidate:c-1", 5, 1000, {"paste": 3})

    assert quiet.data == {"close_code": 1000}
    assert counted.data == {"close_code": 1000, "unrecorded_signals": {"paste": 3}}

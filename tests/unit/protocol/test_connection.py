"""The candidate connection machine, as conversations (protocol/connection.py).

A :class:`FakeShell` plays the part of ``server/candidate.py``: it feeds frames in,
performs the effects against one in-memory "stored attempt" (with the same guard as
the database: a write applies only while the stored attempt is in progress at the
index it was decided from) and collects what the machine sends.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from protocol.attempt import (
    Attempt,
    Draft,
    QuestionView,
    Status,
    abandon,
    begin,
    expire_due,
    submit,
)
from protocol.audit import AuditEntry, AuditKind
from protocol.connection import (
    AttachAttempt,
    CandidateProtocol,
    Commit,
    Effect,
    LoadActiveAttempt,
    Phase,
    RecordAudit,
    RestartAttempt,
    StartAttempt,
    StoreDraft,
    VerifyToken,
)
from protocol.errors import ErrorCode, InvalidState
from protocol.ids import InterviewId, Millis, SessionId, UserId
from protocol.messages import User

T0: Millis = 1_700_000_000_000
GRACE: Millis = 2_000
LIMIT_MS: Millis = 60_000
CLOSES: Millis = LIMIT_MS + GRACE
"""Question 0 of an attempt begun at T0 closes at T0 + CLOSES."""

CANDIDATE = User(id="c-1", name="Ada", role="candidate")
TOKENS = {
    "candidate-token": CANDIDATE,
    "recruiter-token": User(id="r-1", name="Rex", role="recruiter"),
}

Frame = dict[str, Any]


# -- builders --------------------------------------------------------------------------


def question(index: int, limit_s: int = 60) -> QuestionView:
    return QuestionView(
        index=index,
        type="short_answer",
        text=f"question {index}",
        options=None,
        language=None,
        points=10.0,
        difficulty="medium",
        time_limit_s=limit_s,
    )


def started(
    questions: int = 3,
    *,
    now: Millis = T0,
    number: int = 1,
    session: str = "s-1",
) -> Attempt:
    """An attempt begun at ``now`` with ``questions`` questions of 60 s each."""
    return begin(
        session_id=SessionId(session),
        interview_id=InterviewId("i-1"),
        title="Backend interview",
        candidate_id=UserId(CANDIDATE.id),
        number=number,
        questions=tuple(question(index) for index in range(questions)),
        grace_ms=GRACE,
        now=now,
    )


def answered(attempt: Attempt, text: str, now: Millis) -> Attempt:
    return submit(attempt, attempt.question_index, text, now).attempt


# -- the fake shell --------------------------------------------------------------------


@dataclass
class FakeShell:
    """Performs effects against an in-memory stored attempt; records what is sent."""

    protocol: CandidateProtocol
    stored: Attempt | None = None
    refusal: tuple[ErrorCode, str] | None = None
    hold_writes: bool = False
    fail_next_write: bool = False
    questions: int = 3
    held: list[Commit | StoreDraft] = field(default_factory=list)
    attaches: int = 0
    performed: list[Effect] = field(default_factory=list)
    audit: list[AuditEntry] = field(default_factory=list)
    sent: list[Frame] = field(default_factory=list)

    # -- inputs, each followed by the shell's drain ------------------------------------

    def send(self, frame: Frame | str, now: Millis) -> None:
        text = frame if isinstance(frame, str) else json.dumps(frame)
        self.protocol.receive_text(text, now)
        self.settle(now)

    def expire(self, now: Millis) -> None:
        self.protocol.expire(now)
        self.settle(now)

    def wake(self, now: Millis) -> None:
        """The timer fired at ``now``."""
        self.protocol.receive_timer(now)
        self.settle(now)

    def supersede(self, now: Millis) -> None:
        self.protocol.supersede()
        self.settle(now)

    def changed(self, now: Millis) -> None:
        """The bus said the stored attempt changed elsewhere."""
        self.protocol.receive_changed(self.stored, now)
        self.settle(now)

    def release_write(self, now: Millis) -> None:
        """Perform the write that ``hold_writes`` kept back."""
        self.hold_writes = False
        effect = self.held.pop(0)
        self.perform(effect, now)
        self.settle(now)

    def settle(self, now: Millis) -> None:
        while effects := self.protocol.effects():
            for effect in effects:
                self.performed.append(effect)
                self.perform(effect, now)
        self.sent.extend(json.loads(text) for text in self.protocol.messages_to_send())

    # -- what the test looks at --------------------------------------------------------

    def take_sent(self) -> list[Frame]:
        sent, self.sent = self.sent, []
        return sent

    def take_effects(self) -> list[Effect]:
        performed, self.performed = self.performed, []
        return performed

    @property
    def close_code(self) -> int | None:
        return self.protocol.close_code

    # -- effects -----------------------------------------------------------------------

    def perform(self, effect: Effect, now: Millis) -> None:
        protocol = self.protocol
        match effect:
            case VerifyToken(token):
                user = TOKENS.get(token)
                if user is None:
                    protocol.receive_unauthenticated("the token is not valid")
                else:
                    protocol.receive_authenticated(user)
            case LoadActiveAttempt(candidate_id):
                assert candidate_id == protocol.actor.removeprefix("candidate:")
                protocol.receive_active(self.active(), now)
            case StartAttempt() | AttachAttempt() | RestartAttempt() if self.refusal:
                protocol.receive_refused(*self.refusal)
            case StartAttempt():
                self.stored = started(self.questions, now=now)
                self.attach(self.stored, now)
            case AttachAttempt():
                active = self.active()
                if active is None:
                    protocol.receive_refused(ErrorCode.NO_ACTIVE_SESSION, "none")
                else:
                    self.attach(active, now)
            case RestartAttempt():
                old = self.active()
                assert old is not None
                self.stored = started(
                    self.questions, now=now, number=old.number + 1, session="s-2"
                )
                self.attach(self.stored, now)
            case Commit() | StoreDraft() if self.hold_writes:
                self.held.append(effect)
            case Commit() | StoreDraft() if self.fail_next_write:
                self.fail_next_write = False
                protocol.receive_write_failed("the server cannot store this right now")
            case Commit(change, audit):
                stored = self.stored
                assert stored is not None
                if stored.in_progress and (
                    stored.question_index == change.before.question_index
                ):
                    self.stored = change.after
                    self.audit.extend(audit)
                    protocol.receive_persisted(now)
                else:
                    protocol.receive_conflict(stored, now)
            case StoreDraft(draft):
                stored = self.stored
                assert stored is not None
                if stored.in_progress and stored.question_index == draft.question_index:
                    self.stored = dataclasses.replace(stored, draft=draft)
                    protocol.receive_persisted(now)
                else:
                    protocol.receive_conflict(stored, now)
            case RecordAudit(entries):
                self.audit.extend(entries)

    def attach(self, attempt: Attempt, now: Millis) -> None:
        """Attach with a new lease, as the shell does after claiming the attempt."""
        self.attaches += 1
        lease = f"lease-{attempt.session_id}-{self.attaches}"
        self.protocol.receive_attached(attempt, now, lease=lease)

    def active(self) -> Attempt | None:
        stored = self.stored
        return stored if stored is not None and stored.in_progress else None


def connect(now: Millis = T0, **options: Any) -> FakeShell:
    """A fresh connection, opened at ``now``."""
    return FakeShell(CandidateProtocol(now=now, **options))


def authenticated(now: Millis = T0, **options: Any) -> FakeShell:
    shell = connect(now, **options)
    shell.send({"type": "auth", "token": "candidate-token"}, now)
    shell.take_sent()
    shell.take_effects()
    return shell


def attached(
    now: Millis = T0, *, stored: Attempt | None = None, **options: Any
) -> FakeShell:
    """Authenticated and attached: to ``stored`` via resume, else a new attempt."""
    shell = connect(now, **options)
    shell.stored = stored
    shell.send({"type": "auth", "token": "candidate-token"}, now)
    if stored is None:
        shell.send({"type": "start", "interview_id": "i-1"}, now)
    else:
        shell.send({"type": "resume"}, now)
    assert shell.protocol.phase is Phase.ATTACHED
    shell.take_sent()
    shell.take_effects()
    return shell


def assert_sent(shell: FakeShell, expected: list[Frame]) -> None:
    """The frames sent since the last check, in order, each holding ``expected``'s
    fields (a frame may carry more)."""
    sent = shell.take_sent()
    shown = [
        {key: frame.get(key, "<missing>") for key in wanted}
        for frame, wanted in zip(sent, expected, strict=False)
    ]
    assert [frame["type"] for frame in sent] == [frame["type"] for frame in expected]
    assert shown == expected


def answer(index: int, text: str, ref: str | int | None = None) -> Frame:
    frame: Frame = {"type": "answer", "question_index": index, "answer": text}
    if ref is not None:
        frame["ref"] = ref
    return frame


def draft(index: int, text: str) -> Frame:
    return {"type": "draft", "question_index": index, "answer": text}


def commits(effects: list[Effect]) -> list[Commit]:
    return [effect for effect in effects if isinstance(effect, Commit)]


def error(code: str, **fields: Any) -> Frame:
    return {"type": "error", "code": code, **fields}


# -- authentication --------------------------------------------------------------------


@pytest.mark.parametrize(
    "first",
    [
        json.dumps({"type": "start", "interview_id": "i-1"}),
        json.dumps({"type": "ping", "client_time": 1}),
        json.dumps(answer(0, "x")),
        "not json",
        json.dumps({"type": "auth"}),
    ],
    ids=["start", "ping", "answer", "not-json", "auth-without-token"],
)
def test_a_first_frame_that_is_not_a_valid_auth_gets_unauthenticated_and_close_4401(
    first: str,
) -> None:
    shell = connect()

    shell.send(first, T0)

    assert_sent(shell, [error("unauthenticated")])
    assert shell.close_code == 4401
    assert shell.protocol.phase is Phase.CLOSED
    assert shell.take_effects() == []


def test_a_binary_first_frame_gets_unauthenticated_and_close_4401() -> None:
    shell = connect()

    shell.protocol.receive_binary(T0)
    shell.settle(T0)

    assert_sent(shell, [error("unauthenticated")])
    assert shell.close_code == 4401


def test_auth_asks_the_shell_to_verify_the_token() -> None:
    shell = connect()

    shell.send({"type": "auth", "token": "candidate-token"}, T0)

    assert shell.take_effects() == [
        VerifyToken("candidate-token"),
        LoadActiveAttempt(CANDIDATE.id),
    ]


def test_hello_waits_for_the_candidates_attempt_in_progress() -> None:
    protocol = CandidateProtocol(now=T0)
    protocol.receive_text('{"type":"auth","token":"candidate-token"}', T0)
    protocol.effects()

    protocol.receive_authenticated(CANDIDATE)

    assert protocol.messages_to_send() == []
    assert protocol.phase is Phase.AUTHENTICATING
    protocol.receive_active(None, T0 + 1)
    [hello] = protocol.messages_to_send()
    assert json.loads(hello)["type"] == "hello"
    assert protocol.phase.value == "ready"


def test_reporting_authentication_or_the_attempt_out_of_turn_is_an_invalid_state() -> (
    None
):
    shell = authenticated()

    with pytest.raises(InvalidState):
        shell.protocol.receive_authenticated(CANDIDATE)
    with pytest.raises(InvalidState):
        shell.protocol.receive_active(None, T0)
    with pytest.raises(InvalidState):
        connect().protocol.receive_active(None, T0)  # before the token was checked


def test_authentication_reported_after_close_changes_nothing() -> None:
    shell = connect()
    shell.protocol.receive_shutdown()

    shell.protocol.receive_authenticated(CANDIDATE)
    shell.protocol.receive_active(None, T0)

    assert shell.protocol.effects() == []
    assert shell.protocol.messages_to_send() == []


def test_a_bad_token_gets_unauthenticated_then_close_4401() -> None:
    shell = connect()

    shell.send({"type": "auth", "token": "forged"}, T0 + 10)

    assert_sent(shell, [error("unauthenticated", message="the token is not valid")])
    assert shell.close_code == 4401


def test_auth_times_out_exactly_at_the_auth_deadline() -> None:
    shell = connect(auth_timeout_ms=10_000)
    assert shell.protocol.auth_deadline == T0 + 10_000

    shell.protocol.receive_timeout(T0 + 10_000)
    shell.settle(T0 + 10_000)

    assert_sent(shell, [])
    assert shell.close_code == 4401
    assert shell.protocol.phase is Phase.CLOSED


def test_auth_timeout_also_closes_after_the_deadline() -> None:
    shell = connect()

    shell.protocol.receive_timeout(T0 + 60_000)

    assert shell.close_code == 4401


def test_the_auth_timer_firing_early_changes_nothing() -> None:
    shell = connect()

    shell.protocol.receive_timeout(T0 + 9_999)

    assert shell.close_code is None
    shell.send({"type": "auth", "token": "candidate-token"}, T0 + 9_999)
    assert_sent(shell, [{"type": "hello"}])


def test_the_auth_timer_firing_after_authentication_changes_nothing() -> None:
    shell = authenticated()

    shell.protocol.receive_timeout(T0 + 60_000)

    assert shell.close_code is None
    assert shell.protocol.phase is Phase.READY


def test_a_valid_token_with_another_role_closes_4403_without_hello() -> None:
    shell = connect()

    shell.send({"type": "auth", "token": "recruiter-token"}, T0)

    assert_sent(shell, [])
    assert shell.close_code == 4403
    assert shell.protocol.user is None
    # only candidates have attempts: nothing is looked up for anyone else
    assert not any(isinstance(e, LoadActiveAttempt) for e in shell.take_effects())


def test_hello_reports_protocol_user_server_time_and_tick_interval() -> None:
    shell = connect(tick_interval_ms=500)

    shell.send({"type": "auth", "token": "candidate-token"}, T0 + 7)

    assert shell.take_sent() == [
        {
            "type": "hello",
            "protocol": 1,
            "user": {"id": "c-1", "name": "Ada", "role": "candidate"},
            "server_time": T0 + 7,
            "tick_interval_ms": 500,
            "active_session": None,
        }
    ]
    assert shell.protocol.phase is Phase.READY
    assert shell.protocol.actor == "candidate:c-1"


def test_hello_reports_the_attempt_in_progress() -> None:
    shell = connect()
    shell.stored = started(3, now=T0 - 10_000)

    shell.send({"type": "auth", "token": "candidate-token"}, T0)

    assert_sent(
        shell,
        [
            {
                "type": "hello",
                "active_session": {
                    "session_id": "s-1",
                    "interview_id": "i-1",
                    "title": "Backend interview",
                    "question_index": 0,
                    "question_count": 3,
                    "remaining_ms": 50_000,
                },
            }
        ],
    )


def test_hello_counts_overdue_questions_as_expired() -> None:
    shell = connect()
    shell.stored = started(3)
    now = T0 + CLOSES + 30_001  # question 1 began when question 0 closed

    shell.send({"type": "auth", "token": "candidate-token"}, now)

    [hello] = shell.take_sent()
    assert hello["active_session"]["question_index"] == 1
    assert hello["active_session"]["remaining_ms"] == 29_999


def test_hello_reports_no_session_when_every_question_is_overdue() -> None:
    shell = connect()
    shell.stored = started(2)

    shell.send({"type": "auth", "token": "candidate-token"}, T0 + 2 * CLOSES + 1)

    assert_sent(shell, [{"type": "hello", "active_session": None}])


def test_the_actor_is_unknown_before_authentication() -> None:
    assert connect().protocol.actor == "candidate:?"


# -- before attaching ------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        answer(0, "x", ref="r1"),
        draft(0, "x"),
        {"type": "signal", "kind": "paste"},
    ],
    ids=["answer", "draft", "signal"],
)
def test_answers_drafts_and_signals_before_attaching_get_not_attached(
    frame: Frame,
) -> None:
    shell = authenticated()

    shell.send(frame, T0 + 1)

    assert_sent(shell, [error("not_attached")])
    assert shell.take_effects() == []
    assert shell.close_code is None


def test_start_asks_the_shell_to_start_and_attaching_sends_state() -> None:
    shell = authenticated()

    shell.send({"type": "start", "interview_id": "i-1"}, T0 + 5)

    assert shell.take_effects() == [StartAttempt("i-1")]
    assert_sent(
        shell,
        [{"type": "state", "session_id": "s-1", "question_index": 0, "attempt": 1}],
    )
    assert shell.protocol.phase is Phase.ATTACHED


@pytest.mark.parametrize("takeover", [False, True])
def test_resume_asks_the_shell_to_attach_with_the_takeover_flag(
    takeover: bool,
) -> None:
    shell = authenticated()
    shell.stored = started(3)

    shell.send({"type": "resume", "takeover": takeover}, T0 + 5)

    assert shell.take_effects() == [AttachAttempt(takeover)]
    assert_sent(shell, [{"type": "state", "question_index": 0}])


def test_resume_passes_the_clients_lease_to_the_shell() -> None:
    shell = authenticated()
    shell.stored = started(3)

    shell.send({"type": "resume", "lease": "lease-s-1-7"}, T0 + 5)

    assert shell.take_effects() == [AttachAttempt(False, "lease-s-1-7")]
    assert_sent(shell, [{"type": "state", "lease": "lease-s-1-1"}])


def test_every_state_carries_the_lease_of_the_attach() -> None:
    shell = attached(stored=started(3))

    shell.send(answer(0, "a"), T0 + 1_000)
    shell.send({"type": "resume"}, T0 + 2_000)

    assert_sent(
        shell,
        [
            {"type": "answer_ack"},
            {"type": "state", "question_index": 1, "lease": "lease-s-1-1"},
            {"type": "state", "question_index": 1, "lease": "lease-s-1-1"},
        ],
    )


def test_attaching_again_replaces_the_lease() -> None:
    shell = attached(stored=started(3))

    shell.send({"type": "restart"}, T0 + 1_000)

    assert_sent(shell, [{"type": "state", "session_id": "s-2", "lease": "lease-s-2-2"}])
    assert shell.protocol.lease == "lease-s-2-2"


def test_restart_before_attaching_asks_to_restart_without_a_current_attempt() -> None:
    shell = authenticated()
    shell.stored = started(3)

    shell.send({"type": "restart"}, T0 + 5)

    assert shell.take_effects() == [RestartAttempt(None)]
    assert_sent(shell, [{"type": "state", "session_id": "s-2", "attempt": 2}])


@pytest.mark.parametrize(
    "code",
    [ErrorCode.NOT_FOUND, ErrorCode.ALREADY_IN_PROGRESS, ErrorCode.SESSION_LOCKED],
)
def test_a_refusal_is_sent_as_an_error_and_the_connection_stays_ready(
    code: ErrorCode,
) -> None:
    shell = authenticated()
    shell.refusal = (code, "refused")

    shell.send({"type": "start", "interview_id": "i-1"}, T0)

    assert_sent(shell, [error(code.value, message="refused")])
    assert shell.protocol.phase is Phase.READY
    assert shell.close_code is None


def test_a_not_available_refusal_says_when_the_interview_closed() -> None:
    shell = authenticated()

    shell.protocol.receive_refused(ErrorCode.NOT_AVAILABLE, "closed", closes_at=T0 - 9)
    shell.settle(T0)

    [sent] = shell.take_sent()
    assert sent == {
        "type": "error",
        "code": "not_available",
        "message": "closed",
        "closes_at": T0 - 9,
    }


def test_resume_with_nothing_in_progress_is_refused() -> None:
    shell = authenticated()

    shell.send({"type": "resume"}, T0)

    assert_sent(shell, [error("no_active_session")])


def test_attaching_a_completed_attempt_sends_completed_and_closes_1000() -> None:
    shell = authenticated()
    done = answered(started(1), "42", T0 + 1)

    shell.protocol.receive_attached(done, T0 + 2, lease="l")
    shell.settle(T0 + 2)

    assert_sent(shell, [{"type": "completed", "session_id": "s-1"}])
    assert shell.close_code == 1000


def test_attaching_before_authentication_is_an_invalid_state() -> None:
    with pytest.raises(InvalidState):
        connect().protocol.receive_attached(started(), T0, lease="l")


def test_attaching_after_close_is_an_invalid_state() -> None:
    shell = authenticated()
    shell.supersede(T0)

    with pytest.raises(InvalidState):
        shell.protocol.receive_attached(started(), T0, lease="l")


# -- ping, auth again, bad frames ------------------------------------------------------


@pytest.mark.parametrize("client_time", [123, 1.5])
@pytest.mark.parametrize("phase", ["ready", "attached"])
def test_ping_gets_pong_echoing_the_client_time(phase: str, client_time: float) -> None:
    shell = authenticated() if phase == "ready" else attached()

    shell.send({"type": "ping", "client_time": client_time}, T0 + 42)

    assert shell.take_sent() == [
        {"type": "pong", "client_time": client_time, "server_time": T0 + 42}
    ]


def test_auth_again_is_a_bad_frame() -> None:
    shell = attached()

    shell.send({"type": "auth", "token": "candidate-token"}, T0 + 1)

    assert_sent(shell, [error("bad_frame", message="already authenticated")])
    assert shell.take_effects() == []
    assert shell.close_code is None


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ('{"type": "answer", "question_index": "0", "answer": "x", "ref": 7}', 7),
        ('{"type": "launch", "ref": "r-1"}', "r-1"),
        ('{"answer": "x", "ref": "r-2"}', "r-2"),
    ],
    ids=["mistyped-field", "unknown-type", "no-type"],
)
def test_a_bad_frame_gets_bad_frame_with_its_ref_and_the_connection_stays_open(
    text: str, ref: str | int
) -> None:
    shell = attached()

    shell.send(text, T0 + 1)

    assert_sent(shell, [error("bad_frame", ref=ref)])
    assert shell.close_code is None
    assert shell.protocol.failure is not None
    shell.send({"type": "ping", "client_time": 1}, T0 + 2)
    assert_sent(shell, [{"type": "pong"}])


@pytest.mark.parametrize("text", ["[1, 2]", "not json", "", '"auth"'])
def test_text_that_is_not_a_json_object_is_a_bad_frame_without_ref(text: str) -> None:
    shell = authenticated()

    shell.send(text, T0 + 1)

    [sent] = shell.take_sent()
    assert sent["type"] == "error"
    assert sent["code"] == "bad_frame"
    assert "ref" not in sent


def test_a_binary_frame_after_authentication_is_a_bad_frame() -> None:
    shell = authenticated()

    shell.protocol.receive_binary(T0 + 1)
    shell.settle(T0 + 1)

    assert_sent(shell, [error("bad_frame")])
    assert shell.close_code is None


def test_too_many_bad_frames_close_4429() -> None:
    shell = authenticated(bad_frame_burst=20)

    for _ in range(20):
        shell.send("nonsense", T0 + 1)
    assert [frame["code"] for frame in shell.take_sent()] == ["bad_frame"] * 20
    assert shell.close_code is None

    shell.send("nonsense", T0 + 1)

    assert_sent(shell, [])
    assert shell.close_code == 4429


def test_bad_frames_now_and_then_never_close() -> None:
    shell = authenticated(bad_frame_burst=20, bad_frames_per_s=1.0)

    for second in range(100):
        shell.send("nonsense", T0 + second * 1000)

    assert shell.close_code is None
    assert len(shell.take_sent()) == 100


# -- rate limit ------------------------------------------------------------------------


def ping(shell: FakeShell, now: Millis) -> None:
    shell.send({"type": "ping", "client_time": 0}, now)


def test_a_burst_of_50_frames_passes_then_frames_are_rate_limited() -> None:
    shell = authenticated()  # the auth frame was the first of the 50

    for _ in range(49):
        ping(shell, T0)
    assert [frame["type"] for frame in shell.take_sent()] == ["pong"] * 49

    ping(shell, T0)
    ping(shell, T0)

    assert_sent(shell, [error("rate_limited"), error("rate_limited")])
    assert shell.close_code is None


def test_the_rate_limit_refills_at_20_frames_per_second() -> None:
    shell = authenticated()
    for _ in range(49):
        ping(shell, T0)
    shell.take_sent()

    ping(shell, T0 + 49)  # 0.98 of a token
    ping(shell, T0 + 50)  # one token

    assert_sent(shell, [error("rate_limited"), {"type": "pong"}])


def test_frames_before_authentication_count_against_the_rate_limit() -> None:
    shell = connect(rate_burst=1)
    shell.send({"type": "auth", "token": "candidate-token"}, T0)
    shell.take_sent()

    ping(shell, T0)

    assert_sent(shell, [error("rate_limited")])


def flood(shell: FakeShell, start: Millis, end: Millis) -> Millis | None:
    """Send a frame every 10 ms (100 a second) from ``start`` until ``end``;
    when the connection was closed, if it was."""
    for now in range(start, end, 10):
        ping(shell, now)
        if shell.close_code is not None:
            return now
    return None


def test_a_client_that_keeps_flooding_for_5_s_is_closed_4429() -> None:
    shell = authenticated()
    for _ in range(49):
        ping(shell, T0)
    shell.take_sent()
    ping(shell, T0)  # the first drop starts the spell

    closed_at = flood(shell, T0 + 10, T0 + 10_000)

    assert shell.close_code == 4429
    # 20 frames a second still pass, so the first drop at or after 5 s closes
    assert closed_at is not None and T0 + 5_000 <= closed_at <= T0 + 5_050
    assert {frame["type"] for frame in shell.take_sent()} == {"pong", "error"}
    ping(shell, closed_at + 10)
    assert_sent(shell, [])


def test_a_flooding_client_that_pauses_recovers() -> None:
    shell = authenticated()

    flood(shell, T0, T0 + 4500)
    # a pause of more than a second ends the spell and refills the bucket
    flood(shell, T0 + 6000, T0 + 10_500)
    flood(shell, T0 + 12_000, T0 + 16_500)

    assert shell.close_code is None
    sent = shell.take_sent()
    assert {"pong", "error"} == {frame["type"] for frame in sent}


# -- answers ---------------------------------------------------------------------------


def test_an_answer_too_long_gets_answer_too_long_with_its_ref_and_no_write() -> None:
    shell = attached(max_answer_chars=10)

    shell.send(answer(0, "x" * 11, ref="r-9"), T0 + 1)

    assert_sent(shell, [error("answer_too_long", ref="r-9")])
    assert shell.take_effects() == []
    assert shell.stored is not None and shell.stored.answers == ()


def test_an_answer_at_the_length_limit_is_accepted() -> None:
    shell = attached(max_answer_chars=10)

    shell.send(answer(0, "x" * 10, ref=1), T0 + 1)

    assert_sent(
        shell,
        [{"type": "answer_ack", "ref": 1}, {"type": "state", "question_index": 1}],
    )


def test_an_accepted_answer_is_committed_and_not_acknowledged_until_persisted() -> None:
    shell = attached()
    shell.hold_writes = True

    shell.send(answer(0, "O(n log n)", ref="a1"), T0 + 1_500)

    [commit] = commits(shell.take_effects())
    assert commit.change.before.question_index == 0
    assert [a.text for a in commit.change.answers] == ["O(n log n)"]
    assert [entry.kind for entry in commit.audit] == [AuditKind.ANSWER_ACCEPTED]
    assert commit.audit[0].actor == "candidate:c-1"
    assert_sent(shell, [])
    assert shell.protocol.busy

    shell.release_write(T0 + 1_600)

    assert_sent(
        shell,
        [
            {
                "type": "answer_ack",
                "ref": "a1",
                "question_index": 0,
                "status": "accepted",
                "time_taken_ms": 1_500,
            },
            {"type": "state", "question_index": 1, "draft": None},
        ],
    )
    assert not shell.protocol.busy


def test_input_while_a_write_is_in_flight_is_an_invalid_state() -> None:
    shell = attached()
    shell.hold_writes = True
    shell.send(answer(0, "x"), T0 + 1)

    with pytest.raises(InvalidState):
        shell.protocol.receive_text('{"type": "ping", "client_time": 1}', T0 + 2)


def test_reporting_a_write_that_is_not_in_flight_is_an_invalid_state() -> None:
    shell = attached()

    with pytest.raises(InvalidState):
        shell.protocol.receive_persisted(T0)
    with pytest.raises(InvalidState):
        shell.protocol.receive_conflict(shell.stored, T0)


def test_answering_every_question_walks_through_the_interview() -> None:
    shell = attached()

    shell.send(answer(0, "a"), T0 + 1_000)
    shell.send(answer(1, "b"), T0 + 3_000)
    assert_sent(
        shell,
        [
            {"type": "answer_ack", "question_index": 0, "time_taken_ms": 1_000},
            {"type": "state", "question_index": 1, "deadline": T0 + 1_000 + LIMIT_MS},
            {"type": "answer_ack", "question_index": 1, "time_taken_ms": 2_000},
            {"type": "state", "question_index": 2},
        ],
    )

    shell.send(answer(2, "c", ref="last"), T0 + 4_000)

    assert_sent(
        shell,
        [
            {"type": "answer_ack", "ref": "last", "status": "accepted"},
            {"type": "completed", "session_id": "s-1"},
        ],
    )
    assert shell.close_code == 1000
    assert shell.stored is not None and shell.stored.status is Status.COMPLETED
    assert [entry.kind for entry in shell.audit][-2:] == [
        AuditKind.ANSWER_ACCEPTED,
        AuditKind.COMPLETED,
    ]
    assert shell.audit[-1].at == T0 + 4_000


def test_an_answer_at_deadline_plus_grace_is_accepted() -> None:
    shell = attached()

    shell.send(answer(0, "just in time"), T0 + CLOSES)

    assert_sent(
        shell,
        [{"type": "answer_ack", "status": "accepted"}, {"type": "state"}],
    )


def test_a_resent_answer_is_acknowledged_as_duplicate_without_a_write() -> None:
    shell = attached()
    shell.send(answer(0, "same", ref="first"), T0 + 1_000)
    shell.take_sent()
    shell.take_effects()

    shell.send(answer(0, "same", ref="again"), T0 + 2_000)

    assert_sent(
        shell,
        [
            {
                "type": "answer_ack",
                "ref": "again",
                "question_index": 0,
                "status": "duplicate",
                "time_taken_ms": 1_000,
            }
        ],
    )
    assert shell.take_effects() == []


@pytest.mark.parametrize(
    ("index", "text"),
    [(2, "future"), (0, "different text"), (-1, "negative"), (99, "beyond")],
)
def test_an_answer_for_another_index_gets_invalid_question_index_then_state(
    index: int, text: str
) -> None:
    shell = attached()
    shell.send(answer(0, "recorded"), T0 + 1_000)
    shell.take_sent()
    shell.take_effects()

    shell.send(answer(index, text, ref="x"), T0 + 2_000)

    assert_sent(
        shell,
        [
            error("invalid_question_index", ref="x"),
            {"type": "state", "question_index": 1},
        ],
    )
    assert commits(shell.take_effects()) == []


def test_a_late_answer_gets_too_late_then_state_and_its_text_is_audited() -> None:
    shell = attached()
    shell.expire(T0 + CLOSES + 1)
    shell.take_sent()
    shell.take_effects()

    shell.send(answer(0, "my whole late answer", ref=5), T0 + CLOSES + 500)

    assert_sent(
        shell,
        [error("too_late", ref=5), {"type": "state", "question_index": 1}],
    )
    [record] = shell.take_effects()
    assert isinstance(record, RecordAudit)
    [entry] = record.entries
    assert entry.kind is AuditKind.LATE_ANSWER
    assert entry.data == {"question_index": 0, "text": "my whole late answer"}
    assert entry.at == T0 + CLOSES + 500


def test_an_overdue_answer_expires_its_question_then_gets_too_late_then_state() -> None:
    shell = attached()

    shell.send(answer(0, "too slow", ref="r"), T0 + CLOSES + 1)

    assert_sent(
        shell,
        [
            {"type": "time_expired", "question_index": 0, "had_draft": False},
            error("too_late", ref="r"),
            {"type": "state", "question_index": 1},
        ],
    )
    [commit] = commits(shell.take_effects())
    assert [entry.kind for entry in commit.audit] == [
        AuditKind.EXPIRED,
        AuditKind.LATE_ANSWER,
    ]
    assert commit.audit[1].data["text"] == "too slow"
    assert shell.stored is not None and shell.stored.question_index == 1


def test_an_overdue_answer_to_the_last_question_completes_the_interview() -> None:
    shell = attached(stored=started(1))

    shell.send(answer(0, "too slow"), T0 + CLOSES + 1)

    assert_sent(
        shell,
        [
            {"type": "time_expired", "question_index": 0},
            error("too_late"),
            {"type": "completed"},
        ],
    )
    assert shell.close_code == 1000


def test_a_failed_write_gets_internal_with_the_answer_ref_and_no_ack() -> None:
    shell = attached()
    shell.fail_next_write = True

    shell.send(answer(0, "lost?", ref="r-1"), T0 + 1_000)

    assert_sent(shell, [error("internal", ref="r-1")])
    assert not shell.protocol.busy
    assert shell.close_code is None
    # nothing changed: sending it again is accepted
    shell.send(answer(0, "lost?", ref="r-2"), T0 + 2_000)
    assert_sent(
        shell,
        [
            {"type": "answer_ack", "ref": "r-2", "status": "accepted"},
            {"type": "state", "question_index": 1},
        ],
    )


def test_a_failed_write_of_an_expiry_gets_internal_without_ref() -> None:
    shell = attached()
    shell.fail_next_write = True

    shell.expire(T0 + CLOSES + 1)

    [sent] = shell.take_sent()
    assert sent["code"] == "internal"
    assert "ref" not in sent


def test_a_failure_with_no_write_in_flight_still_gets_internal() -> None:
    shell = authenticated()

    shell.protocol.receive_write_failed("the server cannot do this now")
    shell.settle(T0)

    assert_sent(shell, [error("internal", message="the server cannot do this now")])


# -- drafts ----------------------------------------------------------------------------


def test_a_draft_is_stored_then_acknowledged() -> None:
    shell = attached()
    shell.hold_writes = True

    shell.send(draft(0, "def f(): ..."), T0 + 3_000)

    assert shell.take_effects() == [
        StoreDraft(Draft(question_index=0, text="def f(): ...", saved_at=T0 + 3_000))
    ]
    assert_sent(shell, [])

    shell.release_write(T0 + 3_010)

    assert shell.take_sent() == [
        {"type": "draft_ack", "question_index": 0, "saved_at": T0 + 3_000}
    ]
    assert shell.stored is not None and shell.stored.draft is not None


def test_a_resumed_connection_gets_the_saved_draft_in_state() -> None:
    shell = attached()
    shell.send(draft(0, "half done"), T0 + 3_000)
    shell.take_sent()

    shell.send({"type": "resume"}, T0 + 4_000)

    assert_sent(shell, [{"type": "state", "question_index": 0, "draft": "half done"}])


def test_a_draft_too_long_gets_answer_too_long_and_no_write() -> None:
    shell = attached(max_answer_chars=10)

    shell.send(draft(0, "x" * 11), T0 + 1)

    assert_sent(shell, [error("answer_too_long")])
    assert shell.take_effects() == []


def test_a_draft_for_an_expired_question_gets_too_late_then_state() -> None:
    shell = attached()
    shell.expire(T0 + CLOSES + 1)
    shell.take_sent()
    shell.take_effects()

    shell.send(draft(0, "late"), T0 + CLOSES + 2)

    assert_sent(shell, [error("too_late"), {"type": "state", "question_index": 1}])
    assert shell.take_effects() == []


@pytest.mark.parametrize("index", [1, 7])
def test_a_draft_for_another_question_gets_invalid_question_index_then_state(
    index: int,
) -> None:
    shell = attached()

    shell.send(draft(index, "early"), T0 + 1)

    assert_sent(
        shell,
        [error("invalid_question_index"), {"type": "state", "question_index": 0}],
    )
    assert shell.take_effects() == []


def test_a_draft_for_an_overdue_question_expires_it_then_gets_too_late() -> None:
    shell = attached()

    shell.send(draft(0, "late"), T0 + CLOSES + 1)

    assert_sent(
        shell,
        [
            {"type": "time_expired", "question_index": 0},
            error("too_late"),
            {"type": "state", "question_index": 1},
        ],
    )
    assert len(commits(shell.take_effects())) == 1


def test_a_draft_for_the_question_an_expiry_made_current_is_saved_after_it() -> None:
    shell = attached()

    shell.send(draft(1, "next one"), T0 + CLOSES + 1)

    assert_sent(
        shell,
        [
            {"type": "time_expired", "question_index": 0},
            {"type": "state", "question_index": 1},
            {"type": "draft_ack", "question_index": 1, "saved_at": T0 + CLOSES + 1},
        ],
    )
    effects = shell.take_effects()
    assert [type(effect) for effect in effects] == [Commit, StoreDraft]
    assert shell.stored is not None and shell.stored.draft is not None
    assert shell.stored.draft.text == "next one"


def test_a_failed_draft_write_gets_internal_without_ref() -> None:
    shell = attached()
    shell.fail_next_write = True

    shell.send(draft(0, "x"), T0 + 1)

    [sent] = shell.take_sent()
    assert sent["code"] == "internal"
    assert "ref" not in sent


# -- expiry ----------------------------------------------------------------------------


def test_expire_before_the_question_closes_does_nothing() -> None:
    shell = attached()

    shell.expire(T0 + CLOSES)

    assert_sent(shell, [])
    assert shell.take_effects() == []


def test_expiry_commits_then_sends_time_expired_then_state() -> None:
    shell = attached()
    shell.hold_writes = True

    shell.expire(T0 + CLOSES + 1)

    [commit] = commits(shell.take_effects())
    [expired] = commit.change.answers
    assert expired.time_expired
    assert [(entry.kind, entry.actor) for entry in commit.audit] == [
        (AuditKind.EXPIRED, "server")
    ]
    assert_sent(shell, [])

    shell.release_write(T0 + CLOSES + 1)

    assert_sent(
        shell,
        [
            {"type": "time_expired", "question_index": 0, "auto_submitted": True},
            {"type": "state", "question_index": 1, "deadline": T0 + CLOSES + LIMIT_MS},
        ],
    )


def test_expiry_with_a_saved_draft_says_it_had_a_draft() -> None:
    shell = attached()
    shell.send(draft(0, "typed so far"), T0 + 1_000)
    shell.take_sent()

    shell.expire(T0 + CLOSES + 1)

    assert_sent(
        shell,
        [
            {"type": "time_expired", "question_index": 0, "had_draft": True},
            {"type": "state", "question_index": 1, "draft": None},
        ],
    )
    assert shell.stored is not None
    assert shell.stored.answers[0].text == "typed so far"


def test_expiry_of_the_last_question_sends_time_expired_completed_and_close_1000() -> (
    None
):
    shell = attached(stored=started(1))

    shell.expire(T0 + CLOSES + 1)

    assert_sent(
        shell,
        [
            {"type": "time_expired", "question_index": 0},
            {"type": "completed", "session_id": "s-1"},
        ],
    )
    assert shell.close_code == 1000
    [commit] = commits(shell.take_effects())
    assert [entry.kind for entry in commit.audit] == [
        AuditKind.EXPIRED,
        AuditKind.COMPLETED,
    ]


def test_a_long_absence_expires_the_following_questions_in_turn() -> None:
    shell = attached()

    shell.expire(T0 + 2 * CLOSES + 1)

    assert_sent(
        shell,
        [
            {"type": "time_expired", "question_index": 0},
            {"type": "time_expired", "question_index": 1},
            {"type": "state", "question_index": 2},
        ],
    )


def test_expire_when_not_attached_does_nothing() -> None:
    shell = authenticated()

    shell.expire(T0 + 10 * CLOSES)

    assert_sent(shell, [])
    assert shell.take_effects() == []


def test_expire_while_a_write_is_in_flight_waits() -> None:
    shell = attached()
    shell.hold_writes = True
    shell.send(draft(0, "x"), T0 + 1)
    shell.take_effects()

    shell.expire(T0 + CLOSES + 1)

    assert shell.take_effects() == []


# -- races with other writers ----------------------------------------------------------


def sweep(shell: FakeShell, now: Millis) -> None:
    """The sweeper (or another instance) expires what is due in storage."""
    assert shell.stored is not None
    shell.stored, _ = expire_due(shell.stored, now)


@pytest.mark.parametrize("late_by", [0, 2], ids=["in-time-here", "overdue-here"])
def test_a_conflict_with_the_sweeper_redecides_the_answer_as_too_late(
    late_by: Millis,
) -> None:
    shell = attached()
    sweep(shell, T0 + CLOSES + 1)  # another instance, its clock a little ahead

    shell.send(answer(0, "racing", ref="r"), T0 + CLOSES + late_by)

    sent = shell.take_sent()
    assert [frame["type"] for frame in sent].count("time_expired") == 1
    assert [(frame["type"], frame.get("code")) for frame in sent] == [
        ("time_expired", None),
        ("state", None),
        ("error", "too_late"),
        ("state", None),
    ]
    assert sent[2]["ref"] == "r"
    late = [entry for entry in shell.audit if entry.kind is AuditKind.LATE_ANSWER]
    assert [entry.data["text"] for entry in late] == ["racing"]
    assert shell.protocol.attempt == shell.stored


@pytest.mark.parametrize("late_by", [0, 2], ids=["in-time-here", "overdue-here"])
def test_a_conflict_where_the_sweeper_completed_the_attempt_keeps_the_answer(
    late_by: Millis,
) -> None:
    shell = attached(stored=started(1))
    sweep(shell, T0 + CLOSES + 1)

    shell.send(answer(0, "racing"), T0 + CLOSES + late_by)

    assert_sent(shell, [{"type": "time_expired"}, {"type": "completed"}])
    assert shell.close_code == 1000
    late = [entry for entry in shell.audit if entry.kind is AuditKind.LATE_ANSWER]
    assert [entry.data for entry in late] == [{"question_index": 0, "text": "racing"}]


def test_a_conflict_on_a_draft_where_the_sweeper_completed_the_attempt() -> None:
    shell = attached(stored=started(1))
    sweep(shell, T0 + CLOSES + 1)

    shell.send(draft(0, "racing"), T0 + CLOSES)

    assert_sent(shell, [{"type": "time_expired"}, {"type": "completed"}])
    assert shell.close_code == 1000
    assert [e for e in shell.take_effects() if isinstance(e, RecordAudit)] == []


def test_a_conflict_on_an_expiry_reports_the_other_writers_expiry_once() -> None:
    shell = attached()
    sweep(shell, T0 + CLOSES + 1)

    shell.expire(T0 + CLOSES + 1)

    assert_sent(
        shell,
        [
            {"type": "time_expired", "question_index": 0},
            {"type": "state", "question_index": 1},
        ],
    )


def test_a_conflict_on_a_draft_whose_question_expired_gets_too_late() -> None:
    shell = attached()
    sweep(shell, T0 + CLOSES + 1)  # another instance, its clock a little ahead

    shell.send(draft(0, "racing"), T0 + CLOSES)

    assert_sent(
        shell,
        [
            {"type": "time_expired", "question_index": 0},
            {"type": "state", "question_index": 1},
            error("too_late"),
            {"type": "state", "question_index": 1},
        ],
    )


def test_a_conflict_with_an_abandoned_attempt_detaches_without_redeciding() -> None:
    shell = attached()
    assert shell.stored is not None
    shell.stored = abandon(shell.stored)

    shell.send(answer(0, "racing"), T0 + 1)

    assert_sent(shell, [{"type": "state", "status": "abandoned", "question": None}])
    assert shell.protocol.phase is Phase.READY
    assert shell.protocol.attempt is None
    assert commits(shell.take_effects()) != []
    assert shell.close_code is None


# -- changes made elsewhere ------------------------------------------------------------


def test_new_expiries_made_elsewhere_send_time_expired_then_state() -> None:
    shell = attached()
    sweep(shell, T0 + CLOSES + 1)

    shell.changed(T0 + CLOSES + 5)

    assert_sent(
        shell,
        [
            {"type": "time_expired", "question_index": 0, "had_draft": False},
            {"type": "state", "question_index": 1, "server_time": T0 + CLOSES + 5},
        ],
    )
    assert shell.protocol.attempt == shell.stored


def test_an_answer_accepted_elsewhere_sends_only_state() -> None:
    shell = attached()
    assert shell.stored is not None
    shell.stored = answered(shell.stored, "from another tab", T0 + 10)

    shell.changed(T0 + 20)

    assert_sent(shell, [{"type": "state", "question_index": 1}])


def test_a_completion_made_elsewhere_sends_completed_and_closes_1000() -> None:
    shell = attached(stored=started(1))
    sweep(shell, T0 + CLOSES + 1)

    shell.changed(T0 + CLOSES + 5)

    assert_sent(shell, [{"type": "time_expired"}, {"type": "completed"}])
    assert shell.close_code == 1000


def test_a_change_with_nothing_new_sends_nothing() -> None:
    shell = attached()

    shell.changed(T0 + 5)

    assert_sent(shell, [])


@pytest.mark.parametrize("fresh", [None, started(3, session="other")])
def test_a_change_to_nothing_or_another_session_is_ignored(
    fresh: Attempt | None,
) -> None:
    shell = attached()
    before = shell.protocol.attempt

    shell.protocol.receive_changed(fresh, T0 + 5)

    assert shell.protocol.messages_to_send() == []
    assert shell.protocol.attempt is before


def test_an_abandonment_elsewhere_detaches_and_sends_state() -> None:
    shell = attached()
    assert shell.stored is not None
    shell.stored = abandon(shell.stored)

    shell.changed(T0 + 5)

    assert_sent(shell, [{"type": "state", "status": "abandoned", "remaining_ms": 0}])
    assert shell.protocol.phase is Phase.READY
    shell.send(answer(0, "x"), T0 + 6)
    assert_sent(shell, [error("not_attached")])


def test_news_of_a_change_when_not_attached_is_ignored() -> None:
    shell = authenticated()

    shell.protocol.receive_changed(started(), T0)

    assert shell.protocol.messages_to_send() == []
    assert shell.protocol.phase is Phase.READY


def test_a_conflict_whose_attempt_vanished_closes_with_an_internal_error() -> None:
    shell = attached()
    shell.protocol.receive_text(json.dumps(answer(0, "b")), T0 + 1)
    assert shell.protocol.busy

    shell.protocol.receive_conflict(None, T0 + 1)

    sent = [json.loads(text) for text in shell.protocol.messages_to_send()]
    assert [frame["type"] for frame in sent] == ["error"]
    assert sent[0]["code"] == "internal"
    assert shell.protocol.close_code == 1000


# -- supersede and shutdown ------------------------------------------------------------


def test_superseded_then_close_4409_and_later_frames_change_nothing() -> None:
    shell = attached()

    shell.supersede(T0 + 1)

    assert shell.take_sent() == [{"type": "superseded", "reason": "taken_over"}]
    assert shell.close_code == 4409
    shell.send(answer(0, "from the old tab"), T0 + 2)
    shell.expire(T0 + 10 * CLOSES)
    shell.supersede(T0 + 3)
    shell.protocol.receive_timeout(T0 + 60_000)
    assert_sent(shell, [])
    assert shell.take_effects() == []
    assert shell.close_code == 4409
    shell.wake(T0 + 4)
    assert_sent(shell, [])
    assert shell.protocol.next_wakeup(T0 + 4) is None
    assert shell.stored is not None and shell.stored.answers == ()


def test_shutdown_closes_the_machine_and_later_frames_change_nothing() -> None:
    shell = attached()

    shell.protocol.receive_shutdown()
    shell.send(answer(0, "x"), T0 + 1)

    assert shell.protocol.phase is Phase.CLOSED
    assert_sent(shell, [])
    assert shell.take_effects() == []


# -- while attached --------------------------------------------------------------------


def test_start_while_attached_gets_already_in_progress() -> None:
    shell = attached()

    shell.send({"type": "start", "interview_id": "i-2"}, T0 + 1)

    assert_sent(shell, [error("already_in_progress")])
    assert shell.take_effects() == []


def test_a_refused_restart_leaves_the_attempt_attached() -> None:
    shell = attached()
    shell.refusal = (ErrorCode.ATTEMPTS_EXHAUSTED, "no attempts left")

    shell.send({"type": "restart"}, T0 + 1)

    assert_sent(shell, [error("attempts_exhausted")])
    assert shell.protocol.phase is Phase.ATTACHED
    shell.send(answer(0, "still here"), T0 + 2)
    assert_sent(shell, [{"type": "answer_ack"}, {"type": "state"}])


def test_resume_while_attached_sends_state_again() -> None:
    shell = attached()

    shell.send({"type": "resume"}, T0 + 1_000)

    assert_sent(
        shell,
        [{"type": "state", "question_index": 0, "remaining_ms": LIMIT_MS - 1_000}],
    )
    assert shell.take_effects() == []


def test_restart_while_attached_asks_to_restart_the_attached_attempt() -> None:
    shell = attached()
    current = shell.protocol.attempt

    shell.send({"type": "restart"}, T0 + 1_000)

    assert shell.take_effects() == [RestartAttempt(current)]
    assert_sent(shell, [{"type": "state", "session_id": "s-2", "attempt": 2}])


def test_a_signal_while_attached_is_audited_and_not_answered() -> None:
    shell = attached()

    shell.send({"type": "signal", "kind": "paste", "detail": "412 chars"}, T0 + 9)

    assert_sent(shell, [])
    [record] = shell.take_effects()
    assert record == RecordAudit(
        (
            AuditEntry(
                at=T0 + 9,
                actor="candidate:c-1",
                kind=AuditKind.SIGNAL,
                data={"signal": "paste", "detail": "412 chars"},
            ),
        )
    )


def signal(kind: str, detail: str | None = None) -> Frame:
    return {"type": "signal", "kind": kind, "detail": detail}


def stored_signals(shell: FakeShell) -> list[dict[str, object]]:
    return [
        dict(entry.data)
        for effect in shell.take_effects()
        if isinstance(effect, RecordAudit)
        for entry in effect.entries
        if entry.kind is AuditKind.SIGNAL
    ]


def test_signals_beyond_their_burst_are_counted_without_an_error_frame() -> None:
    shell = attached()
    kinds = ["focus_lost", "focus_returned"]

    for index in range(48):  # with auth and start: the frame limit's burst of 50
        shell.send(signal(kinds[index % 2]), T0 + 1)

    assert_sent(shell, [])
    assert len(stored_signals(shell)) == 20
    shell.send(signal("copy"), T0 + 5_001)
    assert stored_signals(shell) == [
        {
            "signal": "copy",
            "detail": None,
            "unrecorded": {"focus_lost": 14, "focus_returned": 14},
        }
    ]
    assert shell.protocol.take_unrecorded_signals() == {}


def test_identical_consecutive_signals_are_coalesced_into_a_count() -> None:
    shell = attached()

    for _ in range(5):
        shell.send(signal("paste", "412 chars"), T0 + 1)
    shell.send(signal("focus_lost"), T0 + 2)

    assert stored_signals(shell) == [
        {"signal": "paste", "detail": "412 chars"},
        {"signal": "focus_lost", "detail": None, "unrecorded": {"paste": 4}},
    ]


def test_signals_counted_since_the_last_stored_one_are_handed_to_the_shell() -> None:
    shell = attached()
    shell.send(signal("paste"), T0 + 1)
    shell.send(signal("paste"), T0 + 2)

    assert shell.protocol.take_unrecorded_signals() == {"paste": 1}
    assert shell.protocol.take_unrecorded_signals() == {}


def ticks(shell: FakeShell, now: Millis) -> list[str]:
    """What the timer firing at ``now`` queues (without the fake shell's parsing)."""
    shell.protocol.receive_timer(now)
    return shell.protocol.messages_to_send()


def test_the_timer_queues_the_exact_tick_frame_when_attached() -> None:
    shell = attached()

    assert ticks(shell, T0 + 1_000) == [
        '{"type":"tick","question_index":0,"deadline":1700000060000,'
        '"remaining_ms":59000,"server_time":1700000001000}'
    ]
    assert shell.protocol.effects() == []


def test_a_tick_never_reports_negative_remaining_time() -> None:
    shell = attached()

    [text] = ticks(shell, T0 + LIMIT_MS + 1_500)  # in the grace period

    assert json.loads(text)["remaining_ms"] == 0


def test_there_is_no_tick_while_an_answer_is_being_stored() -> None:
    shell = attached()
    shell.protocol.receive_text(json.dumps(answer(0, "b")), T0 + 1_000)
    assert shell.protocol.busy

    assert ticks(shell, T0 + 1_500) == []
    shell.protocol.receive_persisted(T0 + 1_000)
    shell.protocol.messages_to_send()
    [text] = ticks(shell, T0 + 2_000)
    assert json.loads(text)["question_index"] == 1


def test_there_is_no_tick_before_attaching() -> None:
    assert ticks(connect(), T0) == []
    assert ticks(authenticated(), T0) == []


def test_the_timer_after_the_question_closed_expires_it_instead_of_ticking() -> None:
    shell = attached()
    assert not shell.protocol.expiry_due(T0 + CLOSES)
    assert shell.protocol.expiry_due(T0 + CLOSES + 1)

    shell.wake(T0 + CLOSES + 1)

    assert_sent(
        shell,
        [
            {"type": "time_expired", "question_index": 0},
            {"type": "state", "question_index": 1},
        ],
    )
    assert len(commits(shell.take_effects())) == 1
    assert not shell.protocol.expiry_due(T0 + CLOSES + 1)


def test_no_expiry_is_due_unless_attached_to_an_attempt_in_progress() -> None:
    assert not authenticated().protocol.expiry_due(T0 + 10 * CLOSES)
    shell = attached(stored=started(1))
    shell.send(answer(0, "done"), T0 + 1)
    assert not shell.protocol.expiry_due(T0 + 10 * CLOSES)


def test_the_next_wakeup_is_the_next_tick_aligned_to_the_deadline() -> None:
    shell = attached()  # deadline T0 + 60 s, ticks every second

    assert shell.protocol.next_wakeup(T0) == T0 + 1_000
    assert shell.protocol.next_wakeup(T0 + 1_000) == T0 + 2_000
    assert shell.protocol.next_wakeup(T0 + 1_250) == T0 + 2_000
    shell.send(answer(0, "a"), T0 + 5_250)  # the next deadline is T0 + 65.25 s
    assert shell.protocol.next_wakeup(T0 + 5_250) == T0 + 6_250


def test_ticks_follow_the_tick_interval_of_the_connection() -> None:
    shell = attached(tick_interval_ms=250)

    assert shell.protocol.next_wakeup(T0 + 10) == T0 + 250


def test_the_next_wakeup_is_one_ms_after_the_question_closes_once_ticks_pass_it() -> (
    None
):
    shell = attached()

    # past the deadline ticks go on through the grace, then the expiry comes first
    assert shell.protocol.next_wakeup(T0 + LIMIT_MS + 1_000) == T0 + CLOSES
    assert shell.protocol.next_wakeup(T0 + CLOSES) == T0 + CLOSES + 1
    shell.send(answer(0, "a"), T0 + 5_000)
    assert shell.protocol.next_wakeup(T0 + 5_000 + CLOSES) == (T0 + 5_000 + CLOSES + 1)


def test_there_is_no_wakeup_before_attaching_or_after_completion() -> None:
    assert connect().protocol.next_wakeup(T0) is None
    assert authenticated().protocol.next_wakeup(T0) is None
    shell = attached(stored=started(1))
    shell.send(answer(0, "done"), T0 + 1)
    assert shell.close_code == 1000
    assert shell.protocol.next_wakeup(T0 + 1) is None


# -- robustness ------------------------------------------------------------------------

_fields = st.dictionaries(
    st.sampled_from(
        ["question_index", "answer", "ref", "interview_id", "takeover", "kind"]
    ),
    st.one_of(
        st.integers(-2, 4),
        st.text(max_size=5),
        st.booleans(),
        st.none(),
        st.sampled_from(["paste", "i-1"]),
    ),
)
_client_frames = st.builds(
    lambda kind, fields: json.dumps({"type": kind, **fields}),
    st.sampled_from(
        ["start", "resume", "restart", "answer", "draft", "ping", "signal", "auth"]
    ),
    _fields,
)


@settings(max_examples=60, deadline=None)
@given(
    texts=st.lists(st.one_of(_client_frames, st.text(max_size=10)), max_size=15),
    step=st.integers(0, 20_000),
)
def test_no_sequence_of_client_frames_breaks_the_machine(
    texts: list[str], step: int
) -> None:
    shell = attached()
    now = T0
    for text in texts:
        now += step
        shell.send(text, now)
        shell.expire(now)
        assert not shell.protocol.busy
        attempt = shell.protocol.attempt
        if attempt is not None and shell.protocol.phase is Phase.ATTACHED:
            # the machine only ever shows what storage holds
            assert attempt == shell.stored
    for frame in shell.take_sent():
        assert frame["type"] in {
            "state",
            "answer_ack",
            "draft_ack",
            "time_expired",
            "completed",
            "pong",
            "error",
        }

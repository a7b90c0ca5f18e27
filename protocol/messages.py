"""Wire frames of protocol v1 (PROTOCOL.md) and their conversion from and to JSON.

Every frame is a pydantic model, so that parsing, serialising and the published JSON
Schema (:mod:`protocol.schema`) come from one definition. Client frames are parsed
strictly (``"1"`` is not a question index); unknown fields are ignored so that clients
may add optional ones. JSON is turned into typed objects here and nowhere else.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
)
from pydantic_core import from_json

from protocol.errors import ErrorCode, InvalidMessage

PROTOCOL_VERSION = 1
F = TypeVar("F")


class Frame(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


# -- client -> server ---------------------------------------------------------------


class Auth(Frame):
    """Authenticate with a JWT; must be the first frame, within 10 s."""

    type: Literal["auth"] = "auth"
    token: StrictStr


class Start(Frame):
    """Start a new attempt of ``interview_id``."""

    type: Literal["start"] = "start"
    interview_id: StrictStr


class Resume(Frame):
    """Attach to the caller's in-progress attempt, optionally taking it over; with
    the ``lease`` of its last ``state``, at once if nobody attached since."""

    type: Literal["resume"] = "resume"
    takeover: StrictBool = False
    lease: StrictStr | None = None


class Restart(Frame):
    """Start Over: abandon the attempt in progress and start a new one."""

    type: Literal["restart"] = "restart"


class SubmitAnswer(Frame):
    """Submit the answer to the current question."""

    type: Literal["answer"] = "answer"
    question_index: StrictInt
    answer: StrictStr
    ref: StrictStr | StrictInt | None = None


class SaveDraft(Frame):
    """Autosave the text typed so far (latest wins)."""

    type: Literal["draft"] = "draft"
    question_index: StrictInt
    answer: StrictStr


class Ping(Frame):
    """Clock sync; answered with ``pong``."""

    type: Literal["ping"] = "ping"
    # Strict and finite: "123" or true is a mistyped field, and NaN could not be
    # echoed back in ``pong`` as JSON.
    client_time: StrictInt | Annotated[StrictFloat, Field(allow_inf_nan=False)]


SignalKind = Literal["focus_lost", "focus_returned", "paste", "copy", "fullscreen_exit"]


class Signal(Frame):
    """An integrity signal from the page: recorded, never blocking."""

    type: Literal["signal"] = "signal"
    kind: SignalKind
    detail: Annotated[StrictStr, Field(max_length=1000)] | None = None


ClientFrame = Annotated[
    Auth | Start | Resume | Restart | SubmitAnswer | SaveDraft | Ping | Signal,
    Field(discriminator="type"),
]
CLIENT_FRAME_TYPES = (
    "auth",
    "start",
    "resume",
    "restart",
    "answer",
    "draft",
    "ping",
    "signal",
)
_client_frame: TypeAdapter[ClientFrame] = TypeAdapter(ClientFrame)
_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


# -- client -> server on the monitor socket (PROTOCOL.md section 2) ------------------


class Subscribe(Frame):
    """Watch ``interview_id``: a ``snapshot``, then every ``event`` in cursor order;
    with ``since`` (the last cursor seen), the events after it first."""

    type: Literal["subscribe"] = "subscribe"
    interview_id: StrictStr
    since: Annotated[StrictInt, Field(ge=0)] | None = None


class Unsubscribe(Frame):
    """Stop the events of ``interview_id``."""

    type: Literal["unsubscribe"] = "unsubscribe"
    interview_id: StrictStr


MonitorClientFrame = Annotated[
    Auth | Subscribe | Unsubscribe | Ping, Field(discriminator="type")
]
MONITOR_FRAME_TYPES = ("auth", "subscribe", "unsubscribe", "ping")
_monitor_frame: TypeAdapter[MonitorClientFrame] = TypeAdapter(MonitorClientFrame)


def parse_client_message(text: str) -> ClientFrame:
    """Turn one text frame into a typed client frame.

    Raises:
        InvalidMessage: not JSON (or nested over 200 levels, or with a lone
            surrogate), not an object, a NUL character, no or unknown ``type``, or a
            missing or mistyped field; ``ref`` is kept when the frame had a usable
            one.
    """
    return _parse(text, _client_frame, CLIENT_FRAME_TYPES)


def parse_monitor_message(text: str) -> MonitorClientFrame:
    """Turn one text frame of the monitor socket into a typed frame; raises
    :class:`InvalidMessage` as :func:`parse_client_message` does."""
    return _parse(text, _monitor_frame, MONITOR_FRAME_TYPES)


def _parse(text: str, adapter: TypeAdapter[F], types: tuple[str, ...]) -> F:
    # pydantic's parser, not json.loads: it refuses lone surrogates ("\ud800"), which
    # no database driver can encode, and stops at 200 levels of nesting with an error
    # where json.loads raises RecursionError.
    try:
        data = from_json(text)
    except ValueError as exc:
        got = "too deeply nested" if "recursion limit" in str(exc) else "invalid"
        raise InvalidMessage(f"expected a JSON object, got {got} JSON") from exc
    if not isinstance(data, dict):
        raise InvalidMessage(f"expected a JSON object, got {type(data).__name__}")
    ref = _usable_ref(data.get("ref"))
    if _NUL.search(text):  # PostgreSQL text cannot hold NUL
        raise InvalidMessage("expected JSON without NUL characters (\\u0000)", ref=ref)
    kind = data.get("type")
    if kind not in types:
        got = "no type" if kind is None else f"type {str(kind)[:40]!r}"
        raise InvalidMessage(f"expected one of {', '.join(types)}, got {got}", ref=ref)
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        raise InvalidMessage(_describe(exc), ref=ref) from exc


def _usable_ref(ref: object) -> str | int | None:
    if isinstance(ref, bool) or not isinstance(ref, str | int):
        return None
    return ref


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors()[:3]:
        path = ".".join(str(part) for part in error["loc"][1:]) or "frame"
        problems.append(f"{path}: {error['msg'].lower()}")
    return "; ".join(problems)


# -- server -> client ---------------------------------------------------------------


class User(Frame):
    id: str
    name: str
    role: str


class ActiveSession(Frame):
    session_id: str
    interview_id: str
    title: str
    question_index: int
    question_count: int
    remaining_ms: int


class Hello(Frame):
    type: Literal["hello"] = "hello"
    protocol: int = PROTOCOL_VERSION
    user: User
    server_time: int
    tick_interval_ms: int
    active_session: ActiveSession | None


class OptionOut(Frame):
    id: str
    text: str


class QuestionOut(Frame):
    """The current question; never a key, a sample solution, keywords or tests."""

    index: int
    type: Literal["mcq", "short_answer", "code"]
    text: str
    options: list[OptionOut] | None
    language: str | None
    points: float
    difficulty: str
    time_limit_s: int


class InterviewRef(Frame):
    id: str
    title: str


class State(Frame):
    type: Literal["state"] = "state"
    session_id: str
    interview: InterviewRef
    status: Literal["in_progress", "completed", "evaluated", "abandoned"]
    question_index: int
    question_count: int
    question: QuestionOut | None
    deadline: int | None
    remaining_ms: int
    server_time: int
    draft: str | None
    attempt: int
    lease: str
    """Opaque; names this attachment (``resume{lease}`` re-attaches with it)."""


class Tick(Frame):
    type: Literal["tick"] = "tick"
    question_index: int
    deadline: int
    remaining_ms: int
    server_time: int


class AnswerAck(Frame):
    type: Literal["answer_ack"] = "answer_ack"
    ref: str | int | None
    question_index: int
    status: Literal["accepted", "duplicate"]
    time_taken_ms: int


class DraftAck(Frame):
    type: Literal["draft_ack"] = "draft_ack"
    question_index: int
    saved_at: int


class TimeExpired(Frame):
    type: Literal["time_expired"] = "time_expired"
    question_index: int
    auto_submitted: Literal[True] = True
    had_draft: bool


class Completed(Frame):
    type: Literal["completed"] = "completed"
    session_id: str
    message: str


class Pong(Frame):
    type: Literal["pong"] = "pong"
    client_time: int | float
    server_time: int


class Superseded(Frame):
    type: Literal["superseded"] = "superseded"
    reason: Literal["taken_over"] = "taken_over"


class Error(Frame):
    type: Literal["error"] = "error"
    code: ErrorCode
    message: str
    ref: str | int | None = None
    opens_at: int | None = None
    """``not_available`` only: when the interview opens (epoch ms)."""
    closes_at: int | None = None
    """``not_available`` only: when it closed (epoch ms); an archived interview
    closed when it was archived."""


# -- server -> client on the monitor socket -------------------------------------------


class CandidateOut(Frame):
    id: str
    name: str


class MonitorSession(Frame):
    """One attempt of the interview as the server sees it when the snapshot is sent:
    ``remaining_ms`` of the current question (``null`` unless in progress) and
    ``connected`` (a live connection holds the attempt) are computed then."""

    session_id: str
    candidate: CandidateOut
    status: Literal["in_progress", "completed", "evaluated", "abandoned"]
    question_index: int
    question_count: int
    connected: bool
    remaining_ms: int | None
    score: float | None
    max_score: float
    recommendation: Literal["strong_hire", "hire", "maybe", "no_hire"] | None
    flags: list[str]
    """Integrity flags: the signal kinds recorded (``focus_lost``, ``paste`` …),
    ``late_answer``, ``taken_over``; sorted, each once."""


class Snapshot(Frame):
    """The interview's attempts now. ``cursor`` is where the events that follow
    begin: every ``event`` after it has a greater cursor, with none missing. When
    ``recovered`` it is the ``since`` of the subscription and the events after it
    are replayed first; otherwise it is the newest cursor."""

    type: Literal["snapshot"] = "snapshot"
    interview_id: str
    cursor: int
    recovered: bool
    sessions: list[MonitorSession]


EventKindName = Literal[
    "started",
    "connected",
    "disconnected",
    "question_started",
    "answer_submitted",
    "time_expired",
    "signal",
    "taken_over",
    "abandoned",
    "completed",
    "answer_evaluated",
    "evaluated",
    "score_overridden",
    "accommodation_changed",
]


class EventOut(Frame):
    """News of one attempt; ``data`` per kind is in ``monitor_event_data`` of the
    published schema."""

    type: Literal["event"] = "event"
    interview_id: str
    cursor: int
    session_id: str
    kind: EventKindName
    at: int
    data: dict[str, Any]


MonitorServerFrame = Annotated[
    Hello | Snapshot | EventOut | Pong | Error, Field(discriminator="type")
]


# The ``data`` of each event kind (documentation and tests; the server sends dicts).


class StartedData(Frame):
    attempt: int


class ConnectedData(Frame):
    lease: bool = False
    """A client re-attached with its lease (PROTOCOL.md 1, ``resume``)."""


class DisconnectedData(Frame):
    close_code: int | None


class QuestionStartedData(Frame):
    question_index: int
    question_count: int
    deadline: int
    time_limit_s: int


class AnswerSubmittedData(Frame):
    question_index: int
    time_taken_ms: int


class TimeExpiredData(Frame):
    question_index: int
    had_draft: bool


class SignalData(Frame):
    kind: SignalKind
    detail: str | None


class NoData(Frame):
    pass


class AbandonedData(Frame):
    next: int
    """The number of the attempt that replaced it."""


class AnswerEvaluatedData(Frame):
    question_index: int
    status: Literal["evaluated", "needs_review"]
    score: float | None = None
    max_score: float | None = None
    provisional: bool = False
    reason: str | None = None


class EvaluatedData(Frame):
    final_score: float
    max_score: float
    percentage: float
    recommendation: Literal["strong_hire", "hire", "maybe", "no_hire"]


class ScoreOverriddenData(Frame):
    question_index: int
    score: float
    previous: float | None
    by: str


class AccommodationChangedData(Frame):
    """Extra time, attempts or availability changed for the attempt's candidate."""

    candidate_id: str
    changes: dict[str, Any]


EVENT_DATA: dict[str, type[Frame]] = {
    "started": StartedData,
    "connected": ConnectedData,
    "disconnected": DisconnectedData,
    "question_started": QuestionStartedData,
    "answer_submitted": AnswerSubmittedData,
    "time_expired": TimeExpiredData,
    "signal": SignalData,
    "taken_over": NoData,
    "abandoned": AbandonedData,
    "completed": NoData,
    "answer_evaluated": AnswerEvaluatedData,
    "evaluated": EvaluatedData,
    "score_overridden": ScoreOverriddenData,
    "accommodation_changed": AccommodationChangedData,
}


ServerFrame = Annotated[
    Hello
    | State
    | Tick
    | AnswerAck
    | DraftAck
    | TimeExpired
    | Completed
    | Pong
    | Superseded
    | Error,
    Field(discriminator="type"),
]


_OPTIONAL_ERROR_FIELDS = ("ref", "opens_at", "closes_at")


def serialize(frame: Frame) -> str:
    """The JSON text of a server frame (an error's ``ref``, ``opens_at`` and
    ``closes_at`` omitted when it has none)."""
    if isinstance(frame, Error):
        absent = {
            name for name in _OPTIONAL_ERROR_FIELDS if getattr(frame, name) is None
        }
        return frame.model_dump_json(exclude=absent)
    return frame.model_dump_json()


TICK_PREFIX = '{"type":"tick",'
"""How the text of every ``tick`` starts, and of no other frame's."""


def is_tick(text: str) -> bool:
    """Whether ``text`` is a ``tick`` frame built by :func:`tick_text` or
    :func:`serialize`: the send queue keeps only the newest tick waiting."""
    return text.startswith(TICK_PREFIX)


def tick_text(
    question_index: int, deadline: int, remaining_ms: int, server_time: int
) -> str:
    """The JSON text of a ``tick``, built without a model: it is the hot path.

    Equal to ``serialize(Tick(...))``; a unit test holds the two together.
    """
    return (
        f'{{"type":"tick","question_index":{question_index},"deadline":{deadline},'
        f'"remaining_ms":{remaining_ms},"server_time":{server_time}}}'
    )


def frame_schemas() -> dict[str, Any]:
    """JSON Schema of every client and server frame (docs/protocol.schema.json).

    One JSON Schema 2020-12 document: the frames of both directions share its root
    ``$defs``, so ``#/client_to_server`` and ``#/server_to_client`` resolve where
    any standard validator loads the whole document.
    """
    adapters: list[tuple[str, Any, TypeAdapter[Any]]] = [
        ("client", "validation", TypeAdapter(ClientFrame)),
        ("server", "serialization", TypeAdapter(ServerFrame)),
        ("monitor_client", "validation", TypeAdapter(MonitorClientFrame)),
        ("monitor_server", "serialization", TypeAdapter(MonitorServerFrame)),
    ]
    adapters += [
        (f"event:{kind}", "serialization", TypeAdapter(model))
        for kind, model in EVENT_DATA.items()
    ]
    schemas, shared = TypeAdapter.json_schemas(adapters)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Interview server wire protocol v1",
        "description": "Every frame is one JSON object with a `type`. See PROTOCOL.md.",
        "protocol": PROTOCOL_VERSION,
        "client_to_server": _union(schemas[("client", "validation")]),
        "server_to_client": _union(schemas[("server", "serialization")]),
        "monitor_client_to_server": _union(schemas[("monitor_client", "validation")]),
        "monitor_server_to_client": _union(
            schemas[("monitor_server", "serialization")]
        ),
        "monitor_event_data": {
            kind: schemas[(f"event:{kind}", "serialization")] for kind in EVENT_DATA
        },
        "$defs": shared["$defs"],
    }


def _union(schema: dict[str, Any]) -> dict[str, Any]:
    # ``discriminator`` is OpenAPI's, not JSON Schema's: each frame's ``const`` type
    # already tells the frames apart.
    return {key: value for key, value in schema.items() if key != "discriminator"}

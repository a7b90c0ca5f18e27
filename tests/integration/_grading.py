"""Fakes and a harness for the grading tests: a scripted grader, a clock, attempts."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from taskiq import InMemoryBroker

from evaluators.errors import EvaluationError
from evaluators.grade import Grade, QuestionResult, Recommendation, Summary
from protocol.attempt import Attempt, begin, change_between, submit
from protocol.audit import AuditEntry, AuditKind
from protocol.definition import McqQuestion, QuestionDef
from protocol.events import Event
from protocol.ids import Millis, SessionId, UserId
from server.cluster.bus import InProcessBus
from server.grading.queue import GradingQueue
from server.grading.service import GradingService
from server.storage.attempts import DatabaseStorage, InterviewRecord
from server.storage.results import ResultsStore, SessionDetail

START: Millis = 1_800_000_000_000
GOOD_ANSWERS = ("b", "atomicity and isolation", "def add(a, b): return a + b")


class FakeClock:
    def __init__(self, now: Millis = START) -> None:
        self.now = now

    def __call__(self) -> Millis:
        return self.now


class FakeGrader:
    """MCQ by exact match, everything else half the points; failures are scripted.

    Grades other than MCQ are ``provisional`` when that attribute is set, as the
    offline grader's are.

    ``failures[type]`` lists what grading a question of that type raises, one per
    call, before it succeeds; ``summary_failures`` likewise for summaries. After
    ``meet(n)``, each ``grade`` call waits until ``n`` calls are in flight, so that
    they finish at once.
    """

    def __init__(self) -> None:
        self.failures: dict[str, list[Exception]] = {}
        self.summary_failures: list[Exception] = []
        self.graded: list[tuple[str, str]] = []
        self.summarised: list[tuple[QuestionResult, ...]] = []
        self.together = 0
        self.provisional = False
        self._arrived = 0
        self._all_arrived = asyncio.Event()
        self._arrival = asyncio.Event()

    def meet(self, calls: int) -> None:
        """From now on, ``calls`` grade calls wait for each other (0: none)."""
        self.together = calls
        self._arrived = 0
        self._all_arrived = asyncio.Event()

    async def grade(self, question: QuestionDef, answer: str) -> Grade:
        self.graded.append((question.type, answer))
        await self._rendezvous()
        failures = self.failures.get(question.type)
        if failures:
            raise failures.pop(0)
        if isinstance(question, McqQuestion):
            score = question.points if answer == question.correct_answer else 0.0
            return Grade(
                score, question.points, {"correct": score > 0}, "rule:mcq", "1"
            )
        feedback = {"strengths": ["fake"]}
        return Grade(
            question.points / 2,
            question.points,
            feedback,
            "fake",
            "fake/1",
            provisional=self.provisional,
        )

    async def arrived(self, calls: int) -> None:
        """Until ``calls`` grade calls are waiting at the rendezvous of ``meet``."""
        while self._arrived < calls:
            self._arrival.clear()
            await self._arrival.wait()

    async def _rendezvous(self) -> None:
        if not self.together:
            return
        self._arrived += 1
        self._arrival.set()
        if self._arrived >= self.together:
            self._all_arrived.set()
        await self._all_arrived.wait()

    async def summarise(
        self, *, title: str, results: Sequence[QuestionResult]
    ) -> Summary:
        self.summarised.append(tuple(results))
        if self.summary_failures:
            raise self.summary_failures.pop(0)
        total = sum(result.score for result in results)
        maximum = sum(result.points for result in results)
        return Summary(
            total=total,
            max_score=maximum,
            percentage=100 * total / maximum if maximum else 0.0,
            text=f"A fake summary of {title}.",
            recommendation=Recommendation.HIRE,
            model="fake",
            prompt_version="fake/1",
            raw='{"recommendation": "hire"}',
        )


def failing(times: int, error: EvaluationError) -> list[Exception]:
    return [error] * times


@dataclass
class Harness:
    storage: DatabaseStorage
    interview: InterviewRecord
    grader: FakeGrader = field(default_factory=FakeGrader)
    clock: FakeClock = field(default_factory=FakeClock)
    bus: InProcessBus = field(default_factory=InProcessBus)
    events: list[Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.queue = GradingQueue(InMemoryBroker())
        self.results = ResultsStore(self.storage.database)
        self.service = GradingService(
            self.results, self.grader, self.bus, self.clock, self.queue
        )
        self.queue.broker.state.grading = self.service
        # Events are stored with the writes and announced after their commit, as
        # create_app wires it (here at once, so tests need not wait for a task).
        self.storage.database.on_events = self._announce
        self.bus.subscribe_events(self.interview.id, self._heard)

    def _announce(self, events: Sequence[Event]) -> None:
        for event in events:
            self.bus.deliver_event(event.interview_id, event)

    def _heard(self, event: Event | None) -> None:
        if event is not None:
            self.events.append(event)

    async def settle(self) -> None:
        """Until every job sent so far (and those they sent) finished."""
        for _ in range(3):
            await self.queue.wait_all()
            await asyncio.sleep(0)

    async def start(self, candidate: str | None = None) -> Attempt:
        attempt = begin(
            session_id=SessionId(uuid.uuid4().hex),
            interview_id=self.interview.id,
            title=self.interview.title,
            candidate_id=UserId(candidate or f"ada-{uuid.uuid4().hex[:8]}"),
            number=1,
            questions=self.interview.questions,
            grace_ms=self.interview.settings.grace_ms,
            now=self.clock(),
        )
        entry = AuditEntry(self.clock(), "candidate:ada", AuditKind.STARTED)
        await self.storage.create_attempt(attempt, candidate_name="Ada", audit=[entry])
        return attempt

    async def answer(
        self, attempt: Attempt, text: str, *, enqueue: bool = True
    ) -> Attempt:
        """Commit ``text`` as the answer to the current question, as a connection
        does; ``enqueue=False`` is a crash between the commit and the enqueue."""
        self.clock.now += 1_000
        after = submit(attempt, attempt.question_index, text, self.clock()).attempt
        await self.storage.commit(change_between(attempt, after), fence=None, audit=[])
        if enqueue:
            await self.service.answers_recorded(
                attempt.session_id, [attempt.question_index]
            )
        return after

    async def complete(
        self, answers: Sequence[str] = GOOD_ANSWERS, *, enqueue: bool = True
    ) -> SessionId:
        attempt = await self.start()
        for text in answers:
            attempt = await self.answer(attempt, text, enqueue=enqueue)
        return attempt.session_id

    async def detail(self, session_id: SessionId) -> SessionDetail:
        detail = await self.results.session_detail(session_id)
        assert detail is not None
        return detail

    def kinds(self, session_id: SessionId) -> list[str]:
        """The grading events of the attempt, in order."""
        return [
            event.kind
            for event in self.events
            if event.session_id == session_id and event.kind in GRADING_EVENTS
        ]


GRADING_EVENTS = {"answer_evaluated", "evaluated", "score_overridden"}

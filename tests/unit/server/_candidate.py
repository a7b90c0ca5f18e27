"""Candidate sockets on fakes: the real :class:`CandidateConnection` loop, each on a
:class:`FakeSocket`, over :class:`FakeServices` (tests/fakes)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from starlette.datastructures import Secret

from protocol.definition import parse_definition
from protocol.ids import InterviewId, SessionId, UserId
from server.auth import issue_token
from server.candidate.connection import CandidateConnection
from server.settings import Settings
from server.storage.records import Invitee
from tests.e2e._client import UNIT_S
from tests.fakes.services import T0, FakeServices
from tests.fakes.websocket import FakeSocket, Frame

SECRET = "unit-secret-at-least-32-bytes-long!!"
CANDIDATE = "ada"


def settings(**overrides: object) -> Settings:
    values: dict[str, object] = {"jwt_secret": Secret(SECRET)}
    return Settings(**(values | overrides))  # type: ignore[arg-type]


def token(sub: str = CANDIDATE, *, role: str = "candidate") -> str:
    # Signatures are checked against the real time (server.auth), not the fake clock.
    return issue_token(
        SECRET, sub=sub, role=role, name=f"User {sub}", org="acme", now_s=time.time()
    )


@dataclass
class Client:
    """One socket, its server-side connection and the task running it."""

    socket: FakeSocket
    connection: CandidateConnection
    task: asyncio.Task[None]

    def send(self, frame: dict[str, object]) -> None:
        self.socket.send(frame)

    async def expect(self, kind: str, *, ticks: bool = False) -> Frame:
        return await self.socket.expect(kind, ticks=ticks)

    async def login(self, sub: str = CANDIDATE) -> Frame:
        self.send({"type": "auth", "token": token(sub)})
        return await self.expect("hello")

    async def start(self, interview_id: InterviewId) -> Frame:
        self.send({"type": "start", "interview_id": interview_id})
        return await self.expect("state")

    def answer(self, index: int, text: str, ref: str | int | None = None) -> None:
        self.send(
            {"type": "answer", "question_index": index, "answer": text, "ref": ref}
        )

    async def ended(self) -> int | None:
        """Wait until the connection's loop has returned; its close code."""
        async with asyncio.timeout(UNIT_S):
            await self.task
        return self.connection.close_code

    @property
    def session_id(self) -> SessionId:
        attempt = self.connection.protocol.attempt
        assert attempt is not None, "not attached"
        return attempt.session_id


@dataclass
class World:
    """Fake services and the candidate sockets connected to them."""

    fakes: FakeServices = field(default_factory=lambda: FakeServices(settings()))
    clients: list[Client] = field(default_factory=list)

    async def interview(
        self,
        limits: Sequence[int] = (60, 60),
        *,
        grace_s: float = 2.0,
        max_attempts: int = 2,
        invite: Sequence[str] = (CANDIDATE,),
    ) -> InterviewId:
        """An interview of short-answer questions of ``limits`` seconds."""
        questions = [
            {"type": "short_answer", "text": f"q{i}", "points": 1, "time_limit_s": s}
            for i, s in enumerate(limits)
        ]
        definition = parse_definition(
            {
                "title": "Unit interview",
                "settings": {"max_attempts": max_attempts, "grace_s": grace_s},
                "questions": questions,
            }
        )
        storage = self.fakes.storage
        record = await storage.create_interview(
            org="acme", created_by=UserId("rita"), definition=definition, now=T0
        )
        invitees = [Invitee(UserId(sub), f"User {sub}", None) for sub in invite]
        await storage.invite(record.id, invitees, T0)
        return record.id

    async def connect(self) -> Client:
        """A socket accepted as ``candidate_endpoint`` does, its loop running."""
        socket = FakeSocket(self.fakes.services)
        await socket.websocket.accept()
        connection = CandidateConnection(socket.websocket, self.fakes.services)
        client = Client(socket, connection, asyncio.create_task(connection.run()))
        self.clients.append(client)
        return client

    async def attached(
        self, interview_id: InterviewId, sub: str = CANDIDATE
    ) -> tuple[Client, Frame]:
        """A socket logged in as ``sub`` that started ``interview_id``."""
        client = await self.connect()
        await client.login(sub)
        return client, await client.start(interview_id)

    async def close(self) -> None:
        """End every loop still running (the client goes away)."""
        for client in self.clients:
            if not client.task.done():
                client.socket.disconnect(1001)
                await client.ended()

"""A load-generator process of ``python -m bench.storm``: its share of the candidates.

It attaches every candidate, tells the parent (``attached``), then keeps each socket
read until it closes. A socket closed by the server reconnects the way PROTOCOL.md
says clients do: jittered exponential backoff, then ``resume`` with the ``lease`` of
its last ``state``, again and again until it is attached. It reports ``progress``
twice a second and, after ``stop``, one ``result`` with its raw samples.
"""

from __future__ import annotations

import asyncio
import queue
import random
import traceback
from dataclasses import dataclass
from multiprocessing.queues import Queue
from typing import Any

from websockets.exceptions import ConnectionClosed

from bench.client import Client, epoch_ms, failure_reason
from bench.instances import instance_of
from bench.storm_stats import Backoff, reconnect_target

PROGRESS_S = 0.5
STOP_TIMEOUT_S = 3600.0

Message = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class StormConfig:
    worker: int
    ws_urls: tuple[str, ...]
    first_index: int  # the index of this worker's first socket over all workers
    secret: str
    interview_id: str
    users: list[str]
    connect_rate: float  # first connects started per second by this worker
    connect_concurrency: int
    backoff: Backoff
    restarted: int  # the instance the parent restarts
    seed: int


def storm_entry(
    config: StormConfig, inbox: Queue[Message], out: Queue[Message]
) -> None:
    """Process target (spawn): run the worker, report a crash instead of dying mute."""
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is in requirements/dev.txt
        runner = asyncio.run
    try:
        runner(StormWorker(config, inbox, out).run())
    except BaseException:
        out.put(("crash", config.worker, traceback.format_exc()))


class StormWorker:
    def __init__(
        self, config: StormConfig, inbox: Queue[Message], out: Queue[Message]
    ) -> None:
        self.config = config
        self.inbox = inbox
        self.out = out
        self.random = random.Random(config.seed)
        self.clients = [Client(user, config.secret) for user in config.users]
        instances = len(config.ws_urls)
        for offset, client in enumerate(self.clients):
            client.instance = instance_of(config.first_index + offset, instances)
        self.stopping = False
        self.attached = 0
        self.down = 0  # closed by the server, not attached again yet
        self.first_failures: dict[str, int] = {}
        self.close_codes: dict[str, int] = {}
        self.refusals: dict[str, int] = {}
        self.resumes: list[tuple[float, float, int]] = []
        self.closes_by_instance: dict[str, int] = {}
        self.watchers: list[asyncio.Task[None]] = []

    async def run(self) -> None:
        await self._attach_all()
        on_restarted = sum(
            1
            for client in self.clients
            if client.attached and client.instance == self.config.restarted
        )
        self.out.put(("attached", self.config.worker, self.attached, on_restarted))
        progress = asyncio.create_task(self._progress())
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._wait_stop)
        self.stopping = True
        await asyncio.gather(*(client.close() for client in self.clients))
        for watcher in self.watchers:
            watcher.cancel()
        await asyncio.gather(*self.watchers, return_exceptions=True)
        progress.cancel()
        self.out.put(("result", self.config.worker, self._result()))

    def _wait_stop(self) -> None:
        try:
            self.inbox.get(timeout=STOP_TIMEOUT_S)
        except queue.Empty:
            pass

    async def _attach_all(self) -> None:
        limit = asyncio.Semaphore(self.config.connect_concurrency)
        loop = asyncio.get_running_loop()
        interval = 1 / self.config.connect_rate
        next_at = loop.time()
        tasks: list[asyncio.Task[None]] = []
        for offset, client in enumerate(self.clients):
            await limit.acquire()
            attaching = self._attach_first(offset, client, limit)
            tasks.append(asyncio.create_task(attaching))
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - loop.time()))
        await asyncio.gather(*tasks)

    async def _attach_first(
        self, offset: int, client: Client, limit: asyncio.Semaphore
    ) -> None:
        try:
            await self._attach(client)
        except Exception as exc:
            reason = failure_reason(exc)
            self.first_failures[reason] = self.first_failures.get(reason, 0) + 1
            return
        finally:
            limit.release()
        # Read at once: a socket left unread stops answering the server's pings
        # (its reads pause once 16 frames wait) and is closed 1011 after ~30 s.
        self.watchers.append(asyncio.create_task(self._watch(offset, client)))

    async def _attach(self, client: Client) -> None:
        await client.attach(
            self.config.ws_urls[client.instance],
            self.config.interview_id,
            resume=client.lease is not None,
            compression=None,
            lease=client.lease,
        )
        self.attached += 1

    async def _watch(self, offset: int, client: Client) -> None:
        """Read the socket until it closes; then reconnect until attached again."""
        index = self.config.first_index + offset
        while not self.stopping:
            ws = client.ws
            assert ws is not None
            try:
                async for frame in ws:
                    del frame  # ticks and the like: read so that buffers drain
            except ConnectionClosed:
                pass
            if self.stopping or client.closing:
                return
            closed_at = epoch_ms()
            self.attached -= 1
            self.down += 1
            code = str(ws.close_code if ws.close_code is not None else 1006)
            self.close_codes[code] = self.close_codes.get(code, 0) + 1
            key = str(client.instance)
            self.closes_by_instance[key] = self.closes_by_instance.get(key, 0) + 1
            client.ws = None
            instances = len(self.config.ws_urls)
            client.instance = reconnect_target(
                index, client.instance, instances, self.config.restarted
            )
            attempts = await self._reconnect(client)
            if attempts is None:
                return
            self.down -= 1
            self.resumes.append((closed_at, epoch_ms(), attempts))

    async def _reconnect(self, client: Client) -> int | None:
        """Back off, resume, until attached: the attempts made (``None``: stopped)."""
        attempt = 0
        while not self.stopping:
            delay_ms = self.config.backoff.delay_ms(attempt, self.random.random())
            await asyncio.sleep(delay_ms / 1000)
            attempt += 1
            try:
                await self._attach(client)
            except Exception as exc:
                reason = failure_reason(exc)
                self.refusals[reason] = self.refusals.get(reason, 0) + 1
                continue
            return attempt
        return None

    async def _progress(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_S)
            progress = {
                "attached": self.attached,
                "down": self.down,
                "closed": sum(self.close_codes.values()),
                "resumed": len(self.resumes),
                "refusals": sum(self.refusals.values()),
            }
            self.out.put(("progress", self.config.worker, progress))

    def _result(self) -> dict[str, Any]:
        return {
            "sockets": len(self.clients),
            "first_failures": self.first_failures,
            "close_codes": self.close_codes,
            "closes_by_instance": self.closes_by_instance,
            "refusals": self.refusals,
            "resumes": self.resumes,
            "not_back": self.down,
        }

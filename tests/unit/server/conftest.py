"""Fixtures of the socket shell's unit tests (tests/unit/server/_candidate.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.unit.server._candidate import World


@pytest.fixture
async def world() -> AsyncIterator[World]:
    world = World()
    try:
        yield world
    finally:
        await world.close()

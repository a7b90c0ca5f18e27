"""Keyset pagination: the opaque cursor of a list page, and the condition it stands for.

A cursor names the last row of a page by its sort key and id (the tie-breaker), and
the order it was listed in: the next page is the rows strictly after that pair in
that order, so rows added or changed meanwhile never make a page skip or repeat one
that stays put. It is base64url JSON, opaque to clients; one made for another order
is refused.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json

import sqlalchemy as sa

MAX_CURSOR_CHARS = 2_000


class Order(enum.StrEnum):
    ASC = "asc"
    DESC = "desc"


Key = int | float | str


def encode(sort: str, order: Order, key: Key, row_id: str) -> str:
    text = json.dumps([sort, order.value, key, row_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode(cursor: str, sort: str, order: Order, kind: type) -> tuple[Key, str]:
    """The key and id a cursor of ``sort`` and ``order`` names.

    Raises:
        ValueError: not a cursor of this list in this order, or its key is not of
            ``kind`` (``int``, ``float`` or ``str``).
    """
    if len(cursor) > MAX_CURSOR_CHARS or not cursor.isascii():
        raise ValueError("expected a cursor from a previous page")
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("expected a cursor from a previous page") from exc
    if not isinstance(value, list) or len(value) != 4:
        raise ValueError("expected a cursor from a previous page")
    named_sort, named_order, key, row_id = value
    if (named_sort, named_order) != (sort, order.value):
        message = f"this cursor lists by {named_sort} {named_order}, not {sort} {order}"
        raise ValueError(message)
    if not _is(key, kind) or not isinstance(row_id, str):
        raise ValueError("expected a cursor from a previous page")
    return key, row_id


def _is(key: object, kind: type) -> bool:
    if isinstance(key, bool):
        return False
    if kind is float:
        return isinstance(key, int | float)
    return isinstance(key, kind)


def after(
    key: sa.ColumnElement[object],
    row_id: sa.ColumnElement[str],
    order: Order,
    last: tuple[Key, str],
) -> sa.ColumnElement[bool]:
    """Rows after ``last`` in ``order`` by (key, id); the two databases agree on
    this form, and each compares keys as its ORDER BY does."""
    last_key, last_id = last
    if order is Order.ASC:
        return sa.or_(key > last_key, sa.and_(key == last_key, row_id > last_id))
    return sa.or_(key < last_key, sa.and_(key == last_key, row_id < last_id))


def ordered(
    key: sa.ColumnElement[object], row_id: sa.ColumnElement[str], order: Order
) -> tuple[sa.UnaryExpression[object], sa.UnaryExpression[str]]:
    if order is Order.ASC:
        return key.asc(), row_id.asc()
    return key.desc(), row_id.desc()

"""The opaque cursors of the recruiters' lists (server/storage/_cursor.py)."""

from __future__ import annotations

import base64

import pytest
import sqlalchemy as sa

from server.storage import _cursor
from server.storage._cursor import Order


@pytest.mark.parametrize(
    ("key", "kind"), [(1_800_000_000_000, int), (9.5, float), (3, float), ("Ada", str)]
)
def test_a_cursor_gives_back_the_key_and_id_it_was_made_of(
    key: int | float | str, kind: type
) -> None:
    cursor = _cursor.encode("sort", Order.DESC, key, "row-1")

    assert _cursor.decode(cursor, "sort", Order.DESC, kind) == (key, "row-1")
    assert "=" not in cursor


def test_a_cursor_of_another_sort_or_order_is_refused() -> None:
    cursor = _cursor.encode("score", Order.ASC, 1.0, "row-1")

    with pytest.raises(ValueError, match="lists by score asc, not score desc"):
        _cursor.decode(cursor, "score", Order.DESC, float)
    with pytest.raises(ValueError, match="not title asc"):
        _cursor.decode(cursor, "title", Order.ASC, str)


def _raw(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64!",
        _raw("not json"),
        _raw('{"a": 1}'),
        _raw('["sort", "asc", true, "row"]'),  # a bool is no number
        _raw('["sort", "asc", "text", "row"]'),
        _raw('["sort", "asc", 1, 2]'),
        "é",
        "x" * 2_001,
    ],
)
def test_anything_but_a_cursor_of_this_list_is_refused(cursor: str) -> None:
    with pytest.raises(ValueError, match="expected a cursor from a previous page"):
        _cursor.decode(cursor, "sort", Order.ASC, int)


def test_the_page_after_a_row_is_strictly_after_it_in_either_order() -> None:
    key: sa.ColumnClause[object] = sa.column("key")
    row_id: sa.ColumnClause[str] = sa.column("id")

    ascending = _cursor.after(key, row_id, Order.ASC, (5, "m"))
    descending = _cursor.after(key, row_id, Order.DESC, (5, "m"))

    assert str(ascending) == "key > :key_1 OR key = :key_2 AND id > :id_1"
    assert str(descending) == "key < :key_1 OR key = :key_2 AND id < :id_1"

"""The SQL an engine sends, for tests that pin down what a code path costs the database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.ext.asyncio import AsyncEngine


@contextmanager
def statements_run(engine: Engine | AsyncEngine) -> Iterator[list[str]]:
    """Every statement the engine sends while the block runs, in order, as sent."""
    sync_engine = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
    statements: list[str] = []

    def record(_connection: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(sync_engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(sync_engine, "before_cursor_execute", record)

"""Search templates."""

from sqlalchemy.ext.asyncio import AsyncSession


async def load_builtin_templates(session: AsyncSession) -> None:
    """Insert or update the shipped templates; safe to run at every start."""

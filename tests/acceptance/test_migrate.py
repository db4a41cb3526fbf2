"""`aopbot migrate` builds the schema from Alembic revisions; /readyz reports a schema behind head."""

from __future__ import annotations

from sqlalchemy import inspect

from bot.domain.models import Base
from bot.ops.db import make_engine
from bot.ops.migrate import is_current
from tests.procs import aopbot


def test_migrate_creates_every_table_at_head(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    result = aopbot("migrate", env={"DATABASE_URL": url})
    assert result.returncode == 0, result.stderr
    engine = make_engine(url)
    assert is_current(engine)
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    again = aopbot("migrate", env={"DATABASE_URL": url})  # idempotent
    assert again.returncode == 0


def test_serve_refuses_an_unmigrated_database(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    result = aopbot("serve", env={"DATABASE_URL": url, "PORT": "0"})
    assert result.returncode == 2 and "aopbot migrate" in result.stderr


def test_models_and_migrations_agree(db):
    """Every schema change is an Alembic revision: the migrated database matches the models."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []

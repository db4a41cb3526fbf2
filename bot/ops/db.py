"""Engine and the one session factory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

# session.info key: the escalations a transaction changed; after its commit, Database.on_commit hooks
# hear of them (the long-polls waiting on them wake).
CHANGED_ESCALATIONS = "changed_escalations"
READ_ONLY = "aop_read_only"  # execution option: a transaction that only reads (Database.reading)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL survives a crash of the bot (only an OS crash can lose the last commits).
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            # No checkpoint inside a commit: the commit that crossed 1,000 WAL pages copied the WAL
            # into the database and synced it before returning, so now and then a click's ack took
            # 100-200 ms. The scheduler's tick checkpoints instead (Database.checkpoint).
            cur.execute("PRAGMA wal_autocheckpoint=0")
            cur.close()
            # pysqlite's own BEGIN handling defers locks; take the write lock at BEGIN so that
            # a read-then-conditional-write transaction cannot interleave with another writer.
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):  # pragma: no cover - trivial
            conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")

        return engine
    # No pre-ping: it cost a round trip on every checkout (three per signal). After a PostgreSQL
    # restart the first statement on a dead connection fails (a 503 with Retry-After to an agent, a
    # retry for the outbox) and SQLAlchemy discards the whole stale pool with it.
    # 16 kept: the API's concurrent requests plus the delivery threads fit without opening and
    # closing an overflow connection per request (a new PostgreSQL backend each: measured as churn
    # under the 16-concurrent ingest benchmark at pool_size 10).
    return create_engine(url, pool_size=16, max_overflow=14, pool_recycle=1800)


def upsert_insert(session: Session, model):
    """An INSERT that can say ON CONFLICT, in the dialect of the session's database (SQLite or
    PostgreSQL both have it; SQLAlchemy keeps it per dialect)."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(model)


class Database:
    """Owns the engine and hands out transactions. One per process."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._readers = sessionmaker(self.engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False)
        self._commit_hooks: list[Callable[[set[str]], None]] = []
        event.listen(self._sessions, "after_commit", self._after_commit)
        event.listen(self._sessions, "after_rollback", lambda s: s.info.pop(CHANGED_ESCALATIONS, None))

    def on_commit(self, hook: Callable[[set[str]], None]) -> None:
        """hook(ids) after every commit that changed escalations (the domain names them in session.info)."""
        self._commit_hooks.append(hook)

    def _after_commit(self, session: Session) -> None:
        changed = session.info.pop(CHANGED_ESCALATIONS, None)
        if changed:
            for hook in self._commit_hooks:
                hook(changed)

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work commits together or not at all."""
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A transaction that only reads. On SQLite every other transaction takes the write lock at
        BEGIN; this one does not, so a reader (a card being built, a long-poll's view) never makes a
        writer wait (with WAL, readers and the one writer go side by side): a click's inbox row, say.
        Writing in it is a bug (on SQLite it can fail as "database is locked")."""
        with self._readers() as session, session.begin():
            yield session

    def checkpoint(self) -> None:
        """SQLite: copy what the WAL holds into the database file, without waiting for readers or
        writers (PASSIVE; the tick calls it, as commits do not). PostgreSQL: nothing to do."""
        if self.engine.dialect.name == "sqlite":
            raw = self.engine.raw_connection()  # outside any transaction: a checkpoint cannot run in one
            try:
                raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            finally:
                raw.close()

    def dispose(self) -> None:
        self.engine.dispose()

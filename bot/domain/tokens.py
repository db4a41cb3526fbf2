"""Agent tokens: printed once, stored as a SHA-256 hash, scoped to processes."""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.domain.models import AgentToken
from bot.ops import clock
from bot.ops.db import Database

TOKEN_PREFIX = "aop_"  # noqa: S105 - a prefix, not a secret


def hash_token(token: str) -> str:
    # Tokens are 256-bit random strings, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class NewToken:
    id: int
    token: str
    callback_secret: str


def create(session: Session, process_ids: list[str], name: str | None = None,
           agent_user: str | None = None) -> NewToken:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    cb_secret = "whsec_" + secrets.token_urlsafe(32)
    row = AgentToken(
        name=name or ",".join(process_ids),
        token_hash=hash_token(token),
        prefix=token[:10],
        process_ids=list(dict.fromkeys(process_ids)),
        agent_user=agent_user,
        callback_secret=cb_secret,
        created_at=clock.now(),
    )
    session.add(row)
    session.flush()
    return NewToken(row.id, token, cb_secret)


def authenticate(session: Session, presented: str | None) -> AgentToken | None:
    if not presented:
        return None
    row = session.scalars(select(AgentToken).where(AgentToken.token_hash == hash_token(presented))).first()
    if row is None or row.revoked_at is not None:
        return None
    return row


class TokenCache:
    """authenticate() without a database round trip per request: a token seen valid is trusted for
    TTL_S, so a revocation (on any replica, or by the CLI) takes effect within that second."""

    TTL_S = 1.0

    def __init__(self, db: Database):
        self.db = db
        self._seen: dict[str, tuple[float, AgentToken]] = {}
        self._lock = threading.Lock()

    def cached(self, presented: str) -> AgentToken | None:
        """The token if it was seen valid within TTL_S (no database); None: ask authenticate()."""
        with self._lock:
            hit = self._seen.get(hash_token(presented))
        return hit[1] if hit is not None and time.monotonic() - hit[0] < self.TTL_S else None

    def authenticate(self, presented: str) -> AgentToken | None:
        hit = self.cached(presented)
        if hit is not None:
            return hit
        key, now = hash_token(presented), time.monotonic()
        with self.db.transaction() as s:
            tok = authenticate(s, presented)
            if tok is not None:
                s.expunge(tok)
        with self._lock:
            if tok is None:
                self._seen.pop(key, None)
            else:
                if len(self._seen) > 10_000:  # unknown tokens are never kept; this bounds the known ones
                    self._seen.clear()
                self._seen[key] = (now, tok)
        return tok


def list_tokens(session: Session) -> list[AgentToken]:
    return list(session.scalars(select(AgentToken).order_by(AgentToken.id)))


def revoke(session: Session, token_id: int) -> bool:
    row = session.get(AgentToken, token_id)
    if row is None:
        return False
    if row.revoked_at is None:
        row.revoked_at = clock.now()
    return True

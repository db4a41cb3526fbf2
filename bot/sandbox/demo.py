"""`aopbot demo`: raise the sandbox's sample signals against a running bot, as an agent would.

It mints its own token (earlier demo tokens are revoked), posts each sample over HTTP, and with
--wait long-polls each escalation until it is decided, printing what the agent learns and the
change-log entry the outcome wrote.
"""

from __future__ import annotations

import json
import sys
import time

import httpx
from sqlalchemy import select

from bot.domain import tokens
from bot.domain.models import AgentToken
from bot.domain.registry import Registry
from bot.ops.db import Database
from bot.sandbox import people, samples

DEMO_TOKEN_NAME = "aopbot-demo"  # noqa: S105 - a token's name, not a secret
TERMINAL = {"approved", "rejected", "expired", "cancelled", "acknowledged"}


def mint_token(db: Database, process_ids: list[str], name: str = DEMO_TOKEN_NAME) -> str:
    """A demo agent's token, scoped to these processes; earlier tokens of that name are revoked (the
    page and the CLI each keep their own name, so neither revokes the other's)."""
    with db.transaction() as s:
        for row in s.scalars(select(AgentToken).where(AgentToken.name == name, AgentToken.revoked_at.is_(None))):
            tokens.revoke(s, row.id)
        new = tokens.create(s, process_ids, name, agent_user=people.AGENT_USER)
    return new.token


def run(db: Database, registry: Registry, base_url: str, keys: list[str], wait_s: float, out=sys.stdout) -> int:
    offered = {s.key: (s, p) for s, p in samples.available(registry.all())}
    unknown = [k for k in keys if k not in offered]
    if unknown:
        print(f"demo: no sample {', '.join(unknown)}; this registry offers {', '.join(offered)}", file=sys.stderr)
        return 2
    base = base_url.rstrip("/")
    token = mint_token(db, [p.id for p in registry.all()])
    raised: list[tuple[str, str]] = []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=70) as http:
        for key in keys or list(offered):
            sample, proc = offered[key]
            try:
                resp = http.post("/api/v1/escalations", json=samples.signal_body(sample, proc))
            except httpx.HTTPError as e:
                print(f"demo: cannot reach aopbot at {base} ({e}); start it with `make run`", file=sys.stderr)
                return 2
            body = resp.json()
            print(f"{sample.label} on {proc.id}: {resp.status_code} {body.get('id', body)}", file=out)
            if resp.status_code < 300:
                raised.append((sample.label, body["id"]))
        print(f"decide them at {base}/sandbox (pick who you are, then Approve or Reject in the thread)", file=out)
        deadline = time.monotonic() + wait_s
        for label, esc_id in raised if wait_s > 0 else []:
            view = http.get(f"/api/v1/escalations/{esc_id}").json()
            while view["status"] not in TERMINAL and time.monotonic() < deadline:
                view = http.get(f"/api/v1/escalations/{esc_id}", params={"wait": 30}).json()
            print(f"{label}: {view['status']} by {view.get('decided_by') or view.get('acknowledged_by')}"
                  f"{' (' + view['reason'] + ')' if view.get('reason') else ''}", file=out)
            if view["status"] in TERMINAL:
                query = {"process_id": view["process_id"], "limit": 1000}
                entries = http.get("/api/v1/changelog", params=query).text.splitlines()
                mine = [json.loads(e) for e in entries if esc_id in e]
                if mine:
                    print("  change log: " + json.dumps(mine[-1], ensure_ascii=False), file=out)
    return 0

"""schemathesis hooks for tests/acceptance/test_hostile.py: realistic data where random data stops.

A random process_id is almost always unknown (404), so the API's logic past the lookup, and the
links from a created escalation to reading and cancelling it, would go untested. Every other
generated body and path names a process the fixture registry has."""

from __future__ import annotations

import zlib

import schemathesis

KNOWN = "refunds"


def _every_other(value: object) -> bool:
    return zlib.crc32(repr(value).encode()) % 2 == 0  # deterministic: --generation-deterministic holds


def _valid_id(value: object) -> bool:
    """A generated process_id the schema allows: replacing one the case made invalid on purpose (a
    negative test) would turn it into a valid request that is rightly accepted."""
    return isinstance(value, str) and 1 <= len(value) <= 200


@schemathesis.hook
def map_body(context, body):
    if isinstance(body, dict) and _valid_id(body.get("process_id")) and _every_other(body):
        return {**body, "process_id": KNOWN}
    return body


@schemathesis.hook
def map_path_parameters(context, path_parameters):
    if isinstance(path_parameters, dict) and "process_id" in path_parameters and _every_other(path_parameters):
        return {**path_parameters, "process_id": KNOWN}
    return path_parameters


@schemathesis.hook
def map_query(context, query):
    # A long-poll on a real escalation holds for `wait` seconds; a valid wait of up to 60 s per case
    # would make the run take hours. Two seconds still exercises the wait.
    if isinstance(query, dict) and isinstance(query.get("wait"), int) and 2 < query["wait"] <= 60:
        return {**query, "wait": 2}
    return query

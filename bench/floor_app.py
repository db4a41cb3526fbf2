"""The floor the ingest benchmark holds aopbot to: a bare Starlette endpoint that does one INSERT and
one COMMIT on the same database, served the same way (one uvicorn process). Run by bench_wait.py."""

from __future__ import annotations

import json
import os

from sqlalchemy import Column, Integer, MetaData, Table, Text, create_engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

engine = create_engine(os.environ["FLOOR_DATABASE_URL"])
meta = MetaData()
floor = Table("bench_floor", meta, Column("id", Integer, primary_key=True, autoincrement=True), Column("body", Text))
meta.drop_all(engine)
meta.create_all(engine)


def _insert(body: str) -> int:
    with engine.begin() as conn:
        return conn.execute(floor.insert().values(body=body)).inserted_primary_key[0]


async def create(request: Request) -> JSONResponse:
    from starlette.concurrency import run_in_threadpool

    body = await request.json()
    new_id = await run_in_threadpool(_insert, json.dumps(body))
    return JSONResponse({"id": new_id}, status_code=201)


app = Starlette(routes=[Route("/floor", create, methods=["POST"])])

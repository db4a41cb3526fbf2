"""`make bench`: every benchmark, one after the other (BENCH_DATABASE_URL, default the local `bench`
PostgreSQL database, which they wipe). bench_wait rewrites its section of docs/BENCHMARKS.md."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

for script, args in (("bench_wait.py", ["--write"]), ("bench_digest.py", []), ("bench_commands.py", [])):
    started = time.perf_counter()
    print(f"== {script}", flush=True)
    code = subprocess.call([sys.executable, str(HERE / script), *args], cwd=HERE.parent)
    print(f"== {script}: exit {code} in {time.perf_counter() - started:.0f} s", flush=True)
    if code:
        sys.exit(code)

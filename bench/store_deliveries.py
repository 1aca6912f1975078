"""How fast the store records webhook deliveries (the hot path) and saves/loads per-question results.

    .venv/bin/python bench/store_deliveries.py                      # SQLite file in a temp dir (WAL)
    .venv/bin/python bench/store_deliveries.py --url postgresql://postgres@127.0.0.1:5432/test --schema tb_bench

Each batch is ONE `record_deliveries` call (one transaction, one commit), the way the service groups concurrent
webhook requests. Bodies are the real octokit `issue_comment.created` payload (about 15 KB).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from bot.store import NewDelivery, NewRun, Store
from commands.results import BenchmarkResult, Results, SubsetScore

PAYLOAD = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "github" / "webhooks" / \
    "issue_comment.created.json"


async def bench_deliveries(store: Store, batches: int, size: int, body: bytes) -> None:
    now = datetime.now(UTC)
    latencies: list[float] = []
    started = time.perf_counter()
    for _ in range(batches):
        batch = [NewDelivery("github:app/1", str(uuid.uuid4()), "issue_comment", body, now, "created")
                 for _ in range(size)]
        t = time.perf_counter()
        flags = await store.record_deliveries(batch)
        latencies.append(time.perf_counter() - t)
        assert all(flags)
    total = time.perf_counter() - started
    latencies.sort()
    print(f"record_deliveries: {batches} batches x {size} ({len(body)} B bodies): "
          f"{batches * size / sum(latencies):,.0f} inserts/s ({batches * size / total:,.0f} incl. building), "
          f"batch p50 {statistics.median(latencies) * 1000:.1f} ms, "
          f"p99 {latencies[int(len(latencies) * 0.99) - 1] * 1000:.1f} ms")
    # All duplicates (a redelivery storm): the conflict path.
    dup = [NewDelivery("github:app/1", d.delivery_id, d.event, d.body, now) for d in batch]
    t = time.perf_counter()
    for _ in range(20):
        assert not any(await store.record_deliveries(dup))
    print(f"record_deliveries, all duplicates: {20 * size / (time.perf_counter() - t):,.0f} checks/s")


async def bench_results(store: Store, questions: int) -> None:
    now = datetime.now(UTC)
    run_id = f"tb-{uuid.uuid4().hex[:12]}"
    await store.create_run(NewRun(run_id=run_id, repo="o/r", actor="a", command="/eval cmmlu", kind="eval",
                                  run_token="t"), now=now)
    subjects = [f"subject_{i:02}" for i in range(67)]
    per = questions // len(subjects)
    qs = {f"{s}/{i}": (i * 7 + j) % 3 == 0 for j, s in enumerate(subjects) for i in range(per)}
    subsets = {s: SubsetScore(n=per, correct=sum(qs[f"{s}/{i}"] for i in range(per))) for s in subjects}
    res = Results(run_id=run_id, status="succeeded",
                  benchmarks={"cmmlu": BenchmarkResult("cmmlu", subsets, qs, config_hash="c")})
    t = time.perf_counter()
    await store.save_results(run_id, res, {"cmmlu": "k"}, "o/r", "0" * 40, "main", now=now)
    saved = time.perf_counter() - t
    t = time.perf_counter()
    loaded = await store.load_results(run_id)
    read = time.perf_counter() - t
    assert loaded == res
    print(f"save_results: {len(qs):,} questions in {saved * 1000:.0f} ms; load_results: {read * 1000:.0f} ms")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="database URL (default: a SQLite file in a temp dir)")
    ap.add_argument("--schema", help="PostgreSQL schema to use (dropped afterwards)")
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--body-bytes", type=int, help="synthetic body of this size instead of the real payload")
    ap.add_argument("--questions", type=int, default=11_582, help="questions for the results figure (CMMLU: 11,582)")
    args = ap.parse_args()
    if args.body_bytes is not None:
        body = b'{"x": "' + b"y" * max(args.body_bytes - 9, 0) + b'"}'
    else:
        body = PAYLOAD.read_bytes() if PAYLOAD.exists() else b'{"x": "' + b"y" * 15_000 + b'"}'
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or str(Path(tmp) / "bench.db")
        store = await Store.open(url, schema=args.schema)
        try:
            print(f"backend: {store.dialect}")
            await bench_deliveries(store, args.batches, args.batch_size, body)
            await bench_results(store, args.questions)
        finally:
            if args.schema and store.dialect == "postgresql":
                async with store._engines.writer.begin() as conn:
                    await conn.exec_driver_sql(f'DROP SCHEMA "{args.schema}" CASCADE')
            await store.close()


if __name__ == "__main__":
    asyncio.run(main())

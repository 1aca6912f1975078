"""A separate process that writes to the store, for the crash and multi-process tests (run as a script).

  store_worker.py hang   URL SCHEMA RUN_ID        write a decision in a transaction, say READY, wait to be killed
  store_worker.py commit URL SCHEMA RUN_ID        the same, committed, then die without closing anything
  store_worker.py record URL SCHEMA START COUNT   record deliveries START..START+COUNT-1 in batches of 8, then in
                                                  one transaction per batch enqueue an outbox item per id; print
                                                  the ids that were new as JSON
SCHEMA is "-" for none.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from bot.store import NewDelivery, NewRun, Store

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


async def decide(store: Store, run_id: str, *, commit: bool) -> None:
    tx_cm = store.transaction()
    tx = await tx_cm.__aenter__()
    await tx.create_run(NewRun(run_id=run_id, repo="octo/demo", actor="alice", command="/train tiny",
                               kind="train", run_token="tok", trigger_key=f"trigger-{run_id}"), now=NOW)
    await tx.enqueue(f"{run_id}:dispatch", "dispatch", {"run_id": run_id}, NOW, run_id=run_id)
    if commit:
        await tx_cm.__aexit__(None, None, None)
        print("COMMITTED", flush=True)
        os._exit(0)  # no close, no dispose: the way a crash leaves things
    print("READY", flush=True)
    await asyncio.sleep(600)  # the parent kills us here, mid-transaction


async def record(store: Store, start: int, count: int) -> None:
    new: list[str] = []
    ids = [f"g{i:05}" for i in range(start, start + count)]
    for i in range(0, len(ids), 8):
        chunk = ids[i:i + 8]
        flags = await store.record_deliveries(
            [NewDelivery("github:app/1", gid, "issue_comment", gid.encode() * 50, NOW) for gid in chunk])
        new += [gid for gid, ok in zip(chunk, flags, strict=True) if ok]
        async with store.transaction() as tx:
            for gid in chunk:
                await tx.enqueue(f"reply:{gid}", "comment_create", {"gid": gid}, NOW)
    print(json.dumps(new), flush=True)


async def main(argv: list[str]) -> None:
    mode, url, schema = argv[0], argv[1], argv[2]
    store = await Store.open(url, schema=None if schema == "-" else schema, migrate=False)
    if mode in ("hang", "commit"):
        await decide(store, argv[3], commit=mode == "commit")
    elif mode == "record":
        await record(store, int(argv[3]), int(argv[4]))
    await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))

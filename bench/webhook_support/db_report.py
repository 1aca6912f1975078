"""Counts the deliveries in a tunebot SQLite store by state, for bench/webhook_load.sh's exactly-once check.

    python db_report.py PATH.db               -> one JSON line: {"total": n, "states": {...}, "retried": n, ...}
    python db_report.py --unfinished PATH.db  -> the number of pending + processing deliveries (cheap: an index)

Read-only (`mode=ro`), so it can run beside the live service: WAL gives it a consistent snapshot. The full report
scans every row: run it once, after the drain, not while polling — a long reader keeps SQLite from starting the WAL
over.
"""

from __future__ import annotations

import json
import sqlite3
import sys


def _connect(path: str) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)


def unfinished(path: str) -> int:
    conn = _connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM deliveries WHERE state IN ('pending', 'processing')")
                   .fetchone()[0])
    finally:
        conn.close()


def report(path: str) -> dict[str, object]:
    conn = _connect(path)
    try:
        states = dict(conn.execute("SELECT state, count(*) FROM deliveries GROUP BY state").fetchall())
        total = sum(states.values())
        # `attempts` counts claims: a delivery handed to a worker twice (processed more than once) shows > 1.
        retried = conn.execute("SELECT count(*) FROM deliveries WHERE attempts > 1").fetchone()[0]
        never = conn.execute("SELECT count(*) FROM deliveries WHERE state = 'done' AND attempts < 1").fetchone()[0]
        dup = conn.execute("SELECT count(*) FROM (SELECT 1 FROM deliveries GROUP BY source, delivery_id "
                           "HAVING count(*) > 1)").fetchone()[0]
        errors = [r[0] for r in conn.execute("SELECT DISTINCT error FROM deliveries WHERE error IS NOT NULL LIMIT 3")]
    finally:
        conn.close()
    return {"total": total, "states": states, "retried": retried, "done_unclaimed": never, "duplicate_ids": dup,
            "errors": errors}


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) == 2 and args[0] == "--unfinished":
        print(unfinished(args[1]))
    elif len(args) == 1:
        print(json.dumps(report(args[0])))
    else:
        print("usage: db_report.py [--unfinished] PATH.db", file=sys.stderr)
        sys.exit(2)

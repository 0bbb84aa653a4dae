#!/usr/bin/env python3
"""What an idempotency key costs raw SQLite on synclog's schema, without synclog.

Usage: python3 benches/sqlite_keys.py SYNCLOG_BINARY [DIR]   (DIR: default /dev/shm)

Makes an empty store with `SYNCLOG_BINARY --no-backup --store sqlite://DIR/keys-base.db`,
then inserts 600 transactions of 64 rows (one prepared insert, `executemany`): in each of
5 rounds, each keyed way right after an unkeyed run (the order rotated from round to
round), and prints each way's keyed ÷ unkeyed speed (median and range over the 5 pairs):
- `trigger`: unordered keys kept by the schema's trigger, as synclog stores them today;
- `upsert`: the trigger as one INSERT ... ON CONFLICT DO UPDATE;
- `direct`: the trigger dropped, the loop inserting the keys into idempotency_keys itself.
Standard library only. README ("Runs and idempotency keys") quotes its figures.
"""
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time

GROUPS, ROWS = 600, 64
ROUNDS = 5
WAYS = ["trigger", "upsert", "direct"]
UPSERT = (
    "CREATE TRIGGER logs_into_idempotency_keys AFTER INSERT ON logs "
    "WHEN NEW.idempotency_key IS NOT NULL BEGIN "
    "INSERT INTO idempotency_keys VALUES (NEW.idempotency_key, NEW.id) "
    "ON CONFLICT (key) DO UPDATE SET id = excluded.id WHERE excluded.id < id; END;"
)
INSERT = (
    "INSERT INTO logs (id, recorded_at, job, status, started_at, finished_at, items_seen, "
    "items_written, items_failed, message, attrs, checksum, run_key, idempotency_key) "
    "VALUES (?, ?, ?, 'succeeded', ?, NULL, 10, 8, 2, 'synced some records from the api', "
    "'{}', 12345, NULL, ?)"
)


def fresh(base, db):
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    shutil.copy(base, db)


def run(base, db, keyed, way):
    fresh(base, db)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=wal")
    conn.execute("PRAGMA synchronous=FULL")
    if way in ("upsert", "direct"):
        conn.execute("DROP TRIGGER logs_into_idempotency_keys")
    if way == "upsert":
        conn.execute(UPSERT)
    rng = random.Random(7)
    next_id = 2
    start = time.perf_counter()
    for _ in range(GROUPS):
        rows = []
        for _ in range(ROWS):
            key = "%016x-%d" % (rng.getrandbits(64), next_id) if keyed else None
            t = 1_700_000_000_000_000 + next_id
            rows.append((next_id, t, "sync-job-%02d" % (next_id % 16), t, key))
            next_id += 1
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT, rows)
        if keyed and way == "direct":
            conn.executemany("INSERT INTO idempotency_keys VALUES (?, ?)", [(r[4], r[0]) for r in rows])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    binary, where = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "/dev/shm"
    base, db = os.path.join(where, "keys-base.db"), os.path.join(where, "keys-run.db")
    fresh_base = [p for p in (base, base + "-wal", base + "-shm") if os.path.exists(p)]
    for p in fresh_base:
        os.remove(p)
    store = "sqlite://" + base
    subprocess.run([binary, "--no-backup", "--store", store, "append", "--job", "x", "--status", "succeeded"],
                   check=True, stdout=subprocess.DEVNULL)
    ratios = {way: [] for way in WAYS}
    for round_ in range(ROUNDS):
        # Each round times the unkeyed loop next to each keyed way, in a rotated order.
        order = WAYS[round_ % len(WAYS):] + WAYS[:round_ % len(WAYS)]
        for way in order:
            plain = run(base, db, False, "trigger")
            keyed = run(base, db, True, way)
            ratios[way].append(plain / keyed)
    for way in WAYS:
        r = sorted(ratios[way])
        print("%-8s keyed / unkeyed speed: median %.2fx, range %.2f-%.2fx over %d pairs"
              % (way, r[len(r) // 2], r[0], r[-1], len(r)))
    for p in (base, db):
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(p + suffix):
                os.remove(p + suffix)


if __name__ == "__main__":
    main()

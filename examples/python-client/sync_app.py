#!/usr/bin/env python3
"""A sync app's flow against `synclog serve`, done right, and a check of it for CI.

The flow: start a run, sync items page by page, report progress after each page with an
idempotent append, and always end the run: with its counts when it went through, as
`failed` with the error when the source broke. Then list the failures and print a summary.

The network between the app and the server is made unreliable on purpose: a small relay
(FlakyNetwork, below) sits in between and breaks chosen exchanges the way real networks
do: the server stores a write but its answer never arrives (the client times out), the
connection is reset after the server answered, or a 503 with Retry-After comes back. The
client retries with the same idempotency key and the same body, and the app checks that
each write is stored exactly once: the retry gets the first attempt's record back (same
id, a repeat), and the run holds no duplicates.

Exit status: 0 when every check passed; 1 when a check failed; 2 when the server could
not be used (an error answer, no answer). Usage:

    SYNCLOG_TOKEN=... python3 sync_app.py --url http://127.0.0.1:7070
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import sys
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional

from synclog_client import Client, SynclogError


class CheckFailed(Exception):
    """Something the app relies on did not hold."""


def check(condition: bool, what: str) -> None:
    if not condition:
        raise CheckFailed(what)


# ---- an unreliable network, on purpose ---------------------------------------------

@dataclass
class Broken:
    """An exchange the relay broke, and what the server had answered to it."""
    fault: str
    request_line: str
    status: Optional[int] = None
    body: Any = None
    done: threading.Event = field(default_factory=threading.Event)


class FlakyNetwork:
    """A TCP relay on 127.0.0.1 in front of the server that breaks the next exchanges
    it is told to, one fault per connection (urllib opens one per request):

    - "lost": the request reaches the server, which stores it and answers; the answer is
      held back until the client gives up (its timeout).
    - "reset": the request reaches the server; the client gets a reset connection
      instead of the answer.
    - "overloaded": the relay answers 503 with Retry-After: 1 itself; the server never
      sees the request.
    """

    def __init__(self, upstream_url: str):
        parts = urllib.parse.urlsplit(upstream_url)
        if parts.scheme != "http":
            raise SystemExit(f"the demo's relay speaks plain http, not {parts.scheme}: {upstream_url}")
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._faults: List[str] = []
        self._lock = threading.Lock()
        self.broken: List[Broken] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def break_next(self, fault: str) -> None:
        with self._lock:
            self._faults.append(fault)

    def last_broken(self, timeout: float = 30.0) -> Broken:
        """The latest broken exchange, once the relay is done with it."""
        b = self.broken[-1]
        check(b.done.wait(timeout), f"the relay never finished the {b.fault} exchange")
        return b

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            request = _read_message(conn)
            if not request:
                return
            with self._lock:
                fault = self._faults.pop(0) if self._faults else None
            if fault is None:
                conn.sendall(_exchange(self.upstream, request))
                return
            b = Broken(fault, request.split(b"\r\n", 1)[0].decode("latin-1"))
            self.broken.append(b)
            if fault == "overloaded":
                body = json.dumps({"error": {"kind": "overloaded",
                                             "message": "(relay) too busy; retry shortly"}}).encode()
                conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n"
                             b"Content-Type: application/json\r\nConnection: close\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                b.done.set()
                return
            b.status, b.body = _parse_answer(_exchange(self.upstream, request))
            b.done.set()
            if fault == "lost":
                try:
                    conn.recv(1)  # b"" once the client gives up and closes
                except OSError:
                    pass
            elif fault == "reset":
                # SO_LINGER 0: close() sends RST, not FIN.
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _exchange(upstream: tuple, request: bytes) -> bytes:
    with socket.create_connection(upstream, timeout=30) as up:
        up.sendall(request)
        return _read_message(up)


def _read_message(sock: socket.socket) -> bytes:
    """One HTTP/1.1 message: its head and a Content-Length body (else up to close)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while length is None or len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def _parse_answer(answer: bytes) -> tuple:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body else None


# ---- the sync -------------------------------------------------------------------

def healthy_source(n: int) -> Iterator[int]:
    yield from range(1, n + 1)


def broken_source(n: int, breaks_at: int) -> Iterator[int]:
    for item in range(1, n + 1):
        if item == breaks_at:
            raise ConnectionError(f"source API answered 502 Bad Gateway at item {item}")
        yield item


def write_item(item: int) -> bool:
    """The destination write, simulated: every 9th item is rejected."""
    return item % 9 != 0


def sync_run(client: Client, flaky: Client, net: FlakyNetwork, job: str, invocation: str,
             source: Iterator[int], page_size: int, faults: Dict[str, str]) -> Dict[str, Any]:
    """One run: start, sync page by page with a progress report after each, end it.

    faults: which writes go through the flaky network, and broken how: "page N" for a
    progress report, "finish" for the end. Returns what the run reported.
    """
    tags = {"invocation": invocation}
    started = client.start_run(job, message="sync started", attrs={**tags, "source": "demo"})
    check(not started["repeat"] and client.last_status == 201, "a new run's start is a 201, no repeat")
    run, started_at = started["run"], started["record"]["started_at"]
    print(f"run {run}: started (log {started['record']['id']})")

    seen = written = failed = 0
    page = 0
    progress: Dict[str, int] = {}  # idempotency key -> log id
    reports: Dict[str, Dict[str, Any]] = {}
    try:
        items = iter(source)
        while True:
            chunk = [item for _, item in zip(range(page_size), items)]
            if not chunk:
                break
            page += 1
            for item in chunk:
                seen += 1
                if write_item(item):
                    written += 1
                else:
                    failed += 1
            # The report of this page. Its key is derived from the run and the page, so a
            # resend (by the client's retry, or by this app after a crash) is the same log;
            # started_at is the run's, sent explicitly, so every resend is identical.
            key = f"{run}.progress.{page}"
            report = {"job": job, "status": "progress", "run": run, "started_at": started_at,
                      "items_seen": seen, "items_written": written, "items_failed": failed,
                      "message": f"page {page} done", "attrs": {**tags, "page": page}}
            fault = faults.get(f"page {page}")
            receipt = send(client, flaky, net, fault,
                           lambda c: c.append(report, idempotency_key=key))
            progress[key] = receipt["records"][0]["id"]
            reports[key] = report
            print(f"  page {page}: {seen} seen, {written} written, {failed} failed"
                  f" -> progress log {progress[key]}")
        status = "partial" if failed else "succeeded"
        message = f"{failed} of {seen} items rejected by the destination" if failed else "all items synced"
    except ConnectionError as e:
        # The run must end whatever happens: a run left open shows up as stale later.
        status, message = "failed", f"source failed after {seen} items: {e}"
    counts = {"items_seen": seen, "items_written": written, "items_failed": failed}
    finished = send(client, flaky, net, faults.get("finish"),
                    lambda c: c.finish_run(run, status, message=message, attrs=tags, **counts))
    finish_id = finished["record"]["id"]
    print(f"  finished: {status} ({message}) -> log {finish_id}")

    # What the server holds for this run must be exactly what was reported: the finish is
    # visible, the counts match, every progress report is there once.
    detail = client.get_run(run)
    r = detail["run"]
    check(r["finished"] and r["status"] == status,
          f"GET /v1/runs/{run} shows the finish ({r['status']}, finished={r['finished']})")
    check(all(r[k] == v for k, v in counts.items()), f"the run's counts are {counts}: {r}")
    expected_ids = [started["record"]["id"], *progress.values(), finish_id]
    check(r["record_ids"] == expected_ids,
          f"the run's records are {expected_ids}, got {r['record_ids']}")
    for key, log_id in progress.items():
        stored = [x for x in detail["records"] if x.get("idempotency_key") == key]
        check(len(stored) == 1 and stored[0]["id"] == log_id,
              f"progress {key} stored once, as log {log_id}")
    print(f"  GET /v1/runs/{run}: {status}, records {r['record_ids']}: as reported, none twice")
    return {"run": run, "status": status, "records": len(expected_ids), "reports": reports,
            "progress": progress}


FAULTS = {
    "lost": "the server will get the next write, its answer will not arrive",
    "reset": "the server will get the next write, the connection will then be reset",
    "overloaded": "the next write will meet a 503 with Retry-After: 1",
}


def send(client: Client, flaky: Client, net: FlakyNetwork, fault: Optional[str], call):
    """Makes a write, over the flaky network when a fault is asked for, and checks that
    the retries made it exactly-once."""
    if fault is None:
        return call(client)
    print(f"    (network: {FAULTS[fault]})")
    net.break_next(fault)
    began = time.monotonic()
    answer = call(flaky)
    took = time.monotonic() - began
    b = net.last_broken()
    check(flaky.last_attempts == 2, f"one retry after the {fault} fault, took {flaky.last_attempts} attempts")
    if fault == "overloaded":
        check(took >= 1.0, f"the retry waited for Retry-After: 1 (waited {took:.2f}s)")
        check(flaky.last_status == 201, f"the retry was stored (201), got {flaky.last_status}")
        print(f"    ok: the retry waited {took:.1f}s as Retry-After asked, then was stored (201)")
        return answer
    # The first attempt reached the server and its answer was lost: the retry must get
    # the same record back, and exactly one of the two answers created it.
    first = _record_and_repeat(b.body)
    retry = _record_and_repeat(answer)
    check(b.status in (200, 201), f"the lost answer was a success, got {b.status} {b.body}")
    check(first[0] == retry[0], f"the retry got the lost answer's record: log {first[0]} vs {retry[0]}")
    check(first[1] != retry[1], f"exactly one of the two attempts stored it (repeats {first[1]}, {retry[1]})")
    print(f"    ok: the lost answer was {b.status} log {first[0]}; the retry got "
          f"{flaky.last_status} log {retry[0]}, repeat={retry[1]}: stored once")
    return answer


def _record_and_repeat(answer: Dict[str, Any]) -> tuple:
    """(id, repeat) of the one record of an append's receipt or a run answer."""
    if "records" in answer:
        return answer["records"][0]["id"], answer["repeats"][0]
    return answer["record"]["id"], answer["repeat"]


# ---- main -----------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:7070", help="the synclog server")
    parser.add_argument("--job", default="python-client-demo", help="the job name to log under")
    parser.add_argument("--items", type=int, default=35, help="items the healthy run syncs")
    parser.add_argument("--page-size", type=int, default=10, help="items per progress report")
    args = parser.parse_args()
    # Lines in order with stderr when CI captures both into one log.
    sys.stdout.reconfigure(line_buffering=True)

    def on_retry(line: str) -> None:
        print(f"      retry: {line}")

    # The token comes from SYNCLOG_TOKEN (the Client reads it).
    client = Client(args.url, timeout=10.0, on_retry=on_retry)
    net = FlakyNetwork(args.url)
    # Over the flaky network: a short timeout, so a lost answer is noticed quickly.
    flaky = Client(net.url, timeout=2.0, retries=3, on_retry=on_retry)
    # Tags every record this execution writes, so the checks hold on a shared store.
    invocation = uuid.uuid4().hex[:12]
    job = args.job
    try:
        health = client.health()
        copies = ", ".join(f"{c['copy']} {c['state']}" for c in health["copies"])
        print(f"server {args.url}: {health['status']} ({copies}); job {job}, invocation {invocation}")
        check(health["status"] == "ok", f"the server is healthy: {health}")

        # 1. A healthy run: partial, since the destination rejects some items. Page 1's
        #    answer is lost (timeout), page 2 meets a 503, the finish's answer is reset.
        print("\n1. a run over an unreliable network")
        a = sync_run(client, flaky, net, job, invocation, healthy_source(args.items), args.page_size,
                     faults={"page 1": "lost", "page 2": "overloaded", "finish": "reset"})

        # 2. Re-sending by hand (what an app does after a crash): the same key and the
        #    same body are a repeat; the same key with other content is refused.
        print("\n2. re-sending page 1's report")
        key, report = next(iter(a["reports"].items()))
        again = client.append(report, idempotency_key=key)
        check(client.last_status == 200 and again["repeats"] == [True]
              and again["records"][0]["id"] == a["progress"][key],
              f"the same report again is a repeat of log {a['progress'][key]}: {again}")
        print(f"  same key, same body: 200, log {again['records'][0]['id']}, repeat")
        try:
            client.append({**report, "items_seen": report["items_seen"] + 1}, idempotency_key=key)
            raise CheckFailed("the same key with other content was accepted")
        except SynclogError as e:
            check(e.status == 409 and e.kind == "refused", f"409 refused, got {e}")
            print(f"  same key, other body: {e.status} {e.kind}: nothing written")

        # 3. A run whose source breaks: it still ends, as failed, with the reason.
        print("\n3. a run whose source breaks")
        b = sync_run(client, flaky, net, job, invocation, broken_source(args.items, breaks_at=15),
                     args.page_size, faults={})
        check(b["status"] == "failed", "the broken source's run failed")

        # 4. The failures, read back page by page (limit=1 makes every log its own page).
        print(f"\n4. failures of {job} in the last 24h (status=failed)")
        failures = list(client.logs(job=job, status="failed", limit=1, order="desc",
                                    **{"from": "24h"}))
        for log in failures[:5]:
            print(f"  log {log['id']} run {log.get('run')}: {log['message']}")
        if len(failures) > 5:
            print(f"  ... and {len(failures) - 5} more")
        ours = [x for x in failures if x["attrs"].get("invocation") == invocation]
        check(len(ours) == 1 and ours[0]["run"] == b["run"],
              f"exactly this execution's failed run is listed: {ours}")

        # Everything this execution wrote, paged 3 at a time: as many as the runs hold
        # (retries added nothing), in id order, none twice, and /v1/count agrees.
        mine = list(client.logs(attrs={"invocation": invocation}, limit=3))
        ids = [x["id"] for x in mine]
        total = a["records"] + b["records"]
        check(ids == sorted(set(ids)), f"pages in id order, no id twice: {ids}")
        check(len(ids) == total, f"{total} logs written by this execution, found {len(ids)}")
        check(client.count(attrs={"invocation": invocation}) == total, "/v1/count agrees")
        unfinished = {r["key"] for r in client.runs(job=job, unfinished=True)}
        check(not unfinished & {a["run"], b["run"]}, "neither run is left unfinished")
        print(f"  this execution wrote {total} logs (read back 3 per page), none twice; "
              f"no run left open")

        # 5. The summary of the job.
        print("\n5. summary")
        summary = client.summary(job=job)
        jobs = {j["job"]: j for j in summary["jobs"]}
        check(job in jobs, f"{job} is in the summary")
        j = jobs[job]
        counts = ", ".join(f"{k} {v}" for k, v in sorted(j["counts"].items()))
        print(f"  {job}: latest {j['latest']['status']} (log {j['latest']['id']}), "
              f"{j['consecutive_failures']} failure(s) since the last success")
        print(f"  logs by status: {counts}")
        if j.get("latest_success"):
            print(f"  latest success: log {j['latest_success']['id']} at {j['latest_success']['recorded_at']}")
        check(j["counts"].get("failed", 0) >= 1, "the failure is counted")
        print(f"  every job's last run succeeded: {summary['all_last_succeeded']}; "
              f"logs in the store: {client.count()}")
    except CheckFailed as e:
        print(f"\nFAIL: {e}", file=sys.stderr)
        return 1
    except SynclogError as e:
        print(f"\nFAIL: the server could not be used: {e}", file=sys.stderr)
        return 2
    finally:
        net.close()
    print("\nOK: every check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A small client for the HTTP API of `synclog serve`, standard library only.

    from synclog_client import Client, SynclogError

    c = Client("http://127.0.0.1:7070")          # token from SYNCLOG_TOKEN
    run = c.start_run("crm-contacts", attrs={"region": "eu"})
    c.append({"job": "crm-contacts", "status": "progress", "run": run["run"],
              "items_seen": 50}, idempotency_key=run["run"] + ".progress.1")
    c.finish_run(run["run"], "succeeded", items_seen=120, items_written=120)
    for log in c.logs(job="crm-contacts", status="failed", **{"from": "24h"}):
        print(log["id"], log["message"])

Every write this client sends is safe to send twice, and that is what makes the retries
below exactly-once:

- `append` always carries an idempotency key (yours, or a fresh one) and always carries
  `started_at` (the server would otherwise fill in "now", and a retry's "now" differs
  from the first attempt's, so the server would refuse it as other content).
- `start_run` does the same, and fixes the run key on the client.
- finishing or abandoning a run the same way twice is a repeat on the server's side.

The body is serialised once, before the first attempt, and the very same bytes are sent
on every retry. A retry of a write whose answer got lost (a timeout, a reset connection)
is answered 200 with the record stored the first time: same id, `repeat` true.

Retried: 503 (after `Retry-After`), 408, timeouts and broken connections; at most
`retries` times, then the last error is raised. Any other error answer is raised at once
as a `SynclogError` carrying the API's `kind`, the HTTP status and the message.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import os
import random
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Union

__all__ = ["Client", "SynclogError", "SynclogConnectionError", "utc_now"]

# A value for a repeatable query parameter: one value or several.
Many = Union[None, str, Sequence[str]]


class SynclogError(Exception):
    """An error answer of the API: `{"error": {"kind", "message"}}` with its status.

    `kind` is the API's stable name to match on: invalid_input, unauthorized, forbidden,
    not_found, conflict, refused, too_large, timeout, overloaded, unavailable, corrupt,
    unsupported, internal.
    """

    def __init__(self, kind: str, status: Optional[int], message: str,
                 retry_after: Optional[float] = None):
        super().__init__(f"{kind} ({status}): {message}" if status else f"{kind}: {message}")
        self.kind = kind
        self.status = status
        self.message = message
        self.retry_after = retry_after


class SynclogConnectionError(SynclogError):
    """No answer came back (refused, reset, timed out), even after the retries.

    For a write, the server may or may not have stored it: send it again with the same
    idempotency key and body to find out (a stored one comes back as a repeat).
    """

    def __init__(self, message: str, cause: BaseException):
        super().__init__("connection", None, message)
        self.__cause__ = cause


def utc_now() -> str:
    """Now as RFC 3339 in UTC, to the microsecond (what the server keeps)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


# The statuses worth another attempt: the server said "not now" (503) or the body did not
# arrive in time (408); in both cases nothing was written.
_RETRY_STATUSES = {408, 503}
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class Client:
    """A client of one synclog server.

    url: the server, e.g. http://127.0.0.1:7070.
    token: the bearer token; default the SYNCLOG_TOKEN environment variable (none: no
        Authorization header, for a loopback server without a token).
    timeout: seconds per attempt (connect, then each read); a call may override it.
    retries: further attempts after the first, for the errors listed in the module doc.
    max_retry_after: the longest Retry-After honoured, in seconds (a longer one is cut).
    on_retry: called with a line of text before each retry (default: nothing).
    """

    def __init__(self, url: str, token: Optional[str] = None, *, timeout: float = 10.0,
                 retries: int = 4, max_retry_after: float = 30.0,
                 on_retry: Optional[Callable[[str], None]] = None):
        self.url = url.rstrip("/")
        self.token = token if token is not None else os.environ.get("SYNCLOG_TOKEN") or None
        self.timeout = timeout
        self.retries = retries
        self.max_retry_after = max_retry_after
        self.on_retry = on_retry or (lambda line: None)
        # How the last call went: its final HTTP status and how many attempts it took.
        self.last_status: Optional[int] = None
        self.last_attempts = 0
        # An http_proxy in the environment must not capture requests to this machine.
        host = urllib.parse.urlsplit(self.url).hostname or ""
        handlers = [urllib.request.ProxyHandler({})] if host in _LOOPBACK else []
        self._opener = urllib.request.build_opener(*handlers)

    # ---- writes -------------------------------------------------------------------

    def start_run(self, job: str, *, run: Optional[str] = None, message: str = "",
                  attrs: Optional[Mapping[str, Any]] = None, started_at: Optional[str] = None,
                  idempotency_key: Optional[str] = None, timeout: Optional[float] = None
                  ) -> Dict[str, Any]:
        """Starts a run: {"run": key, "record": {...}, "repeat": bool}.

        The run key, the start time and the idempotency key are fixed here, before the
        first attempt, so a retry is the same start and comes back as a repeat. Pass them
        yourself to make a start repeatable across restarts of your program.
        """
        run = run or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:16]
        body = {
            "job": job,
            "run": run,
            "message": message,
            "attrs": dict(attrs or {}),
            "started_at": started_at or utc_now(),
        }
        key = idempotency_key or f"{run}.start"
        return self._call("POST", "/v1/runs", body=body, idempotency_key=key, timeout=timeout)

    def append(self, logs: Union[Mapping[str, Any], Sequence[Mapping[str, Any]]], *,
               idempotency_key: Optional[str] = None, timeout: Optional[float] = None
               ) -> Dict[str, Any]:
        """Appends one log (a dict) or a batch (a list of dicts, stored all or none).

        Answers the receipt: {"records": [...], "repeats": [...], "durable_in", "verified"}.
        The idempotency key goes in the Idempotency-Key header (for a batch, log i is
        stored under "KEY.i"); without one a fresh key is made, so even an anonymous
        append is exactly-once across this call's retries. Logs without `started_at` get
        now, once, before the first attempt.
        """
        batch = not isinstance(logs, Mapping)
        items = [dict(log) for log in (logs if batch else [logs])]
        stamp = utc_now()
        for log in items:
            if log.get("idempotency_key"):
                raise ValueError("pass the key as idempotency_key=, not inside a log")
            if not log.get("started_at"):
                log["started_at"] = stamp
        key = idempotency_key or _new_key("log")
        body: Any = items if batch else items[0]
        return self._call("POST", "/v1/logs", body=body, idempotency_key=key, timeout=timeout)

    def finish_run(self, run: str, status: str, *, items_seen: int = 0, items_written: int = 0,
                   items_failed: int = 0, message: str = "",
                   attrs: Optional[Mapping[str, Any]] = None, timeout: Optional[float] = None
                   ) -> Dict[str, Any]:
        """Ends a run: status is succeeded, failed, partial, skipped or abandoned.

        The same finish again is a repeat (200, the stored record); a different one for a
        run that has ended is a SynclogError with status 409; an unknown run is a 404.
        """
        body = {
            "status": status,
            "items_seen": items_seen,
            "items_written": items_written,
            "items_failed": items_failed,
            "message": message,
            "attrs": dict(attrs or {}),
        }
        return self._call("POST", f"/v1/runs/{_seg(run)}/finish", body=body, timeout=timeout)

    def abandon_run(self, run: str, reason: str, *, timeout: Optional[float] = None
                    ) -> Dict[str, Any]:
        """Gives up a run that will never finish (its `abandoned` record)."""
        return self._call("POST", f"/v1/runs/{_seg(run)}/abandon", body={"reason": reason},
                          timeout=timeout)

    # ---- reads --------------------------------------------------------------------

    def logs(self, *, job: Many = None, status: Many = None,
             attrs: Optional[Mapping[str, Any]] = None, run: Optional[str] = None,
             limit: Optional[int] = None, order: Optional[str] = None, **more: Any
             ) -> Iterator[Dict[str, Any]]:
        """Every log matching the filters, fetched a page at a time by following `next`.

        attrs: {key: value}, each must equal (values sent as JSON, so 1 and "1" differ).
        limit: the page size (1..1000). more: other filters by their API names, e.g.
        **{"from": "24h"}, until=..., recorded_from=...
        """
        query = _query(job=job, status=status, attrs=attrs, run=run, limit=limit,
                       order=order, **more)
        return self._pages("/v1/logs", "logs", query)

    def runs(self, *, job: Many = None, status: Many = None,
             attrs: Optional[Mapping[str, Any]] = None, unfinished: bool = False,
             stale: bool = False, older_than: Optional[str] = None,
             limit: Optional[int] = None, order: Optional[str] = None, **more: Any
             ) -> Iterator[Dict[str, Any]]:
        """Every run (one row each) matching the filters, page by page.

        unfinished: only runs not ended; stale: only runs not ended and started more than
        older_than (default 24h) ago.
        """
        query = _query(job=job, status=status, attrs=attrs, limit=limit, order=order,
                       unfinished="true" if unfinished else None,
                       stale="true" if stale else None, older_than=older_than, **more)
        return self._pages("/v1/runs", "runs", query)

    def get_run(self, run: str) -> Dict[str, Any]:
        """One run with its records: {"run": {...}, "records": [...]}."""
        return self._call("GET", f"/v1/runs/{_seg(run)}")

    def summary(self, *, job: Many = None, status: Many = None,
                attrs: Optional[Mapping[str, Any]] = None, **more: Any) -> Dict[str, Any]:
        """Per job: latest log, latest success, failures since, counts, sums."""
        query = _query(job=job, status=status, attrs=attrs, **more)
        return self._call("GET", "/v1/summary", query=query)

    def count(self, *, job: Many = None, status: Many = None,
              attrs: Optional[Mapping[str, Any]] = None, **more: Any) -> int:
        """How many logs match the filters."""
        query = _query(job=job, status=status, attrs=attrs, **more)
        return int(self._call("GET", "/v1/count", query=query)["count"])

    def health(self) -> Dict[str, Any]:
        """The server's and the store's state: {"status": "ok"|"degraded", "copies", ...}."""
        return self._call("GET", "/v1/health")

    # ---- the transport ------------------------------------------------------------

    def _pages(self, path: str, field: str, query: str) -> Iterator[Dict[str, Any]]:
        while True:
            page = self._call("GET", path, query=query)
            yield from page[field]
            # `next` is the whole query string of the next page; absent on the last one.
            query = page.get("next") or ""
            if not query:
                return

    def _call(self, method: str, path: str, *, query: str = "", body: Any = None,
              idempotency_key: Optional[str] = None, timeout: Optional[float] = None) -> Any:
        url = self.url + path + ("?" + query if query else "")
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        # Serialised once: every attempt sends exactly these bytes.
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode("utf-8")
            headers["Content-Type"] = "application/json"
        timeout = self.timeout if timeout is None else timeout

        attempt = 0
        while True:
            attempt += 1
            self.last_attempts = attempt
            request = urllib.request.Request(url, data=data, headers=headers, method=method)
            try:
                with self._opener.open(request, timeout=timeout) as response:
                    raw = response.read()
                    self.last_status = response.status
                    return json.loads(raw) if raw else None
            except urllib.error.HTTPError as e:
                # An answer, but an error one: 4xx/5xx.
                self.last_status = e.code
                error = _error_of(e)
                if e.code not in _RETRY_STATUSES or attempt > self.retries:
                    raise error from None
                honoured = error.retry_after is not None
                wait = min(error.retry_after if honoured else _backoff(attempt),
                           self.max_retry_after)
                self.on_retry(f"{method} {path}: {e.code} {error.kind}; retry {attempt} of "
                              f"{self.retries} in {wait:.1f}s"
                              + (" (Retry-After)" if honoured else ""))
                time.sleep(wait)
            except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
                # No answer: refused, reset, cut off mid-answer or timed out. The request
                # may have been stored; the same key and body make the retry safe.
                self.last_status = None
                reason = getattr(e, "reason", None) or e
                if attempt > self.retries:
                    raise SynclogConnectionError(
                        f"{method} {url}: no answer after {attempt} attempts: {_describe(reason)}",
                        e) from e
                wait = _backoff(attempt)
                same = ("; the same idempotency key and body" if idempotency_key
                        else "; the same body" if data is not None else "")
                self.on_retry(f"{method} {path}: {_describe(reason)}; retry {attempt} of "
                              f"{self.retries} in {wait:.1f}s{same}")
                time.sleep(wait)


def _error_of(e: urllib.error.HTTPError) -> SynclogError:
    """The SynclogError of an error answer; tolerates a body that is not the API's."""
    try:
        raw = e.read()
    except (OSError, http.client.HTTPException):
        raw = b""
    kind, message = f"http_{e.code}", (raw.decode("utf-8", "replace").strip() or e.reason)
    try:
        detail = json.loads(raw)["error"]
        kind, message = str(detail["kind"]), str(detail["message"])
    except (ValueError, KeyError, TypeError):
        pass
    return SynclogError(kind, e.code, str(message), _retry_after(e.headers.get("Retry-After")))


def _retry_after(value: Optional[str]) -> Optional[float]:
    """Retry-After in seconds: either a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _backoff(attempt: int) -> float:
    """Exponential backoff with jitter: ~0.2s, 0.4s, 0.8s, ... at most 5s."""
    return min(5.0, 0.2 * 2 ** (attempt - 1)) * random.uniform(0.75, 1.25)


def _describe(reason: Any) -> str:
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return "timed out"
    return f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__


def _new_key(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def _seg(text: str) -> str:
    """A path segment: a run key with any character in it, escaped."""
    return urllib.parse.quote(text, safe="")


def _query(*, attrs: Optional[Mapping[str, Any]] = None, **params: Any) -> str:
    """A query string; lists repeat the parameter, None is left out, a trailing _ is
    dropped (from_ -> from), attrs become attr=KEY=JSON."""
    pairs: List[tuple] = []
    for name, value in params.items():
        if value is None:
            continue
        name = name[:-1] if name.endswith("_") else name
        values = value if isinstance(value, (list, tuple)) else [value]
        pairs.extend((name, str(v)) for v in values)
    for key, value in (attrs or {}).items():
        pairs.append(("attr", f"{key}={json.dumps(value)}"))
    return urllib.parse.urlencode(pairs)

"""JSON over HTTP for the server runtime, with the limits a batch job needs from a server it does not
control. Standard library only.

- One deadline per attempt: connecting, sending and reading the WHOLE answer must end within
  `timeout` seconds (`vlground.io.sources.Deadline` shuts the socket when it passes), so a server that trickles a byte
  a second cannot hold a call past its timeout.
- A maximum answer size (`max_body` bytes): a larger answer is refused, never read whole.
- HTTP 429 and 503 are retried with exponential backoff, honouring `Retry-After` (seconds or a date)
  up to `retries` times and `max_wait` seconds per wait; giving up says how often and how long.
- Redirects are never followed: a 3xx is an error naming where it points, so the API key is never
  sent to another origin and a POST never silently becomes a GET."""
from __future__ import annotations

import email.utils
import http.client
import json
import logging
import time
import urllib.parse
from dataclasses import dataclass

from vlground.io.sources import Deadline

log = logging.getLogger("vlground")

RETRIED = {429: "rate limited", 503: "unavailable"}


class ServerError(OSError):
    """The server could not be reached, refused a request, or answered something unusable; the
    message names the URL and what to check."""


class HTTPStatusError(ServerError):
    """The server answered with an error status; `status` and `body` (its text, cut short) say which."""

    def __init__(self, message: str, status: int, body: str):
        super().__init__(message)
        self.status = status
        self.body = body


@dataclass(frozen=True)
class HTTPPolicy:
    """Limits of one call: `timeout` seconds per attempt (connect + send + whole answer), `max_body`
    bytes of answer, `retries` on 429/503 with waits from `backoff` seconds doubling, each wait at
    most `max_wait` seconds (a longer Retry-After ends the call at once)."""

    timeout: float = 300.0
    max_body: int = 32 * 2**20
    retries: int = 4
    backoff: float = 0.5
    max_wait: float = 60.0


def request_json(url: str, headers: dict[str, str], policy: HTTPPolicy, payload: dict | None = None) -> dict:
    """The JSON object answered to a GET (or a POST of `payload`) of `url`; every failure is a
    ServerError (HTTPStatusError for an error status) that names the URL and what to check."""
    data = None if payload is None else json.dumps(payload).encode()
    waited = 0.0
    for attempt in range(policy.retries + 1):
        status, reply_headers, body = _attempt(url, data, {**headers, "Content-Type": "application/json"}, policy)
        if status not in RETRIED:
            break
        wait = _retry_wait(reply_headers.get("Retry-After"), policy.backoff * 2**attempt)
        if attempt == policy.retries or wait > policy.max_wait:
            why = (f"asked to retry after {wait:g} s, more than the {policy.max_wait:g} s allowed"
                   if wait > policy.max_wait else f"still {RETRIED[status]} after {attempt + 1} tries over {waited:.1f} s")
            raise HTTPStatusError(f"{url} answered HTTP {status} ({RETRIED[status]}), {why}; giving up: lower the "
                                  "number of requests in flight (batch size) or try again later", status, _text(body))
        log.warning("%s answered HTTP %d; retrying in %.1f s", url, status, wait)
        time.sleep(wait)
        waited += wait
    if 300 <= status < 400:
        raise ServerError(f"{url} redirected (HTTP {status}) to {reply_headers.get('Location')!r}; redirects are not "
                          "followed, so the API key never goes elsewhere: use the final address as the API base")
    if status >= 400:
        detail = _text(body)
        raise HTTPStatusError(f"{url} answered HTTP {status}: {detail}; {_advice(status)}", status, detail)
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise ServerError(f"{url} answered something that is not a JSON object: {body[:200]!r}; is this an OpenAI-compatible API base?")
    return answer


def _attempt(url: str, data: bytes | None, headers: dict[str, str], policy: HTTPPolicy):
    """(status, headers, body) of one request, within `policy.timeout` seconds in all."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ServerError(f"{url} is not an http(s) URL")
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_class(parts.hostname, parts.port, timeout=policy.timeout)
    target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
    with Deadline(policy.timeout) as deadline:
        try:
            connection.connect()
            deadline.watch(connection.sock)
            connection.request("GET" if data is None else "POST", target, body=data, headers=headers)
            response = connection.getresponse()
            body = _read_body(response, policy.max_body, url)
            if deadline.expired.is_set():
                raise TimeoutError
            return response.status, response.headers, body
        except (OSError, http.client.HTTPException) as error:
            if isinstance(error, ServerError):
                raise
            if deadline.expired.is_set() or isinstance(error, TimeoutError):
                raise ServerError(f"{url} did not answer within {policy.timeout:g} s; raise the timeout or check the server's load") from error
            raise ServerError(f"cannot reach {url} ({error}); check that the server is running and the host and port are right") from error
        finally:
            connection.close()


def _read_body(response: http.client.HTTPResponse, max_body: int, url: str) -> bytes:
    declared = response.getheader("Content-Length")
    too_big = f"{url} sent an answer over the {max_body} byte limit; refused unread"
    if declared is not None and declared.isdigit() and int(declared) > max_body:
        raise ServerError(too_big)
    chunks, size = [], 0
    while chunk := response.read1(65536):
        size += len(chunk)
        if size > max_body:
            raise ServerError(too_big)
        chunks.append(chunk)
    return b"".join(chunks)


def _retry_wait(retry_after: str | None, fallback: float) -> float:
    """Seconds to wait: the server's Retry-After (delay seconds or an HTTP date) if it gave a usable one."""
    if retry_after:
        value = retry_after.strip()
        if value.isdigit():
            return float(value)
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            pass
    return fallback


def _text(body: bytes) -> str:
    return body[:300].decode("utf-8", "replace")


def _advice(status: int) -> str:
    if status in (401, 403):
        return "check the API key (api_key, or the OPENAI_API_KEY environment variable)"
    if status == 404:
        return "check that the URL is the API base (it usually ends in /v1) and the model name is one the server lists at /v1/models"
    if 400 <= status < 500:
        return "the server refused the request; its message says why (an image too large for its context, a wrong model name, ...)"
    return "the server failed; check its log"

"""Open a local HTML file in headless Chromium and report what a reader would get: which images
loaded, the console errors, and a screenshot. Talks the DevTools protocol over its websocket.

A browser that cannot be started raises BrowserUnavailable with the reason (tests must fail on it,
not skip): Debian's `chromium` package is what CI installs."""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")


class BrowserUnavailable(RuntimeError):
    pass


@dataclass
class Rendering:
    images: list[dict]  # per <img>: src (start), complete, naturalWidth, naturalHeight
    errors: list[str] = field(default_factory=list)  # console errors, exceptions, failed loads
    screenshot: bytes = b""  # PNG of the viewport
    page_height: int = 0


def _executable() -> str:
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise BrowserUnavailable(f"no Chromium found (looked for {', '.join(CANDIDATES)}); install it: apt-get install -y chromium")


def _start(profile: str) -> tuple[subprocess.Popen, str]:
    """Chromium listening on a free port; returns the process and its DevTools http address."""
    browser = subprocess.Popen(
        [_executable(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    seen = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = browser.stderr.readline()
        if not line and browser.poll() is not None:
            break
        seen.append(line)
        match = re.search(r"DevTools listening on ws://([\d.]+:\d+)/", line)
        if match:
            return browser, f"http://{match[1]}"
    _stop(browser)
    raise BrowserUnavailable("Chromium did not start: " + "".join(seen[-10:]).strip())


def _stop(browser: subprocess.Popen) -> None:
    """Kill Chromium with its helper processes (its own session), and wait until all are gone, so
    none still writes into the profile folder while it is removed."""
    import signal

    try:
        os.killpg(browser.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    browser.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(browser.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


class _Session:
    """One page's DevTools connection: commands wait for their answer; events are kept."""

    def __init__(self, url: str):
        import websocket

        self.socket = websocket.create_connection(url, timeout=30, suppress_origin=True)
        self.events: list[dict] = []
        self.next_id = 0

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]
            self.events.append(message)

    def wait_for(self, event: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == event for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {event} within {timeout} s")
            self.events.append(json.loads(self.socket.recv()))


def _errors(events: list[dict]) -> list[str]:
    out = []
    for e in events:
        params = e.get("params", {})
        if e.get("method") == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            out.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
        elif e.get("method") == "Runtime.exceptionThrown":
            out.append("exception: " + params["exceptionDetails"].get("text", ""))
        elif e.get("method") == "Log.entryAdded" and params["entry"]["level"] == "error":
            out.append(f"log ({params['entry']['source']}): {params['entry']['text']}")
    return out


_IMAGES = "JSON.stringify(Array.from(document.images, i => ({src: i.src.slice(0, 30), complete: i.complete, " \
          "naturalWidth: i.naturalWidth, naturalHeight: i.naturalHeight})))"


def render(path: str | Path, width: int = 1280, height: int = 900) -> Rendering:
    """Load `path` at a `width` x `height` viewport and return what rendered."""
    with tempfile.TemporaryDirectory() as profile:
        browser, address = _start(profile)
        try:
            pages = json.load(urllib.request.urlopen(f"{address}/json/list", timeout=10))
            page = next(p for p in pages if p.get("type") == "page")
            session = _Session(page["webSocketDebuggerUrl"])
            for domain in ("Page", "Runtime", "Log"):
                session.call(f"{domain}.enable")
            session.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
            session.call("Page.navigate", url=Path(path).resolve().as_uri())
            session.wait_for("Page.loadEventFired")
            images = json.loads(session.call("Runtime.evaluate", expression=_IMAGES, returnByValue=True)["result"]["value"])
            page_height = session.call("Runtime.evaluate", expression="document.body.scrollHeight", returnByValue=True)
            shot = base64.b64decode(session.call("Page.captureScreenshot", format="png")["data"])
            session.socket.close()
            return Rendering(images, _errors(session.events), shot, int(page_height["result"]["value"]))
        finally:
            _stop(browser)

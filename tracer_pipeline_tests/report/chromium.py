"""Headless Chromium with no network, driven over the Chrome DevTools Protocol, for page tests.

Chromium (Debian's `chromium` package; `.ci/run` installs it when missing) starts with a fresh
profile, every background service off, and every request that would leave the machine sent to a
proxy that does not exist, with host names unresolvable: a request the page makes can only fail.
The driver records every request the page makes and every failure (network errors, requests
blocked by the page's Content-Security-Policy, HTTP errors), JavaScript exceptions and console
errors, and evaluates JavaScript in the page to inspect its DOM.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

EXECUTABLE_NAMES = ("chromium", "chromium-browser")
STARTUP_TIMEOUT_S = 60.0
COMMAND_TIMEOUT_S = 60.0
# Quiet time after the load event during which late requests are still recorded.
SETTLE_S = 0.5
# Nothing listens on the discard port of the loopback address: the proxy refuses every request.
UNREACHABLE_PROXY = "http://127.0.0.1:9"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-dev-shm-usage",  # containers often have a small /dev/shm
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-features=MediaRouter,OptimizationHints,Translate",
    "--metrics-recording-only",
    "--mute-audio",
    "--hide-scrollbars",
    f"--proxy-server={UNREACHABLE_PROXY}",
    "--proxy-bypass-list=<-loopback>",  # loopback goes to the (refusing) proxy too
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--window-size=1280,1600",
    "--remote-debugging-port=0",
)


def chromium_or_skip() -> str:
    """The Chromium executable; in CI (env CI set) a missing Chromium fails the test.

    Outside CI the test is skipped with the reason, so that a developer without Chromium can
    still run the rest of the suite.
    """
    for name in EXECUTABLE_NAMES:
        executable = shutil.which(name)
        if executable:
            return executable
    missing = "Chromium is not installed (Debian: apt-get install chromium; .ci/run does it)"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"CI must run the browser tests: {missing}")
    pytest.skip(missing)


@dataclass
class PageLoad:
    """What happened while a page loaded: its requests, failures and errors."""

    url: str
    requests: list[str] = field(default_factory=list)
    failed_requests: list[dict[str, Any]] = field(default_factory=list)
    exceptions: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)


class HeadlessChromium:
    """One headless Chromium process and one page in it, as a context manager.

    Example:
        with HeadlessChromium(executable) as browser:
            load = browser.open(path)
            title = browser.evaluate("document.title")
    """

    def __init__(self, executable: str) -> None:
        self.executable = executable
        self._profile = tempfile.TemporaryDirectory(prefix="tracer-chromium-")
        self._process: subprocess.Popen | None = None
        self._socket = None
        self._session_id: str | None = None
        self._next_id = 0
        self._events: list[dict[str, Any]] = []

    def __enter__(self) -> HeadlessChromium:
        profile = Path(self._profile.name)
        self._process = subprocess.Popen(
            [self.executable, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._socket = connect(
            self._browser_websocket_url(profile), max_size=None, open_timeout=STARTUP_TIMEOUT_S
        )
        target = self._command("Target.createTarget", {"url": "about:blank"})
        attached = self._command(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        self._session_id = attached["sessionId"]
        for domain in ("Page", "Network", "Runtime", "Log"):
            self._command(f"{domain}.enable")
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self._socket is not None:
                self._socket.close()
        finally:
            if self._process is not None:
                self._process.terminate()
                try:
                    self._process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
            self._profile.cleanup()

    def open(self, path: Path) -> PageLoad:
        """Load a local file and wait for its load event; return what it requested and broke."""
        url = path.resolve().as_uri()
        self._events.clear()
        navigation = self._command("Page.navigate", {"url": url})
        if navigation.get("errorText"):
            raise RuntimeError(f"Chromium could not open {url}: {navigation['errorText']}")
        self._wait_for_event("Page.loadEventFired")
        settle_until = time.monotonic() + SETTLE_S
        while time.monotonic() < settle_until:
            self._receive(timeout=max(0.0, settle_until - time.monotonic()))
        return self._page_load(url)

    def evaluate(self, expression: str) -> Any:
        """The JSON value of a JavaScript expression evaluated in the page.

        Raises:
            RuntimeError: if the expression throws.
        """
        result = self._command(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        """Save a PNG of the whole page (not only the window) to `path`."""
        data = self._command(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}
        )["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    def _page_load(self, url: str) -> PageLoad:
        load = PageLoad(url=url)
        for event in self._events:
            method, params = event["method"], event.get("params", {})
            if method == "Network.requestWillBeSent":
                load.requests.append(params["request"]["url"])
            elif method == "Network.loadingFailed":
                load.failed_requests.append(
                    {
                        "url": self._request_url(params["requestId"]),
                        "error": params.get("errorText"),
                        "blocked_reason": params.get("blockedReason"),
                    }
                )
            elif method == "Network.responseReceived" and params["response"]["status"] >= 400:
                load.failed_requests.append(
                    {"url": params["response"]["url"], "error": params["response"]["status"]}
                )
            elif method == "Runtime.exceptionThrown":
                load.exceptions.append(json.dumps(params["exceptionDetails"])[:500])
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                load.console_errors.append(params["entry"]["text"])
            elif method == "Runtime.consoleAPICalled" and params["type"] == "error":
                load.console_errors.append(json.dumps(params["args"])[:500])
        return load

    def _request_url(self, request_id: str) -> str | None:
        for event in self._events:
            if (
                event["method"] == "Network.requestWillBeSent"
                and event["params"]["requestId"] == request_id
            ):
                return event["params"]["request"]["url"]
        return None

    def _browser_websocket_url(self, profile: Path) -> str:
        """Chromium writes its DevTools port and path to the profile once it listens."""
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"Chromium exited with code {self._process.returncode}")
            lines = port_file.read_text().split() if port_file.exists() else []
            if len(lines) == 2:
                return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
            time.sleep(0.1)
        raise TimeoutError(f"Chromium did not open its DevTools port in {STARTUP_TIMEOUT_S} s")

    def _command(self, method: str, params: dict | None = None) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if self._session_id is not None:
            message["sessionId"] = self._session_id
        self._socket.send(json.dumps(message))
        deadline = time.monotonic() + COMMAND_TIMEOUT_S
        while time.monotonic() < deadline:
            reply = self._receive(timeout=deadline - time.monotonic())
            if reply is not None and reply.get("id") == message["id"]:
                if "error" in reply:
                    raise RuntimeError(f"{method} failed: {reply['error']}")
                return reply.get("result", {})
        raise TimeoutError(f"no reply to {method} in {COMMAND_TIMEOUT_S} s")

    def _wait_for_event(self, method: str) -> None:
        deadline = time.monotonic() + COMMAND_TIMEOUT_S
        while time.monotonic() < deadline:
            message = self._receive(timeout=deadline - time.monotonic())
            if message is not None and message.get("method") == method:
                return
        raise TimeoutError(f"no {method} in {COMMAND_TIMEOUT_S} s")

    def _receive(self, timeout: float) -> dict[str, Any] | None:
        """One message from Chromium (events are recorded), or None when none came in time."""
        try:
            message = json.loads(self._socket.recv(timeout=timeout))
        except TimeoutError:
            return None
        if "method" in message and message.get("sessionId") == self._session_id:
            self._events.append(message)
        return message

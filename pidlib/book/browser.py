"""A headless Chromium driven over the DevTools protocol on a pipe: offline, standard library only.

Chromium is started with ``--remote-debugging-pipe``: commands go in on its file descriptor 3 and
replies and events come out on 4, as NUL-terminated JSON. No port is opened and no Python
package is needed beyond the standard library; the browser is the distribution's ``chromium``
(Debian: ``apt-get install chromium``) or any Chrome found on ``PATH``, or ``$PIDBOOK_CHROMIUM``.
Name resolution and proxying are pointed at nothing, and every page is emulated offline, so a
page that tries to reach the network fails to, and the attempt is recorded.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["CHROMIUM_NAMES", "INSTALL_HINT", "find_chromium", "Browser", "Page", "BrowserError"]

#: Executables tried in this order (after ``$PIDBOOK_CHROMIUM``).
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: What to install when none is found.
INSTALL_HINT = (
    "install the Debian package 'chromium' (apt-get install chromium) or set PIDBOOK_CHROMIUM"
)

_FLAGS = (
    "--headless=new",
    "--remote-debugging-pipe",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--hide-scrollbars",
    "--mute-audio",
    "--allow-file-access-from-files",
    # offline: no name resolves, and a proxy nobody listens on catches direct addresses
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=http://127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
)


class BrowserError(RuntimeError):
    """Chromium failed to start, answered with an error, or took too long."""


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable, or None."""
    env = os.environ.get("PIDBOOK_CHROMIUM")
    if env:
        return env if Path(env).exists() else shutil.which(env)
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """One headless Chromium process; use as a context manager, open pages with :meth:`page`."""

    def __init__(self, executable: str | None = None, *, timeout: float = 60.0):
        exe = executable or find_chromium()
        if exe is None:
            raise BrowserError(f"no Chromium found: {INSTALL_HINT}")
        self.timeout = timeout
        self._profile = tempfile.TemporaryDirectory(prefix="pidbook-chromium-")
        cmd_r, self._cmd_w = os.pipe()
        self._out_r, out_w = os.pipe()
        flags = [*_FLAGS, f"--user-data-dir={self._profile.name}"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            flags.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox

        def _child_pipes() -> None:  # runs in the child: the protocol wants fds 3 and 4
            os.dup2(cmd_r, 3)
            os.dup2(out_w, 4)

        self._proc = subprocess.Popen(
            [exe, *flags, "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(3, 4),
            preexec_fn=_child_pipes,  # only dup2 between fork and exec
        )
        os.close(cmd_r)
        os.close(out_w)
        self._next_id = 0
        self._replies: dict[int, dict] = {}
        self._events: list[dict] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.version = self.send("Browser.getVersion")["product"]

    def _read(self) -> None:
        buf = b""
        while True:
            chunk = os.read(self._out_r, 1 << 16)
            if not chunk:
                break
            buf += chunk
            *messages, buf = buf.split(b"\0")
            with self._cond:
                for raw in messages:
                    msg = json.loads(raw)
                    if "id" in msg:
                        self._replies[msg["id"]] = msg
                    else:
                        self._events.append(msg)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send one protocol command and wait for its result (raises on a protocol error)."""
        with self._cond:
            self._next_id += 1
            mid = self._next_id
        msg: dict[str, Any] = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while mid not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or self._proc.poll() is not None:
                    raise BrowserError(f"{method}: no reply from Chromium")
                self._cond.wait(min(left, 1.0))
            reply = self._replies.pop(mid)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def events(self, session: str, method: str | None = None) -> list[dict]:
        """Events of one page so far (all, or one ``method``)."""
        with self._cond:
            return [
                e
                for e in self._events
                if e.get("sessionId") == session and (method is None or e["method"] == method)
            ]

    def wait_event(self, session: str, method: str, after: int, timeout: float) -> bool:
        """Wait until the page emits ``method`` more than ``after`` times; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while (
                len(
                    [
                        e
                        for e in self._events
                        if e.get("sessionId") == session and e["method"] == method
                    ]
                )
                <= after
            ):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.5))
        return True

    def page(self, width: int = 1000, height: int = 900) -> Page:
        """A new tab, offline, ``width`` CSS pixels wide, recording requests and errors."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.send(f"{domain}.enable", session=session)
        self.send(
            "Network.emulateNetworkConditions",
            {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
            session,
        )
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session,
        )
        return Page(self, session, target, width, height)

    def close(self) -> None:
        """Quit Chromium and remove its temporary profile."""
        if self._proc.poll() is None:
            try:
                os.write(
                    self._cmd_w, json.dumps({"id": 0, "method": "Browser.close"}).encode() + b"\0"
                )
                self._proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
        os.close(self._cmd_w)
        self._reader.join(5)
        os.close(self._out_r)
        self._profile.cleanup()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Page:
    """One tab of a :class:`Browser`."""

    def __init__(self, browser: Browser, session: str, target: str, width: int, height: int):
        self.browser, self.session, self.target = browser, session, target
        self.width, self.height = width, height

    def goto(self, url: str, timeout: float = 30.0) -> None:
        """Navigate and wait for the load event."""
        seen = len(self.browser.events(self.session, "Page.loadEventFired"))
        self.browser.send("Page.navigate", {"url": url}, self.session)
        if not self.browser.wait_event(self.session, "Page.loadEventFired", seen, timeout):
            raise BrowserError(f"{url}: no load event within {timeout:.0f} s")

    def evaluate(self, expression: str, timeout: float = 30.0) -> Any:
        """The JSON value of a JavaScript expression (a promise is awaited)."""
        res = self.browser.send(
            "Runtime.evaluate",
            {
                "expression": expression,
                "awaitPromise": True,
                "returnByValue": True,
                "timeout": int(timeout * 1000),
            },
            self.session,
        )
        if "exceptionDetails" in res:
            raise BrowserError(
                f"script failed: {res['exceptionDetails'].get('text')}: "
                f"{res['exceptionDetails'].get('exception', {}).get('description')}"
            )
        return res["result"].get("value")

    def requests(self) -> list[str]:
        """Every URL the page asked for so far."""
        return [
            e["params"]["request"]["url"]
            for e in self.browser.events(self.session, "Network.requestWillBeSent")
        ]

    def failed_requests(self) -> list[str]:
        """URLs whose loading failed (with the reason)."""
        ids = {
            e["params"]["requestId"]: e["params"]["request"]["url"]
            for e in self.browser.events(self.session, "Network.requestWillBeSent")
        }
        return [
            f"{ids.get(e['params']['requestId'], '?')} ({e['params'].get('errorText')})"
            for e in self.browser.events(self.session, "Network.loadingFailed")
        ]

    def errors(self) -> list[str]:
        """Uncaught script exceptions and console errors so far."""
        out = [
            e["params"]["exceptionDetails"].get("exception", {}).get("description")
            or e["params"]["exceptionDetails"].get("text", "")
            for e in self.browser.events(self.session, "Runtime.exceptionThrown")
        ]
        out += [
            e["params"]["entry"]["text"]
            for e in self.browser.events(self.session, "Log.entryAdded")
            if e["params"]["entry"]["level"] == "error"
        ]
        out += [
            " ".join(str(a.get("value", a.get("description", ""))) for a in e["params"]["args"])
            for e in self.browser.events(self.session, "Runtime.consoleAPICalled")
            if e["params"]["type"] in ("error", "assert")
        ]
        return out

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        """Save a PNG of the page (the whole scroll height when ``full_page``)."""
        height = self.height
        if full_page:
            size = self.browser.send("Page.getLayoutMetrics", session=self.session)
            height = int(size["cssContentSize"]["height"]) + 1
        shot = self.browser.send(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": full_page,
                "clip": {"x": 0, "y": 0, "width": self.width, "height": height, "scale": 1},
            },
            self.session,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def close(self) -> None:
        """Close the tab."""
        self.browser.send("Target.closeTarget", {"targetId": self.target})

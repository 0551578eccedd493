"""
The operator page in a real browser: headless Chromium (Debian's
``chromium`` and ``chromium-driver`` packages) driven through chromedriver's
WebDriver protocol, in plain HTTP with :mod:`urllib` (no Selenium).

The gatekeeper side runs in this process on the trial reactor: the web
service on 127.0.0.1, a real session registry bound by fake AudioSocket
connections (the simulated calls), a real SQLite access log holding a
history, and a recordings directory with one WAV.  The blocking WebDriver
calls run on a thread, so the reactor serves the browser meanwhile; the
simulated calls are made on the reactor thread with
``blockingCallFromThread``.

It proves the live list shows a call appear and end, a filter narrows the
history, and a recording plays; the page's screenshot is saved (path
printed).  Without Chromium or chromedriver the test skips, saying so.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.application.service import MultiService
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import blockingCallFromThread, deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from gatekeeper.accesslog import AccessLog, VisitRecord
from gatekeeper.session.callpair import Outcome
from gatekeeper.session.registry import SessionRegistry
from gatekeeper.web.service import make_web_service
from gatekeeper.web.settings import WebConfig

from .support import (
    PASSWORD,
    PASSWORD_HASH,
    TOKEN,
    FakeDialer,
    FakeListener,
    connect,
    new_uuid,
)

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"
CHROME_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1280,900",
]
T0 = time.time() - 3 * 86400


def find_browser() -> tuple[str, str]:
    """Chromium and chromedriver, or SkipTest saying what is missing."""
    browser = next(
        filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None
    )
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None
    )
    if browser is None or driver is None:
        reason = (
            "headless Chromium not installed (apt-get install chromium "
            "chromium-driver): the operator page's browser test is skipped"
        )
        print(reason, file=sys.stderr)
        raise SkipTest(reason)
    return browser, driver


def write_tone(path: Path, seconds: float = 2.0) -> None:
    """A 440 Hz tone, 8 kHz slin, as the recorder writes visitors' names."""
    rate = 8000
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * n / rate)))
        for n in range(int(rate * seconds))
    )
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)


class WebDriver:
    """The few WebDriver commands the test needs, over blocking HTTP."""

    def __init__(self, driver: str, browser: str, profile: str) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [driver, f"--port={port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                self.call("GET", "/status")
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        options = {
            "binary": browser,
            "args": [*CHROME_FLAGS, f"--user-data-dir={profile}"],
        }
        session = self.call(
            "POST",
            "/session",
            {"capabilities": {"alwaysMatch": {"goog:chromeOptions": options}}},
        )
        self.session = f"/session/{session['sessionId']}"

    def call(self, method: str, path: str, body: object = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.load(response)["value"]
        except urllib.error.HTTPError as e:
            detail = e.read()[:500]
            raise AssertionError(f"WebDriver {method} {path}: {detail!r}") from None

    def go(self, url: str) -> None:
        self.call("POST", f"{self.session}/url", {"url": url})

    def js(self, script: str, *args: object) -> Any:
        return self.call(
            "POST", f"{self.session}/execute/sync", {"script": script, "args": args}
        )

    def find(self, css: str) -> str:
        found = self.call(
            "POST", f"{self.session}/element", {"using": "css selector", "value": css}
        )
        return found[ELEMENT]  # type: ignore[no-any-return]

    def click(self, css: str) -> None:
        self.call("POST", f"{self.session}/element/{self.find(css)}/click", {})

    def type(self, css: str, text: str) -> None:
        element = self.find(css)
        self.call("POST", f"{self.session}/element/{element}/clear", {})
        self.call("POST", f"{self.session}/element/{element}/value", {"text": text})

    def wait(self, script: str, what: str, timeout: float = 10.0) -> Any:
        """Poll ``script`` until it returns something true."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.js(script)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.1)

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("GET", f"{self.session}/screenshot"))

    def quit(self) -> None:
        with contextlib.suppress(Exception):
            self.call("DELETE", self.session)
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class OperatorPageTests(TestCase):
    """The page against a running web service, in headless Chromium."""

    timeout = 90

    @inlineCallbacks
    def setUp(self) -> Any:
        self.browser, self.driver = find_browser()
        self.registry = SessionRegistry(reactor, grace_period=1.0)
        self.recordings = Path(self.mktemp()).absolute()
        self.recordings.mkdir()
        self.log = AccessLog.sqlite(self.mktemp() + ".sqlite3")
        top = MultiService()
        self.log.setServiceParent(top)
        self.registry.setServiceParent(top)
        section = WebConfig(
            enabled=True,
            listen="tcp:0:interface=127.0.0.1",
            token=TOKEN,
            users=(f"ana:{PASSWORD_HASH}",),
            live_refresh=0.2,
        )
        web = make_web_service(
            section,
            reactor=reactor,
            registry=self.registry,
            access_log=self.log,
            listener=FakeListener(),
            dialer=FakeDialer(),
            recordings=self.recordings,
            environ={},
        )
        assert web is not None
        web.setServiceParent(top)
        top.startService()
        self.addCleanup(top.stopService)
        yield self.log.when_ready()
        for n in range(8):
            apartment = ("101", "202")[n % 2]
            yield self.log.record(
                VisitRecord(
                    call_uuid=new_uuid(500 + n),
                    outcome=("allowed", "denied", "no_answer")[n % 3],
                    phases={"started": T0 + 3600 * n},
                    apartment=apartment,
                    gate="north",
                    extensions_tried=(apartment + "1",),
                    recording_path=str(self.recordings / f"{new_uuid(500 + n)}.wav"),
                    door_result="opened" if n % 3 == 0 else "not_attempted",
                )
            )
        write_tone(self.recordings / f"{new_uuid(505)}.wav")
        port = yield web.when_listening()
        self.base = f"http://127.0.0.1:{port.getHost().port}"

    def on_reactor(self, f: Callable[..., Any], *args: Any) -> Any:
        return blockingCallFromThread(reactor, f, *args)

    def start_call(self, call_uuid: str) -> None:
        connect(self.registry, call_uuid)
        pair = self.registry.get(call_uuid)
        pair.context.apartment = "303"
        pair.context.enter_phase("apartment", reactor.seconds())

    def drive(self, profile: str) -> str:
        """The whole browser session; runs on a thread. Returns the screenshot."""
        browser = WebDriver(self.driver, self.browser, profile)
        try:
            return self.session(browser)
        finally:
            browser.quit()

    def session(self, b: WebDriver) -> str:
        # Not logged in: the page sends us to the form.
        b.go(self.base + "/")
        b.wait("return location.pathname === '/login'", "the login form")
        b.type("#username", "ana")
        b.type("#password", PASSWORD)
        b.click("#login")
        b.wait(
            "return location.pathname === '/' && "
            "document.getElementById('user').textContent === 'ana'",
            "the operator page",
        )
        b.wait("return !document.getElementById('live-empty').hidden", "empty list")

        # A call appears in the live list, then ends and leaves it.
        call = new_uuid(7)
        self.on_reactor(self.start_call, call)
        row = f"tr.call[data-call-uuid='{call}']"
        shown = b.wait(
            f'const r = document.querySelector("{row}"); return r && r.textContent',
            "the call to appear",
        )
        assert "303" in shown and "apartment" in shown, shown
        assert b.js("return document.getElementById('live-count').textContent") == "1"
        self.on_reactor(self.registry.end, call, Outcome.ALLOWED)
        b.wait(f'return !document.querySelector("{row}")', "the call to end")
        b.wait("return !document.getElementById('live-empty').hidden", "empty again")

        # The history: all eight, then the apartment filter narrows it.
        visits = "return document.querySelectorAll('tr.visit').length"
        b.wait(visits + " === 8", "the history")
        b.type("#f-apartment", "202")
        b.click("#f-apply")
        b.wait(visits + " === 4", "the filtered history")
        apartments = b.js(
            "return [...document.querySelectorAll('tr.visit td:nth-child(3)')]"
            ".map(td => td.textContent)"
        )
        assert apartments == ["202"] * 4, apartments

        # The recording of visit 505 (apartment 202) plays.
        b.click(f"tr.visit[data-call-uuid='{new_uuid(505)}'] button.play")
        b.wait(
            "const p = document.getElementById('player'); "
            "return p.dataset.state === 'playing' && p.currentTime > 0.2",
            "the recording to play",
        )
        error = b.js("return document.getElementById('player').dataset.error || ''")
        assert not error, error
        return base64.b64encode(b.screenshot()).decode()

    @inlineCallbacks
    def test_operator_page(self) -> Any:
        """Live call appears and ends, a filter narrows history, a recording plays."""
        profile = tempfile.mkdtemp(prefix="gk-chromium-")
        self.addCleanup(shutil.rmtree, profile, True)
        png = yield deferToThread(self.drive, profile)
        # CI may collect it from $GATEKEEPER_ARTIFACTS; else the test's cwd
        # (_trial_temp under trial, pytest's scratch directory under pytest).
        artifacts = Path(
            os.environ.get("GATEKEEPER_ARTIFACTS") or "browser-artifacts"
        ).absolute()
        artifacts.mkdir(parents=True, exist_ok=True)
        path = artifacts / "operator-page.png"
        path.write_bytes(base64.b64decode(png))
        print(f"\noperator page screenshot: {path}", file=sys.stderr)
        self.assertEqual(path.read_bytes()[:8], b"\x89PNG\r\n\x1a\n")

"""Debian's Chromium, headless, driven over the DevTools protocol (tornado's websocket client):
open a page, evaluate JavaScript in it, take a screenshot. Started and stopped by the test."""
from __future__ import annotations

import asyncio
import base64
import json
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

TIMEOUT = 30.0  # seconds for the browser to start, and for a page to render


class Chromium:
    def __init__(self, profile: Path, width: int = 1280, height: int = 900):
        from tornado.websocket import websocket_connect

        self.process = subprocess.Popen(
            [shutil.which("chromium"), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--remote-debugging-port=0", f"--user-data-dir={profile}", f"--window-size={width},{height}",
             "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        port = self._port()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=TIMEOUT) as answer:
            page = next(target for target in json.load(answer) if target["type"] == "page")
        self.loop = asyncio.new_event_loop()

        async def connect():
            return await websocket_connect(page["webSocketDebuggerUrl"], max_message_size=1 << 28)
        self.socket = self.loop.run_until_complete(connect())
        self.calls = 0
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def _port(self) -> int:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            line = self.process.stderr.readline()
            found = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            if found:
                return int(found.group(1))
        self.close()
        raise TimeoutError("chromium did not start its DevTools server")

    def call(self, method: str, **params) -> dict:
        """One DevTools command's result (the events that come first are passed over)."""
        self.calls += 1

        async def answer():
            await self.socket.write_message(json.dumps({"id": self.calls, "method": method, "params": params}))
            while True:
                message = json.loads(await asyncio.wait_for(self.socket.read_message(), TIMEOUT))
                if message.get("id") == self.calls:
                    return message
        message = self.loop.run_until_complete(answer())
        if "error" in message:
            raise RuntimeError(f"{method}: {message['error']}")
        return message["result"]

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def open(self, page: Path) -> list[str]:
        """Opens a file and waits until its script has drawn it; the errors its console logged."""
        self.call("Page.enable")
        self.call("Page.addScriptToEvaluateOnNewDocument", source=(
            "window.__errors = []; addEventListener('error', (event) => window.__errors.push(event.message));"))
        self.call("Page.navigate", url=page.resolve().as_uri())
        deadline = time.monotonic() + TIMEOUT
        while not self.evaluate("document.readyState === 'complete' && document.body.dataset.rendered === 'true'"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{page} did not render: {self.evaluate('window.__errors')}")
            time.sleep(0.1)
        return self.evaluate("window.__errors")

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])

    def close(self) -> None:
        if getattr(self, "socket", None) is not None:
            self.socket.close()
            self.loop.close()
        self.process.kill()
        self.process.wait(timeout=TIMEOUT)
        self.process.stderr.close()

"""Just enough of the W3C WebDriver protocol to drive headless Chromium from a test.

WebDriver is a W3C standard: JSON over HTTP to a driver process (``chromedriver``). The tests
need five of its commands -- new session, navigate, execute script, screenshot, delete session
-- so they speak it directly with the standard library rather than through Selenium, whose
package brings a dozen dependencies and a "Selenium Manager" that tries to download drivers
(this machine, and many classrooms, have no internet). Debian's ``chromium`` and
``chromium-driver`` packages provide the browser and its driver, of the same version.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                  "--window-size=1400,1000")
INSTALL_HINT = ("install Debian's chromium and chromium-driver packages "
                "(apt-get install -y chromium chromium-driver; .ci/run does)")


class WebDriverError(RuntimeError):
    pass


def find_browser() -> tuple[str, str] | str:
    """(chromium, chromedriver) paths, or the reason there are none."""
    browser = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    driver = shutil.which("chromedriver")
    missing = [name for name, path in (("chromium", browser), ("chromedriver", driver))
               if path is None]
    if missing:
        return f"no {' or '.join(missing)} on PATH: {INSTALL_HINT}"
    return browser, driver


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """A headless Chromium session (``with Browser(...) as b: b.get(url)``)."""

    def __init__(self, chromium: str, chromedriver: str, profile: Path, timeout: float = 30.0):
        self.port = _free_port()
        self.driver = subprocess.Popen([chromedriver, f"--port={self.port}"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.base, self.session = f"http://127.0.0.1:{self.port}", None
        try:
            self._wait_ready(timeout)
            flags = [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
            capabilities = {"browserName": "chrome",
                            "goog:chromeOptions": {"binary": chromium, "args": flags}}
            value = self._call("POST", "/session", {"capabilities": {"alwaysMatch": capabilities}},
                               timeout=timeout)
            self.session = value["sessionId"]
        except BaseException:
            self.quit()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.driver.poll() is not None:
                raise WebDriverError(f"chromedriver exited with status {self.driver.returncode}")
            try:
                if self._call("GET", "/status", timeout=2).get("ready"):
                    return
            except (OSError, WebDriverError):
                pass
            time.sleep(0.1)
        raise WebDriverError(f"chromedriver not ready after {timeout:.0f} s")

    def _call(self, method: str, path: str, body=None, timeout: float = 30.0):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.load(response)["value"]
        except urllib.error.HTTPError as e:
            try:
                value = json.load(e)["value"]
                message = f"{value.get('error')}: {value.get('message', '')}".splitlines()[0]
            except (ValueError, KeyError, AttributeError):
                message = str(e)
            raise WebDriverError(f"{method} {path}: {message}") from None

    def get(self, url: str) -> None:
        self._call("POST", f"/session/{self.session}/url", {"url": url})

    def run(self, script: str, *args):
        """Run ``script`` (a function body; ``return`` gives the value) in the page."""
        return self._call("POST", f"/session/{self.session}/execute/sync",
                          {"script": script, "args": list(args)})

    def wait_for(self, script: str, timeout: float = 30.0, what: str = "condition"):
        """Run ``script`` until it returns something truthy; return that."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.run(script)
            if value:
                return value
            time.sleep(0.2)
        raise WebDriverError(f"timed out after {timeout:.0f} s waiting for {what}")

    def screenshot(self) -> bytes:
        return base64.b64decode(self._call("GET", f"/session/{self.session}/screenshot"))

    def quit(self) -> None:
        try:
            if self.session is not None:
                self._call("DELETE", f"/session/{self.session}", timeout=10)
        except (OSError, WebDriverError):
            pass
        finally:
            self.session = None
            self.driver.terminate()
            try:
                self.driver.wait(10)
            except subprocess.TimeoutExpired:
                self.driver.kill()
                self.driver.wait(10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.quit()

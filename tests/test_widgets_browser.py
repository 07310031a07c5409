"""The widgets in a real browser: JupyterLab served locally, headless Chromium driven over the DevTools protocol.

A notebook that builds the reward explorer (notebook 02) and the trajectory browser (notebook 04) is opened in
JupyterLab, its cells are run with Shift+Enter, then the test drives the widgets as a user would (picks another
trajectory in the dropdown, moves the γ slider with the arrow keys, picks another reward type) and asserts what
the page then shows. Screenshots go to COCOS_BROWSER_SHOTS when that variable names a folder.

Needs Debian's `chromium` (apt-get install chromium chromium-driver) and JupyterLab with the ipywidgets extension;
skips, saying which, where one is missing. No browser is downloaded.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                                                          "(apt-get install chromium chromium-driver)")]

CELLS = [
    "import sys\nsys.path.insert(0, ROOT)\nfrom cocos_lib.notebook.widgets import reward_explorer, trajectory_browser",
    "reward_explorer(gamma=0.5, n_tests=2, reward='progressive', widgets=True)",
    "turn = lambda t, code, outcomes, r: dict(turn=t, code=code, outcomes=outcomes, reward=r)\n"
    "records = {('toy/add', 0): [turn(1, 'def add(a, b):\\n    return a - b', ('failed', 'passed'), 0.5),\n"
    "                            turn(2, 'def add(a, b):\\n    return a + b', ('passed', 'passed'), 1.0)],\n"
    "           ('toy/sub', 1): [turn(1, 'def sub(a, b):\\n    return a - b', ('passed', 'passed'), 1.0),\n"
    "                            turn(2, 'def sub(a, b):\\n    return a + b', ('failed', 'failed'), 0.0)]}\n"
    "trajectory_browser(records, widgets=True)",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, seconds: float) -> bytes:
    end = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return r.read()
        except OSError:
            if time.monotonic() > end:
                raise
            time.sleep(0.5)


class Page:
    """A minimal DevTools-protocol client over tornado's websocket (a JupyterLab dependency)."""

    def __init__(self, ws_url: str):
        from tornado.websocket import websocket_connect

        async def connect():
            return await websocket_connect(ws_url, max_message_size=64 * 2**20)
        self.loop = asyncio.new_event_loop()
        self.ws = self.loop.run_until_complete(connect())
        self.next_id = 0

    def call(self, method: str, **params):
        self.next_id += 1
        msg_id = self.next_id

        async def roundtrip():
            await self.ws.write_message(json.dumps({"id": msg_id, "method": method, "params": params}))
            while True:
                reply = json.loads(await self.ws.read_message())
                if reply.get("id") == msg_id:
                    return reply
        reply = self.loop.run_until_complete(asyncio.wait_for(roundtrip(), 120))
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def js(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result["result"].get("value")

    def wait(self, expression: str, seconds: float = 120, what: str = ""):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what or expression}")

    def key(self, key: str, code: str, keycode: int, modifiers: int = 0):
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=kind, key=key, code=code, windowsVirtualKeyCode=keycode,
                      nativeVirtualKeyCode=keycode, modifiers=modifiers)

    def screenshot(self, name: str) -> None:
        folder = os.environ.get("COCOS_BROWSER_SHOTS")
        if folder:
            data = self.call("Page.captureScreenshot", format="png")["data"]
            Path(folder).mkdir(parents=True, exist_ok=True)
            (Path(folder) / name).write_bytes(base64.b64decode(data))

    def close(self):
        self.ws.close()
        self.loop.close()


@pytest.fixture
def page(tmp_path):
    pytest.importorskip("jupyterlab", reason="JupyterLab is not installed")
    pytest.importorskip("jupyterlab_widgets", reason="the ipywidgets JupyterLab extension is not installed")
    import nbformat
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c.replace('ROOT', repr(str(ROOT)))) for c in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "widgets.ipynb")
    lab_port, cdp_port, token = free_port(), free_port(), "cocos-browser-test"
    home = tmp_path / "home"   # nothing is left outside tmp_path: Jupyter's and Chromium's files land here
    scratch = tempfile.mkdtemp(prefix="cocos-browser-")  # removed at the end
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "XDG_CACHE_HOME": str(home / ".cache"),
           "JUPYTER_CONFIG_DIR": str(tmp_path / "jconf"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "jrun"),
           "JUPYTER_DATA_DIR": str(tmp_path / "jdata"), "IPYTHONDIR": str(tmp_path / "ipython"),
           "TMPDIR": scratch}   # Chromium's org.chromium.* and the kernels' folders (a short path: sockets live there)
    lab = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={lab_port}",
                            "--ServerApp.ip=127.0.0.1", "--allow-root", f"--IdentityProvider.token={token}",
                            f"--ServerApp.root_dir={tmp_path}", "--LabApp.news_url=", "--LabApp.extension_manager=readonly",
                            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    browser = None
    try:
        wait_http(f"http://127.0.0.1:{lab_port}/api/status?token={token}", 120)
        url = f"http://127.0.0.1:{lab_port}/lab/tree/widgets.ipynb?token={token}&reset"
        browser = subprocess.Popen([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
                                    "--disable-dev-shm-usage", f"--remote-debugging-port={cdp_port}",
                                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1800", url],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        targets = json.loads(wait_http(f"http://127.0.0.1:{cdp_port}/json", 60))
        ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page")
        p = Page(ws_url)
        try:
            yield p
        finally:
            p.close()
    finally:
        for proc in (browser, lab):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        shutil.rmtree(scratch, ignore_errors=True)


def text_of(selector: str, index: int) -> str:
    return f"(document.querySelectorAll({selector!r})[{index}] || {{}}).innerText || ''"


def run_cells_until_rendered(page, tries: int = 2) -> None:
    """Open the notebook, run its cells, wait for both widgets; once more after a reload when a fresh environment's
    first JupyterLab start (kernel spec, assets) lost the keystrokes (seen once, on a fresh venv's first run)."""
    tables = "document.querySelectorAll('.widget-html table')"
    for attempt in range(tries):
        if attempt:
            page.js("location.reload()")
            time.sleep(5.0)
        page.wait("document.querySelectorAll('.jp-Notebook .jp-Cell').length >= 3", 180, "the notebook")
        page.wait("document.querySelector('.jp-Notebook-ExecutionIndicator, .jp-Toolbar-kernelStatus, "
                  ".jp-KernelStatus') !== null", 60, "the kernel indicator")
        page.js("document.querySelector('.jp-Notebook .jp-Cell .jp-InputArea-editor').click()")
        page.js("document.querySelector('.jp-Notebook').focus()")
        page.key("Escape", "Escape", 27)                                   # command mode
        for _ in range(len(CELLS)):
            page.key("Enter", "Enter", 13, modifiers=8)                    # Shift+Enter: run and advance
            time.sleep(1.0)
        try:
            page.wait(f"{tables}.length >= 1 && document.querySelectorAll('.widget-dropdown select').length >= 2",
                      120, "both widgets to render")
            return
        except AssertionError:
            if attempt == tries - 1:
                raise


def test_the_reward_explorer_and_the_trajectory_browser_respond_in_a_browser(page):
    run_cells_until_rendered(page)
    tables = "document.querySelectorAll('.widget-html table')"
    page.screenshot("widgets-start.png")

    # the reward explorer: progressive, K = 2, gamma = 0.5 -> R(0 -> 2 tests) = +1.000, R(2 -> 0) = -0.500
    explorer = page.js(f"{tables}[0].innerText")
    assert "progressive reward, K = 2, γ = 0.5" in explorer and "+1.000" in explorer and "-0.500" in explorer
    page.js("(() => { const s = document.querySelectorAll('.widget-dropdown select')[0];"
            " s.value = 'binary'; s.dispatchEvent(new Event('change', {bubbles: true})); })()")
    page.wait(f"{tables}[0].innerText.includes('binary reward')", 30, "the reward type to change")
    page.js("document.querySelectorAll('.widget-slider .noUi-handle')[0].focus()")   # the gamma slider
    for _ in range(2):
        page.key("ArrowRight", "ArrowRight", 39)                       # step 0.05: 0.5 -> 0.6
    page.wait(f"{tables}[0].innerText.includes('γ = 0.6')", 30, "gamma to move to 0.6")
    explorer = page.js(f"{tables}[0].innerText")
    assert "-0.400" in explorer                                        # correct -> incorrect: gamma - 1
    page.screenshot("reward-explorer-moved.png")

    # the trajectory browser: first toy/add (fixed), then pick toy/sub (broken)
    view = "document.querySelectorAll('.widget-html pre')[0].innerText"
    page.wait(f"{view}.includes('toy/add · sample 0')", 30, "the first trajectory")
    page.js("(() => { const s = document.querySelectorAll('.widget-dropdown select')[1];"
            " s.selectedIndex = 1; s.dispatchEvent(new Event('change', {bubbles: true})); })()")
    page.wait(f"{view}.includes('toy/sub · sample 1')", 30, "the other trajectory")
    shown = page.js(view)
    assert "r_2 = 0.000" in shown and "R = -0.500" in shown            # 0.5 * 1 + (0 - 1)
    page.screenshot("trajectory-browser-picked.png")

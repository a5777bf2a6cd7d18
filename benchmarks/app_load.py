"""The classroom app under a class: N browser sessions at once, each moving controls on every tab.

Starts the app as `make app` serves it (`hvae_lite.app.voila_command`, with its kernel settings) on a
free port, opens N pages in headless Chromium (Playwright) at the same time, and in each one moves
the first control of a tab one step, tab after tab, to a setting that page has not drawn yet (the
worst case: no picture kept from before). Measured: seconds from the key press to the new figure in
the page (every move of every session), seconds until each page shows its first figure, and the
memory (RSS) of the server and of each kernel, sampled every half second. Then every page is
closed and the kernels are counted until they are gone: a page closed normally shuts its kernel
down; `--vanish` closes the pages without letting them say so (a laptop put to sleep) and waits for
the server to cull the kernels (started with `--cull-after` seconds).

    PYTHONPATH=. .venv/bin/python benchmarks/app_load.py --sessions 10 --moves 6   # shipped models
    -> benchmarks/results/app_load.json (HVAE_LITE_FAST=1: tiny models, for the tests)

Needs Chromium (HVAE_LITE_CHROMIUM or `chromium` on the PATH) and the playwright package.
"""
from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from hvae_lite import app, paths
from hvae_lite.recipes import FAST_ENV

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
OUT = paths.RESULTS_DIR / "app_load.json"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(workdir: Path, env: dict[str, str], cull_after: int | None = None) -> tuple[subprocess.Popen, str]:
    """The app's Voila server on a free port with a random token (its own process group); returns it and its URL."""
    port, token = _free_port(), secrets.token_hex(16)
    command = app.voila_command(workdir / "app.ipynb", "127.0.0.1", port) + [f"--Voila.token={token}", "--Voila.port_retries=0"]
    if cull_after is not None:  # the same settings, sooner (each given once: the server refuses a repeated option)
        sooner = ("--MappingKernelManager.cull_idle_timeout=", "--MappingKernelManager.cull_interval=")
        command = [part for part in command if not part.startswith(sooner)]
        command += [f"--MappingKernelManager.cull_idle_timeout={cull_after}", "--MappingKernelManager.cull_interval=2"]
    log = open(workdir / "voila.log", "w")
    server = subprocess.Popen(command, cwd=workdir, env=dict(env, **app.KERNEL_ENV), stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the app server exited with {server.returncode}:\n{(workdir / 'voila.log').read_text()[-3000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            return server, f"http://127.0.0.1:{port}/?token={token}"
        except OSError:
            time.sleep(0.5)
    stop_app(server)
    raise RuntimeError("the app server did not answer within 120 s")


def stop_app(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def kernels(server: subprocess.Popen) -> list[psutil.Process]:
    """The server's kernel processes."""
    try:
        children = psutil.Process(server.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [p for p in children if "ipykernel_launcher" in " ".join(_cmdline(p))]


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def _rss(process: psutil.Process) -> int:
    try:
        return process.memory_info().rss
    except psutil.Error:
        return 0


# True once the visible explorer shows a figure other than `before` (a redraw replaces the <img>).
NEW_FIGURE = """(before) => {
    const explorer = [...document.querySelectorAll('.hvae-lite-explorer')].find(e => e.offsetParent !== null);
    const image = explorer && explorer.querySelector('.widget-output img');
    return Boolean(image) && image.src !== before;
}"""


async def _session(page, url: str, moves: int, timeout_s: float) -> dict[str, Any]:
    """One student: open the app, then move a control on tab 0, 1, 2, 0, ... timing each redraw."""
    start = time.monotonic()
    await page.goto(url, timeout=timeout_s * 1000)
    tabs = page.locator(".widget-tab .lm-TabBar-tab")
    await tabs.first.wait_for(timeout=timeout_s * 1000)
    await page.locator(".hvae-lite-explorer:visible .widget-output img").first.wait_for(timeout=timeout_s * 1000)
    ready_s = time.monotonic() - start
    redraws = []
    for move in range(moves):
        await tabs.nth(move % 3).click()
        explorer = page.locator(".hvae-lite-explorer:visible")
        image = explorer.locator(".widget-output img").first
        await image.wait_for(timeout=timeout_s * 1000)
        before = await image.get_attribute("src")
        await explorer.locator(".noUi-handle").first.focus()
        pressed = time.monotonic()
        await page.keyboard.press("ArrowRight")  # a new setting: the first slider one step on
        await page.wait_for_function(NEW_FIGURE, arg=before, polling=50, timeout=timeout_s * 1000)
        redraws.append(time.monotonic() - pressed)
    return {"ready_s": ready_s, "redraw_s": redraws}


async def _load(url: str, server: subprocess.Popen, sessions: int, moves: int, chromium: str, vanish: bool,
                timeout_s: float) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    samples: list[tuple[int, int, int]] = []  # (kernels, their total RSS, the server's RSS)
    done = asyncio.Event()

    async def sample_memory():
        while not done.is_set():
            procs = kernels(server)
            try:
                samples.append((len(procs), sum(_rss(p) for p in procs), _rss(psutil.Process(server.pid))))
            except psutil.Error:  # the server has gone: nothing more to sample
                return
            await asyncio.sleep(0.5)

    sampler = asyncio.create_task(sample_memory())
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        contexts = [await browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(sessions)]
        pages = [await context.new_page() for context in contexts]
        errors: list[str] = []
        for page in pages:
            page.on("pageerror", lambda error: errors.append(str(error)))
        started = time.monotonic()
        results = await asyncio.gather(*[_session(page, url, moves, timeout_s) for page in pages])
        load_s = time.monotonic() - started
        per_kernel = sorted(_rss(p) for p in kernels(server))
        closed = time.monotonic()
        for page in pages:  # run_before_unload: the page tells the server (as a closed tab does), unless it vanishes
            await page.close(run_before_unload=not vanish)
        while kernels(server) and time.monotonic() - closed < (timeout_s if vanish else 30):
            await asyncio.sleep(1)
        gone_s = time.monotonic() - closed
        left = len(kernels(server))
        await browser.close()
    done.set()
    await sampler
    redraws = sorted(s for result in results for s in result["redraw_s"])
    peak = max(samples, key=lambda s: s[1])
    return {
        "sessions": sessions, "moves_per_session": moves, "page_errors": errors, "load_s": round(load_s, 1),
        "ready_s": {"median": round(statistics.median(r["ready_s"] for r in results), 2),
                    "max": round(max(r["ready_s"] for r in results), 2)},
        "redraw_s": {"n": len(redraws), "median": round(statistics.median(redraws), 2),
                     "p90": round(redraws[int(0.9 * (len(redraws) - 1))], 2), "max": round(redraws[-1], 2),
                     "all": [round(s, 2) for s in redraws]},
        "memory_mb": {"kernel_each": [round(b / 2**20) for b in per_kernel],
                      "kernels_peak": round(peak[1] / 2**20), "server": round(peak[2] / 2**20),
                      "peak_kernels": peak[0]},
        "after_close": {"vanished": vanish, "kernels_left": left, "seconds_until_gone": round(gone_s, 1)},
    }


def measure(sessions: int = 10, moves: int = 6, vanish: bool = False, cull_after: int | None = None,
            chromium: str | None = None, env: dict[str, str] | None = None, timeout_s: float = 600) -> dict[str, Any]:
    """Serve the app from a temporary folder (an output-free copy of notebooks/app.ipynb), load it with
    `sessions` pages at once, and return the measurements (see the module docstring)."""
    import nbformat

    chromium = chromium or os.environ.get("HVAE_LITE_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(paths.REPO_ROOT), env.get("PYTHONPATH")]))
    env.pop("HVAE_LITE_HEADLESS", None)
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        notebook = nbformat.read(app.APP_NOTEBOOK, as_version=4)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        nbformat.write(notebook, workdir / "app.ipynb")
        for name in ("config", "runtime", "ipython"):
            (workdir / name).mkdir()
        env.update(JUPYTER_CONFIG_DIR=str(workdir / "config"), JUPYTER_RUNTIME_DIR=str(workdir / "runtime"),
                   IPYTHONDIR=str(workdir / "ipython"), JUPYTER_PLATFORM_DIRS="1")
        server, url = start_app(workdir, env, cull_after)
        try:
            # A thread of its own: the caller may already run an event loop (pytest with Playwright's sync API).
            with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
                result = pool.submit(asyncio.run, _load(url, server, sessions, moves, chromium, vanish, timeout_s)).result()
        finally:
            stop_app(server)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "") if Path("/proc/cpuinfo").exists() else ""
    result["machine"] = {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30),
                         "load_average_1min_after": round(os.getloadavg()[0], 1)}
    result["models"] = "tiny (fast mode)" if env.get(FAST_ENV) == "1" else "shipped"
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--moves", type=int, default=6, help="control moves per session (tabs in turn)")
    parser.add_argument("--vanish", action="store_true", help="close pages without telling the server; wait for the cull")
    parser.add_argument("--cull-after", type=int, default=None, help="seconds idle before a kernel is culled (default the app's)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    result = measure(args.sessions, args.moves, args.vanish, args.cull_after)
    result["command"] = "PYTHONPATH=. .venv/bin/python benchmarks/app_load.py " + " ".join(sys.argv[1:])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "redraw_s"}, indent=2))
    print("redraw seconds:", {k: v for k, v in result["redraw_s"].items() if k != "all"})


if __name__ == "__main__":
    main()

"""App start and page times, measured in headless Chromium against a real server.

    python bench/bench_app.py [--json out.json]

Start: from launching ``streamlit run`` to the Overview's title rendered in the browser. Pages:
from navigating to each page's URL (same browser session) to its title rendered.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
PAGES = {"": "TorchLab", "data": "Data", "build": "Build a net", "train": "Train", "predict": "Predict a hand sign"}
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", default=str(ROOT / "bench" / "results" / "app.json"))
    args = p.parse_args()
    port = free_port()
    env = {**os.environ, "TORCHLAB_CHECKPOINT_DIR": os.environ.get("TORCHLAB_CHECKPOINT_DIR", tempfile.mkdtemp())}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        t0 = time.perf_counter()
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
             "--server.headless", "true"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:  # poll until the server accepts connections, then load the page
                try:
                    page.goto(f"http://127.0.0.1:{port}/", timeout=60_000)
                    break
                except Exception:
                    if time.perf_counter() - t0 > 60:
                        raise
                    time.sleep(0.05)
            page.get_by_role("heading", name=PAGES[""]).first.wait_for(timeout=60_000)
            start = time.perf_counter() - t0
            times = {}
            for path, title in PAGES.items():
                t = time.perf_counter()
                page.goto(f"http://127.0.0.1:{port}/{path}")
                page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)
                times[path or "overview"] = time.perf_counter() - t
        finally:
            server.terminate()
            server.wait(10)
            browser.close()
    print(f"App start to first rendered page: {start:.2f} s")
    for name, t in times.items():
        print(f"open {name:<10} {t:.2f} s")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"start_seconds": start, "page_seconds": times}, indent=2))


if __name__ == "__main__":
    main()

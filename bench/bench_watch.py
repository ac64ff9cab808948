"""Training speed in the app while the user watches the live chart, next to the command line.

    python bench/bench_watch.py [--model lenet] [--epochs 40] [--rounds 2] [--threads 1]
                                [--phases cli,watch,away,two] [--json out.json]

Each round runs, one after another (so that other load on a shared machine hits all alike):

* ``cli``: ``python -m core.train --dataset signs --model M --epochs N`` (the default recipe), its
  training images per second from its own figures (epochs × 1,080 / the run's seconds);
* ``watch``: the same recipe started on the Train page of a ``streamlit run`` server in headless
  Chromium, the page left open on the live chart until "Finished" shows;
* ``away``: the same, but the tab switches to the Overview right after Start and returns at the end
  (what the chart costs, by difference);
* ``two``: two browser sessions start the same run at once, both watching.

App figures: ``wall`` = epochs × 1,080 / seconds from the Start click to "Finished" in the browser
(what the user waits: includes building the net and one chart refresh), ``app`` = the run's own
figure, epochs × 1,080 / the sum of its epoch seconds (the quantity the CLI reports). Also the chart
refreshes seen in the browser per second (``refresh/s``) while watching.

The server and the CLI run with ``--threads`` intra-op threads (``OMP_NUM_THREADS``), or, with
``--threads default``, as each chooses by itself (the CLI one thread per core, the app one core fewer
on a small CPU). Prints a table
and writes JSON (default bench/results/watch-<model>.json).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

N_TRAIN = 1080  # SIGNS training photos
SERVER_PID = [0]
TIMEOUT_MS = 1_800_000
PROGRESS_JS = """() => { const m = document.querySelector('[data-testid="stMainBlockContainer"] [data-testid="stProgress"]');
                         return m ? m.innerText.trim() : ''; }"""
IDLE_JS = """() => { const app = document.querySelector('[data-testid="stApp"]');
                     return !!app && app.getAttribute('data-test-script-state') === 'notRunning'; }"""
# Counts the chart's redraws: every re-render of the live loss chart replaces the plot's data.
CHART_WATCH_JS = """() => { window.__chartUpdates = 0; let last = null;
    setInterval(() => { const el = document.querySelector('.st-key-live_steps .js-plotly-plot');
        const n = el && el.data ? el.data.reduce((s, t) => s + ((t.y || []).length), 0) : null;
        if (n !== null && n !== last) { window.__chartUpdates += 1; last = n; } }, 50); }"""


def cli_run(model: str, epochs: int, data_dir: str, threads: str, out: Path) -> dict:
    env = {**os.environ, "TORCHLAB_DATA_DIR": data_dir}
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(var, None)
        if threads != "default":
            env[var] = threads
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "core.train", "--dataset", "signs", "--model", model, "--epochs",
                        str(epochs), "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode:
        raise SystemExit(f"the CLI failed:\n{p.stderr[-3000:]}")
    result = json.loads(p.stdout.strip().splitlines()[-1])
    return {"seconds": result["seconds"], "images_per_second": epochs * N_TRAIN / result["seconds"],
            "process_seconds": wall}


def _proc_stat(pid: int) -> tuple[int, float]:
    """(parent pid, CPU seconds) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(root: int, exclude: int | None = None) -> float:
    """CPU seconds of ``root``'s descendants (not ``root`` itself, nor ``exclude``'s tree)."""
    stats = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stats[int(d.name)] = _proc_stat(int(d.name))
            except (OSError, ValueError, IndexError):
                pass
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if pid == exclude:
            continue
        total += stats[pid][1]
        todo += children.get(pid, [])
    return total


class Cpu:
    """CPU use of the server and of the browser (everything else this script started) over a phase."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.t0, self.server0, self.browser0 = time.perf_counter(), self._server(), self._browser()

    def _server(self) -> float:
        return _proc_stat(self.server_pid)[1] + tree_cpu_seconds(self.server_pid)

    def _browser(self) -> float:
        return tree_cpu_seconds(os.getpid(), exclude=self.server_pid)

    def cores(self) -> dict:
        wall = time.perf_counter() - self.t0
        return {"server_cores": (self._server() - self.server0) / wall, "browser_cores": (self._browser() - self.browser0) / wall}


def main_area(page):
    return page.get_by_test_id("stMainBlockContainer")


def wait_idle(page) -> None:
    while True:
        page.wait_for_function(IDLE_JS, polling=50, timeout=TIMEOUT_MS)
        page.wait_for_timeout(300)
        if page.evaluate(IDLE_JS):
            return


def open_train(page, url: str, model: str, epochs: int) -> None:
    if model != "lenet":
        page.goto(url + "/build")
        page.locator("h1").filter(has_text="Build").first.wait_for(timeout=TIMEOUT_MS)
        wait_idle(page)
        main_area(page).get_by_role("combobox", name="Architecture", exact=True).click()
        page.get_by_role("option", name={"resnet50": "ResNet-50", "mlp": "MLP"}[model], exact=True).click()
        wait_idle(page)
        main_area(page).get_by_role("button", name="Use this net", exact=True).click()
    else:
        page.goto(url + "/train")
    page.locator("h1").filter(has_text="Train").first.wait_for(timeout=TIMEOUT_MS)
    wait_idle(page)
    box = main_area(page).get_by_role("spinbutton", name="Epochs", exact=True)
    box.fill(str(epochs))
    box.press("Enter")
    wait_idle(page)


def seconds_in_runs_table(page) -> float | None:
    """The finished run's own seconds (sum of its epoch seconds), from the progress text."""
    m = re.search(r"in ([\d.,]+) s", page.evaluate(PROGRESS_JS))
    return float(m.group(1).replace(",", "")) if m else None


def app_runs(browser, url: str, model: str, epochs: int, sessions: int, away: bool = False) -> list[dict]:
    from tests.e2e.conftest import VIEWPORT

    contexts = [browser.new_context(viewport=VIEWPORT) for _ in range(sessions)]
    pages = [c.new_page() for c in contexts]
    for page in pages:
        open_train(page, url, model, epochs)
        page.evaluate(CHART_WATCH_JS)
    cpu = Cpu(SERVER_PID[0])
    starts = []
    for page in pages:
        main_area(page).get_by_role("button", name="Start", exact=True).click()
        starts.append(time.perf_counter())
    if away:
        for page in pages:
            page.wait_for_function(f"() => ({PROGRESS_JS})().startsWith('Training:')", polling=50, timeout=TIMEOUT_MS)
            page.goto(url + "/")
        time.sleep(1)
        # Back to the Train page when the run should be over; the page shows the finished run.
        while True:
            time.sleep(2)
            done = []
            for page in pages:
                page.goto(url + "/train")
                page.locator("h1").filter(has_text="Train").first.wait_for(timeout=TIMEOUT_MS)
                wait_idle(page)
                done.append(page.evaluate(PROGRESS_JS).startswith("Finished:"))
                if not done[-1]:
                    page.goto(url + "/")
            if all(done):
                break
        ends = [None] * sessions
    else:
        ends = [None] * sessions
        while not all(ends):
            for i, page in enumerate(pages):
                if ends[i] is None and page.evaluate(PROGRESS_JS).startswith("Finished:"):
                    ends[i] = time.perf_counter()
            time.sleep(0.05)
    cores = cpu.cores()
    out = []
    for i, page in enumerate(pages):
        text = page.evaluate(PROGRESS_JS)
        run_seconds = seconds_in_runs_table(page)
        wall = ends[i] - starts[i] if ends[i] else None
        updates = page.evaluate("() => window.__chartUpdates || 0") if not away else None
        out.append({"wall_seconds": wall, "images_per_second_wall": epochs * N_TRAIN / wall if wall else None,
                    "run_seconds": run_seconds,
                    "images_per_second_app": epochs * N_TRAIN / run_seconds if run_seconds else None,
                    "chart_refreshes_per_second": updates / wall if wall and updates is not None else None,
                    "progress": text, **cores})
    for c in contexts:
        c.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.environ.get("TORCHLAB_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    p.add_argument("--model", default="lenet", choices=("lenet", "resnet50"))
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", default="1",
                   help="intra-op threads of the server and the CLI; 'default': each as it chooses by itself "
                        "(the CLI: one per core; the app: see streamlit_app.share_cores)")
    p.add_argument("--phases", default="cli,watch,away,two")
    p.add_argument("--json")
    args = p.parse_args()
    phases = args.phases.split(",")
    os.environ["TORCHLAB_TEST_THREADS"] = "app" if args.threads == "default" else args.threads
    from playwright.sync_api import sync_playwright

    from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, start_server

    work = Path(tempfile.mkdtemp(prefix="bench-watch-"))
    load_before = os.getloadavg()
    server = start_server(Path(args.data_dir), work)
    SERVER_PID[0] = server.process.pid
    rounds = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            # A first run warms the server (imports, data, net) so that no phase pays for it.
            app_runs(browser, server.url, args.model, 1, 1)
            for r in range(args.rounds):
                row = {}
                for phase in phases:
                    if phase == "cli":
                        row["cli"] = cli_run(args.model, args.epochs, args.data_dir, args.threads, work / "cli.pt")
                    elif phase == "watch":
                        row["watch"] = app_runs(browser, server.url, args.model, args.epochs, 1)[0]
                    elif phase == "away":
                        row["away"] = app_runs(browser, server.url, args.model, args.epochs, 1, away=True)[0]
                    elif phase == "two":
                        row["two"] = app_runs(browser, server.url, args.model, args.epochs, 2)
                    print(f"round {r + 1} {phase}: {json.dumps(row[phase])}", flush=True)
                rounds.append(row)
            browser.close()
    finally:
        server.stop()
    log = server.log_tail(1_000_000)
    result = {"setup": {"model": args.model, "epochs": args.epochs, "threads": args.threads, "cpus": os.cpu_count(),
                        "load_average_before": load_before, "load_average_after": os.getloadavg(),
                        "machine": platform.processor() or platform.machine()},
              "rounds": rounds, "server_log_has_traceback": "Traceback" in log}
    report(result)
    out = Path(args.json or ROOT / "bench" / "results" / f"watch-{args.model}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


def report(result: dict) -> None:
    s = result["setup"]
    print(f"\n{s['model']} on SIGNS, default recipe, {s['epochs']} epochs, {s['threads']} intra-op thread(s); "
          f"load average {s['load_average_before'][0]:.1f} → {s['load_average_after'][0]:.1f} on {s['cpus']} CPUs")
    print(f"{'round':<6}{'what':<26}{'img/s wall':>11}{'img/s app':>10}{'% of CLI':>9}{'refresh/s':>10}"
          f"{'server cores':>13}{'browser cores':>14}")
    for i, row in enumerate(result["rounds"], 1):
        cli = row.get("cli", {}).get("images_per_second")
        if cli:
            print(f"{i:<6}{'command line':<26}{'':>11}{cli:>10.0f}{100:>8.0f}%")
        entries = [("watching", row["watch"])] if "watch" in row else []
        entries += [("away (Overview)", row["away"])] if "away" in row else []
        entries += [(f"two sessions: #{k}", x) for k, x in enumerate(row.get("two", []), 1)]
        for name, x in entries:
            wall, app = x["images_per_second_wall"], x["images_per_second_app"]
            ref = wall or app
            pct = f"{100 * ref / cli:>8.0f}%" if cli and ref else f"{'':>9}"
            fresh = x["chart_refreshes_per_second"]
            print(f"{'':<6}{name:<26}{(wall or 0):>11.0f}{(app or 0):>10.0f}{pct}"
                  f"{(f'{fresh:.2f}' if fresh is not None else ''):>10}"
                  f"{x['server_cores']:>13.2f}{x['browser_cores']:>14.2f}")
    ratios = [100 * (r["watch"]["images_per_second_wall"]) / r["cli"]["images_per_second"]
              for r in result["rounds"] if "watch" in r and "cli" in r]
    if ratios:
        print(f"watching / CLI: median {statistics.median(ratios):.0f} % over {len(ratios)} round(s)")


if __name__ == "__main__":
    main()

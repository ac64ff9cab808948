"""Several browser sessions on one server, and the server's memory over many runs (headless Chromium).

    python bench/bench_sessions.py [--data-dir DIR] [--epochs 3] [--runs 15] [--threads 1] [--json out.json]

1. Sessions. A LeNet-5 checkpoint is trained in this process (2 epochs on SIGNS) and saved in the
   server's checkpoint folder. Four browser contexts (= four Streamlit sessions) then share one
   ``streamlit run`` server: two train LeNet-5 on SIGNS for ``--epochs`` epochs (Adam 1e-2 seed 1,
   RMSprop 1e-3 seed 2), two predict uploaded hand photos with the checkpoint, one after another
   (two photos with different labels, alternately), until both runs have finished. Per session:
   seconds from Start to "Finished" seen in the browser, training images per second (effective:
   epochs × 1,080 / those seconds; and the app's own figure, compute time only), predictions per
   second, and the latency of a prediction as seen in the browser (upload → the Prediction metric
   shows the photo's label; p50/p95). For reference, the same figures with less going on: the
   two predicting sessions alone (before any run), one run alone, the two runs together. The
   server's CPU use in each phase (share of one core) shows how much of the box it got.
2. Memory. A fifth session chooses the MLP on Build and trains it ``--runs`` times on SIGNS
   (alternately 1 and 2 epochs); the server process's VmRSS (``/proc/<pid>/status``) is read after
   each run. The page keeps 12 runs, the models of the last 4, and the training tensors of the
   current run only, so RSS should level off after a few runs rather than grow with each run
   (an MLP run's training copy of SIGNS is 1,080 × 3 × 64 × 64 float32 = 53 MB).

Prints tables and writes JSON (default bench/results/sessions.json). Needs Chromium at
/usr/bin/chromium ($TORCHLAB_CHROMIUM) and the SIGNS files ($TORCHLAB_DATA_DIR). The server uses
``--threads`` intra-op threads (default 1, as the browser tests: a shared 2-core box).
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

N_TRAIN = 1080  # SIGNS training photos
CHECKPOINT = "lenet-signs-bench.pt"
TIMEOUT_MS = 600_000

IDLE_JS = """() => { const app = document.querySelector('[data-testid="stApp"]');
                     return !!app && app.getAttribute('data-test-script-state') === 'notRunning'; }"""
PROGRESS_JS = """() => { const m = document.querySelector('[data-testid="stMainBlockContainer"] [data-testid="stProgress"]');
                         return m ? m.innerText.trim() : ''; }"""
PREDICTION_JS = """label => {
    for (const m of document.querySelectorAll('[data-testid="stMainBlockContainer"] [data-testid="stMetric"]')) {
        const l = m.querySelector('[data-testid="stMetricLabel"]');
        const v = m.querySelector('[data-testid="stMetricValue"]');
        if (l && v && l.innerText.includes('Prediction')) return v.innerText.trim() === label;
    }
    return false; }"""


# --- in-process preparation --------------------------------------------------------------------


def prepare_checkpoint(data_dir: Path, folder: Path) -> tuple[Path, list[tuple[Path, str]]]:
    """A LeNet-5 trained for 2 epochs, and two photos (800 px JPEGs) it labels differently."""
    import h5py
    import torch
    from PIL import Image

    from core.checkpoint import load_checkpoint
    from core.data import load_dataset
    from core.inference import predict_image
    from core.spec import default_spec
    from core.trainer import Trainer, recipe

    torch.set_num_threads(1)
    ds = load_dataset("signs", data_dir)
    trainer = Trainer(default_spec("lenet", ds.num_classes), ds, recipe("lenet").replace(epochs=2, augment=False))
    for _ in trainer.run():
        pass
    path = trainer.save(folder / "checkpoints" / CHECKPOINT)
    ckpt = load_checkpoint(path)
    with h5py.File(data_dir / "signs" / "test_signs.h5", "r") as f:
        x = np.asarray(f["test_set_x"])
    photos: dict[str, Path] = {}
    for i in range(len(x)):
        buf = io.BytesIO()
        Image.fromarray(x[i]).resize((800, 800), Image.Resampling.BICUBIC).save(buf, "JPEG", quality=90)
        label = predict_image(ckpt, buf.getvalue(), name="hand.jpg").label
        if label not in photos:
            photos[label] = folder / f"hand-{label}.jpg"
            photos[label].write_bytes(buf.getvalue())
        if len(photos) == 2:
            break
    return path, [(p, label) for label, p in photos.items()]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServerCpu:
    """The server's CPU use over a phase, as a share of one core."""

    def __init__(self, pid: int) -> None:
        self.pid, self.cpu, self.wall = pid, cpu_seconds(pid), time.perf_counter()

    def percent(self) -> float:
        return 100 * (cpu_seconds(self.pid) - self.cpu) / (time.perf_counter() - self.wall)


def rss_mb(pid: int) -> tuple[float, float]:
    """VmRSS and VmHWM (peak) of a process, in MiB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


# --- browser helpers (async Playwright) ----------------------------------------------------------


def main_area(page):
    return page.get_by_test_id("stMainBlockContainer")


async def wait_idle(page) -> None:
    while True:
        await page.wait_for_function(IDLE_JS, polling=50, timeout=TIMEOUT_MS)
        await page.wait_for_timeout(300)
        if await page.evaluate(IDLE_JS):
            return


async def open_page(page, url: str, title: str) -> None:
    await page.goto(url)
    await page.locator("h1").filter(has_text=title).first.wait_for(timeout=TIMEOUT_MS)
    await wait_idle(page)


async def set_number(page, label: str, value: str) -> None:
    box = main_area(page).get_by_role("spinbutton", name=label, exact=True)
    await box.fill(value)
    await box.press("Enter")
    await wait_idle(page)


async def choose(page, label: str, option: str) -> None:
    await main_area(page).get_by_role("combobox", name=label, exact=True).click()
    await page.get_by_role("option", name=option, exact=True).click()
    await wait_idle(page)


def button(page, name: str):
    return main_area(page).get_by_role("button", name=name, exact=True)


async def progress(page) -> str:
    return await page.evaluate(PROGRESS_JS)


async def wait_progress(page, prefix: str) -> str:
    await page.wait_for_function(f"() => ({PROGRESS_JS})().startsWith({json.dumps(prefix)})", polling=50,
                                 timeout=TIMEOUT_MS)
    return await progress(page)


def reported_ips(text: str) -> float | None:
    """The app's images/s from a progress text ('… · 1,234 images/s …')."""
    m = re.search(r"([\d,]+) images/s", text)
    return float(m.group(1).replace(",", "")) if m else None


# --- the sessions ------------------------------------------------------------------------------


async def setup_trainer(page, url: str, epochs: int, optimizer: str, lr: str, seed: str) -> None:
    await open_page(page, url + "/train", "Train")
    await choose(page, "Optimizer", optimizer)
    await set_number(page, "Learning rate", lr)
    await set_number(page, "Epochs", str(epochs))
    await set_number(page, "Seed", seed)


async def train(page, epochs: int) -> dict:
    t0 = time.perf_counter()
    await button(page, "Start").click()
    await wait_progress(page, "Training:")
    text = await wait_progress(page, "Finished:")
    seconds = time.perf_counter() - t0
    await wait_idle(page)
    return {"seconds": seconds, "images_per_second": epochs * N_TRAIN / seconds,
            "app_images_per_second": reported_ips(text), "progress": text}


async def setup_predictor(page, url: str) -> None:
    await open_page(page, url + "/predict", "Predict a hand sign")
    box = main_area(page).get_by_role("combobox", name="Saved checkpoint")
    if await box.input_value() != CHECKPOINT:
        await choose(page, "Saved checkpoint", CHECKPOINT)


async def predict_until(page, photos: list[tuple[Path, str]], done, start: int = 0) -> dict:
    """Upload the photos alternately until ``done()``; each latency is upload → label shown."""
    latencies, i = [], start
    t0 = time.perf_counter()
    while not done():
        photo, label = photos[i % len(photos)]
        i += 1
        t = time.perf_counter()
        await main_area(page).locator('input[type="file"]').set_input_files(str(photo))
        await page.wait_for_function(PREDICTION_JS, arg=label, polling=20, timeout=TIMEOUT_MS)
        latencies.append(time.perf_counter() - t)
        await wait_idle(page)  # the rest of the page (chart, test split) before the next photo
    seconds = time.perf_counter() - t0
    return {"predictions": len(latencies), "seconds": seconds, "predictions_per_second": len(latencies) / seconds,
            "p50_ms": 1000 * statistics.median(latencies),
            "p95_ms": 1000 * float(np.percentile(latencies, 95)), "latencies_ms": [1000 * x for x in latencies]}


async def sessions_phase(browser, url: str, pid: int, epochs: int, photos, viewport) -> dict:
    contexts = [await browser.new_context(viewport=viewport) for _ in range(4)]
    t1, t2, p1, p2 = [await c.new_page() for c in contexts]
    trainers = [(t1, "Adam", "0.01000", "1"), (t2, "RMSprop", "0.00100", "2")]
    for page, optimizer, lr, seed in trainers:
        await setup_trainer(page, url, epochs, optimizer, lr, seed)
    for page in (p1, p2):
        await setup_predictor(page, url)

    # Reference: the two predicting sessions alone, 8 predictions each (the first loads the checkpoint).
    count = {"p1": 0, "p2": 0}

    def upto(key, n):
        def done():
            count[key] += 1
            return count[key] > n
        return done

    cpu = ServerCpu(pid)
    idle = await asyncio.gather(predict_until(p1, photos, upto("p1", 9)), predict_until(p2, photos, upto("p2", 9), 1))
    for r in idle:  # drop the first (checkpoint load, first chart) from the figures
        lat = r["latencies_ms"][1:]
        r.update(predictions=len(lat), p50_ms=statistics.median(lat), p95_ms=float(np.percentile(lat, 95)),
                 latencies_ms=lat)

    idle_cpu = cpu.percent()

    # References: one run alone, then the two runs together with no predictions.
    cpu = ServerCpu(pid)
    alone = await train(t1, epochs)
    alone_cpu, cpu = cpu.percent(), ServerCpu(pid)
    pair = list(await asyncio.gather(train(t1, epochs), train(t2, epochs)))
    pair_cpu, cpu = cpu.percent(), ServerCpu(pid)

    # Four at once.
    finished = {"n": 0}

    async def train_and_count(page):
        result = await train(page, epochs)
        finished["n"] += 1
        return result

    results = await asyncio.gather(
        train_and_count(t1), train_and_count(t2),
        predict_until(p1, photos, lambda: finished["n"] == 2),
        predict_until(p2, photos, lambda: finished["n"] == 2, start=1),
    )
    together_cpu = cpu.percent()
    for c in contexts:
        await c.close()
    return {"alone": {"train": alone, "predict": idle}, "two_runs": pair, "together": {
        "train": [{**r, "optimizer": o, "lr": float(lr), "seed": int(s)} for r, (_, o, lr, s) in zip(results[:2], trainers)],
        "predict": list(results[2:])},
        "server_cpu_percent": {"two_predicting": idle_cpu, "one_run": alone_cpu, "two_runs": pair_cpu,
                               "four_sessions": together_cpu}}


async def memory_phase(browser, url: str, pid: int, runs: int, viewport) -> dict:
    context = await browser.new_context(viewport=viewport)
    page = await context.new_page()
    await open_page(page, url + "/build", "Build a net")
    await choose(page, "Architecture", "MLP")
    await button(page, "Use this net").click()
    await page.locator("h1").filter(has_text="Train").first.wait_for(timeout=TIMEOUT_MS)
    await wait_idle(page)
    series = [{"run": 0, "rss_mb": rss_mb(pid)[0]}]
    for n in range(1, runs + 1):
        epochs = 1 if n % 2 else 2  # consecutive runs differ in what "Finished: epoch e/e" says
        await set_number(page, "Epochs", str(epochs))
        await button(page, "Start").click()
        await wait_progress(page, f"Finished: epoch {epochs}/{epochs}")
        await wait_idle(page)
        rss, peak = rss_mb(pid)
        series.append({"run": n, "rss_mb": rss, "peak_mb": peak})
    await context.close()
    return {"runs": runs, "model": "MLP 12288-20-7-5-6 RGB, SIGNS, 1 or 2 epochs", "series": series,
            "before_mb": series[0]["rss_mb"], "after_mb": series[-1]["rss_mb"],
            "max_mb": max(s["rss_mb"] for s in series), "peak_mb": series[-1]["peak_mb"]}


async def run_all(args, server, photos) -> dict:
    from playwright.async_api import async_playwright

    from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, VIEWPORT

    out = {}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            if args.epochs:
                out["sessions"] = await sessions_phase(browser, server.url, server.process.pid, args.epochs, photos,
                                                       VIEWPORT)
            if args.runs:
                out["memory"] = await memory_phase(browser, server.url, server.process.pid, args.runs, VIEWPORT)
        finally:
            await browser.close()
    return out


# --- report ------------------------------------------------------------------------------------


def report(result: dict, epochs: int) -> None:
    s = result.get("sessions")
    if s:
        print(f"\nSessions on one server — LeNet-5 on SIGNS, {epochs} epochs a run ({epochs * N_TRAIN:,} images)")
        print(f"{'session':<28}{'finish s':>9}{'img/s':>8}{'app img/s':>10}{'pred':>6}{'pred/s':>8}{'p50 ms':>8}{'p95 ms':>8}")

        def row(name, t=None, p=None):
            cells = [f"{name:<28}"]
            cells += [f"{t['seconds']:>9.1f}", f"{t['images_per_second']:>8.0f}",
                      f"{(t['app_images_per_second'] or 0):>10.0f}"] if t else [" " * 27]
            cells += [f"{p['predictions']:>6}", f"{p['predictions_per_second']:>8.2f}", f"{p['p50_ms']:>8.0f}",
                      f"{p['p95_ms']:>8.0f}"] if p else []
            print("".join(cells))

        row("train alone (Adam)", t=s["alone"]["train"])
        for t, name in zip(s["two_runs"], ("Adam", "RMSprop")):
            row(f"train ({name}) of 2", t=t)
        for i, p in enumerate(s["alone"]["predict"], 1):
            row(f"predict #{i} (no training)", p=p)
        for t in s["together"]["train"]:
            row(f"train ({t['optimizer']}) of 4", t=t)
        for i, p in enumerate(s["together"]["predict"], 1):
            row(f"predict #{i} of 4", p=p)
        print("server CPU (% of one core): " + ", ".join(f"{k.replace('_', ' ')} {v:.0f}"
                                                         for k, v in s["server_cpu_percent"].items()))
    m = result.get("memory")
    if m:
        print(f"\nServer RSS over {m['runs']} consecutive runs in one session ({m['model']})")
        print("after run: " + "  ".join(f"{x['run']}:{x['rss_mb']:.0f}" for x in m["series"]) + "  (MiB)")
        print(f"before {m['before_mb']:.0f} MiB → after {m['after_mb']:.0f} MiB; highest after a run {m['max_mb']:.0f} MiB; "
              f"process peak (VmHWM) {m['peak_mb']:.0f} MiB")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.environ.get("TORCHLAB_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    p.add_argument("--epochs", type=int, default=3, help="epochs of each LeNet run; 0 skips the sessions part")
    p.add_argument("--runs", type=int, default=15, help="MLP runs for the memory part; 0 skips it")
    p.add_argument("--threads", type=int, default=1, help="the server's intra-op threads")
    p.add_argument("--json", default=str(ROOT / "bench" / "results" / "sessions.json"))
    args = p.parse_args()
    os.environ["TORCHLAB_TEST_THREADS"] = str(args.threads)
    from tests.e2e.conftest import start_server

    data_dir = Path(args.data_dir)
    work = Path(tempfile.mkdtemp(prefix="bench-sessions-"))
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    _, photos = prepare_checkpoint(data_dir, work)
    print(f"checkpoint and photos ready in {time.perf_counter() - t0:.1f} s: labels {[label for _, label in photos]}")
    server = start_server(data_dir, work)
    try:
        result = asyncio.run(run_all(args, server, photos))
    finally:
        server.stop()
    result["setup"] = {"epochs": args.epochs, "runs": args.runs, "server_threads": args.threads,
                       "cpus": os.cpu_count(), "load_average_before": load_before, "load_average_after": os.getloadavg(), "machine": platform.processor() or platform.machine(),
                       "python": platform.python_version()}
    report(result, args.epochs)
    print(f"\nload average (1 min) before {load_before[0]:.1f}, after {result['setup']['load_average_after'][0]:.1f} "
          f"on {os.cpu_count()} CPUs: other work on the machine slows every figure above")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()

"""Screenshots of the MLflow UI on a tiny sweep, taken by a real headless browser, for docs/ui/.

    .venv/bin/python docs/ui_screenshots.py            # about 2 minutes on 2 CPU cores

It runs a three-trial sweep of SimCLR on digits (2 epochs each; one trial is pruned) in a temporary
folder, starts `contrastlab ui` on that store, and has Debian's Chromium (`apt-get install chromium`)
photograph the runs table, the pruned trial's page, the best trial's views picture and the parent's page.
Chromium runs headless, with a fresh profile and no background network, driven over its DevTools
protocol (with aiohttp) so that it can close MLflow's assistant panel and expand the parent's trials.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's contrastlab, wherever the package is installed from

from contrastlab.platform.ui import MODEL_TRAINING_VIEW  # noqa: E402

OUT = REPO / "docs" / "ui"
NAME = "simclr-digits-tiny"
MAX_PNG_BYTES = 300_000
SWEEP = {
    "name": NAME,
    "base": str(REPO / "configs" / "simclr" / "digits.yaml"),
    "fixed": {
        "trainer.max_epochs": 2,
        "trainer.check_val_every_n_epoch": 1,
        "model.proj_hidden_dim": 128,
        "tracking.system_metrics_interval": 0,
        "tracking.log_checkpoints": False,
    },
    "space": {
        "model.temperature": {"type": "categorical", "choices": [0.1, 0.2, 0.5]},
        "data.max_train_samples": {"type": "categorical", "choices": [600, 20]},
        "data.batch_size": {"type": "categorical", "choices": [128, 20]},
    },
    # two full trials (the pruner's start-up), then one on 20 samples whose kNN score the median pruner cuts
    "enqueue": [
        {"model.temperature": 0.2, "data.max_train_samples": 600, "data.batch_size": 128},
        {"model.temperature": 0.1, "data.max_train_samples": 600, "data.batch_size": 128},
        {"model.temperature": 0.5, "data.max_train_samples": 20, "data.batch_size": 20},
    ],
    "objective": {"metric": "val/knn_top1", "direction": "maximize"},
    "n_trials": 3,
    "pruner": {"name": "median", "n_startup_trials": 2, "n_warmup_steps": 0},
}
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--window-size=1400,900",
]
# Clicked in the page before each picture, one after the other: the close button of the assistant panel
# MLflow opens on a first visit, then the sweep's parent row's expander so the runs table shows its trials.
CLOSE_ASSISTANT = 'button[aria-label="Close"]'
EXPAND_PARENT = 'button[data-component-id*="runnamecellrenderer"]'
RUN_NAME_EDGE_JS = """JSON.stringify([...document.querySelectorAll('[role=columnheader]')]
  .filter(h => h.textContent.trim() === 'Run Name').map(h => {
  const r = h.getBoundingClientRect(); return [r.right - 2, r.y + r.height / 2]; }))"""
CENTRES_JS = """JSON.stringify([...document.querySelectorAll('%s')].map(b => {
  const r = b.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }))"""
SETTLE_SECONDS = 10  # the single-page app fetches runs, metrics and artifacts after it loads


def contrastlab(*args: str, cwd: Path, **kwargs) -> subprocess.Popen | subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, "-m", "contrastlab", *args]
    if kwargs.pop("background", False):
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return subprocess.run(command, cwd=cwd, env=env, check=True, **kwargs)


def wait_for(url: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"the MLflow UI did not answer at {url} within {timeout:.0f} s")


async def _photograph(chromium: str, shots: dict[str, tuple[str, int]], profile: Path, port: int) -> None:
    """Each URL in one headless Chromium, driven over the DevTools protocol: load, tidy, photograph."""
    import base64

    import aiohttp

    browser = subprocess.Popen(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--remote-debugging-port={port}", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        async with aiohttp.ClientSession() as session:
            targets = None
            for _ in range(100):
                try:
                    async with session.get(f"http://127.0.0.1:{port}/json/list") as answer:
                        targets = await answer.json()
                        break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.2)
            if not targets:
                raise SystemExit(f"{chromium} did not open its DevTools port {port}")
            page = next(t for t in targets if t["type"] == "page")
            async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                ids = iter(range(1, 1_000_000))

                async def call(method: str, **params):
                    number = next(ids)
                    await ws.send_json({"id": number, "method": method, "params": params})
                    while True:
                        message = await ws.receive_json()
                        if message.get("id") == number:
                            return message.get("result", {})

                await call("Page.enable")
                for name, (url, height) in shots.items():
                    await call("Emulation.setDeviceMetricsOverride", width=1400, height=height, deviceScaleFactor=1,
                               mobile=False)  # fmt: skip
                    await call("Page.navigate", url=url)
                    await asyncio.sleep(SETTLE_SECONDS)
                    for selector in (CLOSE_ASSISTANT, EXPAND_PARENT):  # clicked as a user clicks: mouse events
                        found = await call("Runtime.evaluate", expression=CENTRES_JS % selector, returnByValue=True)
                        for x, y in json.loads(found["result"]["value"]):
                            for kind in ("mousePressed", "mouseReleased"):
                                await call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left",
                                           clickCount=1)  # fmt: skip
                        await asyncio.sleep(3)
                    # widen the Run Name column (drag its edge) so the trials' names show in full
                    found = await call("Runtime.evaluate", expression=RUN_NAME_EDGE_JS, returnByValue=True)
                    for x, y in json.loads(found["result"]["value"]):
                        await call("Input.dispatchMouseEvent", type="mousePressed", x=x, y=y, button="left",
                                   clickCount=1)  # fmt: skip
                        for step in range(1, 11):
                            await call("Input.dispatchMouseEvent", type="mouseMoved", x=x + 20 * step, y=y,
                                       button="left", buttons=1)  # fmt: skip
                        await call("Input.dispatchMouseEvent", type="mouseReleased", x=x + 200, y=y, button="left",
                                   clickCount=1)  # fmt: skip
                        await asyncio.sleep(1)
                    picture = await call("Page.captureScreenshot", format="png")
                    path = OUT / name
                    path.write_bytes(base64.b64decode(picture["data"]))
                    shrink(path)
                    print(f"{path.relative_to(REPO)}: {url} ({path.stat().st_size // 1000} KB)", flush=True)
    finally:
        browser.terminate()
        browser.wait(timeout=30)


def shrink(path: Path) -> None:
    """A 256-colour palette: UI screenshots are flat colours and text, so nothing visible is lost."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)
    if path.stat().st_size > MAX_PNG_BYTES:
        raise SystemExit(f"{path} is {path.stat().st_size} bytes, over {MAX_PNG_BYTES}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=5123)
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium")
    parser.add_argument("--keep", type=Path, help="sweep in this folder and keep it; reuse its store if there")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="contrastlab-ui-") as folder:
        work = args.keep or Path(folder)
        work.mkdir(parents=True, exist_ok=True)
        if not (work / "mlruns" / "mlflow.db").exists():
            (work / "sweep.yaml").write_text(yaml.safe_dump(SWEEP, sort_keys=False))
            contrastlab("sweep", "-c", "sweep.yaml", cwd=work, stdout=subprocess.DEVNULL)

        import mlflow

        client = mlflow.MlflowClient(f"sqlite:///{work / 'mlruns' / 'mlflow.db'}")
        experiment = client.get_experiment_by_name(NAME)
        runs = client.search_runs([experiment.experiment_id])
        parent = next(r for r in runs if r.data.tags.get("sweep.role") == "parent")
        pruned = next(r for r in runs if r.data.tags.get("sweep.state") == "pruned")
        best = client.get_run(parent.data.tags["best.run_id"])

        ui = contrastlab("ui", "--port", str(args.port), cwd=work, background=True)
        try:
            base = f"http://127.0.0.1:{args.port}"
            wait_for(base + "/health")
            page = f"{base}/#/experiments/{experiment.experiment_id}"
            mode = f"?workflowType={MODEL_TRAINING_VIEW}"  # as `contrastlab ui` prints it
            shots = {
                "runs_table.png": (f"{page}/runs{mode}", 900),
                "pruned_trial.png": (f"{page}/runs/{pruned.info.run_id}{mode}", 1300),
                "best_trial_views.png": (f"{page}/runs/{best.info.run_id}/artifacts/views.png{mode}", 900),
                "parent.png": (f"{page}/runs/{parent.info.run_id}{mode}", 1300),
            }
            with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
                asyncio.run(_photograph(args.chromium, shots, Path(profile), args.port + 1))
        finally:
            ui.terminate()
            ui.wait(timeout=30)


if __name__ == "__main__":
    main()

"""A pipeline step's fixed cost: everything but its data work, beside a bare papermill run in the same process.

Measured here, in one run:
- **bare papermill**: an empty one-cell notebook executed by papermill (kernel start included), the floor any
  notebook step pays;
- **the smallest pipeline** (`variants` on a 3,000-customer lake): once with a kernel started for it (as
  `campaign-lab run` does), once with a kernel from a `KernelPool` that had time to start and import;
- **the demo cycle** (`campaign-lab cycle`, 2 campaigns, `--waves` waves, `--customers` customers) with
  `warm_kernels` = 0 and = 2, and optionally the same cycle from another checkout (`--baseline-root`, e.g. a git
  worktree of an older commit: its code, pipelines and settings) for the before/after of a change.

A step's **data work** is the time its cells ran; its **fixed cost** is the rest of its wall time (kernel start or
wait, papermill, the report, the manifest). Cell times of a cold kernel include the imports, so the fixed cost of the
smallest pipeline is taken against the cells of its warm run.

    .venv/bin/python benchmarks/steps.py [--customers 200000] [--waves 3] [--baseline-root /path/to/old/checkout]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPECS = ["campaigns/win_back.yaml", "campaigns/spring.yaml"]


def cell_seconds(run_dir: Path) -> float:
    nb = json.loads((run_dir / "report.ipynb").read_text())
    return sum(c["metadata"].get("papermill", {}).get("duration") or 0.0 for c in nb["cells"] if c["cell_type"] == "code")


def bare_papermill(n: int = 3) -> float:
    import nbformat
    import papermill as pm
    d = Path(tempfile.mkdtemp())
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, d / "empty.ipynb")
    times = []
    for _ in range(n):
        t = time.perf_counter()
        pm.execute_notebook(str(d / "empty.ipynb"), str(d / "out.ipynb"), kernel_name="python3", progress_bar=False)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def smallest(env: dict) -> dict:
    from campaign_lab.execute import KernelPool, execute
    from campaign_lab.settings import load_settings
    scratch_dir = Path(env["CAMPAIGN_LAB_LAKE_DIR"]).parent    # the world and its inbox too, never in the checkout
    os.environ["CAMPAIGN_LAB_INBOX_DIR"] = str(scratch_dir / "inbox")
    assert execute("synth", {"n_customers": 3000, "world_dir": str(scratch_dir / "world")}, root=ROOT).ok
    t = time.perf_counter(); cold = execute("variants", root=ROOT); cold_s = time.perf_counter() - t
    with KernelPool(load_settings(ROOT)) as pool:
        time.sleep(15)   # as if another step had run meanwhile: the pool's kernel has started and imported
        t = time.perf_counter(); warm = execute("variants", root=ROOT, kernels=pool); warm_s = time.perf_counter() - t
    assert cold.ok and warm.ok
    data = cell_seconds(warm.run_dir)
    return {"cold_s": cold_s, "warm_s": warm_s, "data_s": data, "cold_cells_s": cell_seconds(cold.run_dir)}


def cycle(env: dict, customers: int, waves: int, root: Path = ROOT) -> dict:
    env = dict(env)
    if root != ROOT: env["PYTHONPATH"] = str(root / "src")   # that checkout's code, pipelines and settings
    specs = sum((["--campaign", s] for s in SPECS), [])
    if root == ROOT:   # this tree: the cycle through files, the synthetic world answering week by week, all in the scratch folder
        scratch_dir = Path(env["CAMPAIGN_LAB_LAKE_DIR"]).parent
        env |= {"CAMPAIGN_LAB_INBOX_DIR": str(scratch_dir / "inbox"), "CAMPAIGN_LAB_OUTBOX_DIR": str(scratch_dir / "outbox")}
        cmd = [str(Path(sys.executable).parent / "campaign-lab-world"), "demo", *specs, "--waves", str(waves), "--n-customers", str(customers),
               "--world", str(scratch_dir / "world")]
    else:              # an older checkout, whose cycle drew the synthetic chain itself
        cmd = [str(Path(sys.executable).parent / "campaign-lab"), "cycle", *specs, "--waves", str(waves), "--n-customers", str(customers)]
    t = time.perf_counter()
    res = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if res.returncode != 0: raise SystemExit(f"cycle failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    runs = Path(env["CAMPAIGN_LAB_RUNS_DIR"])
    steps = []
    for m in sorted(runs.glob("*/manifest.json")):
        d = json.loads(m.read_text())
        if d["pipeline"] == "cycle": continue
        steps.append({"pipeline": d["pipeline"], "s": d["duration_s"], "cells_s": cell_seconds(m.parent)})
    fixed = [s["s"] - s["cells_s"] for s in steps]
    return {"wall_s": wall, "steps": len(steps), "fixed_median_s": statistics.median(fixed), "fixed_total_s": sum(fixed),
            "cells_total_s": sum(s["cells_s"] for s in steps)}


def scratch(name: str, **extra) -> dict:
    d = Path(tempfile.mkdtemp(prefix=f"steps-{name}-"))
    for sub in ("lake", "runs"): (d / sub).mkdir()   # what `campaign-lab init` makes
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAMPAIGN_LAB_")}
    return env | {"CAMPAIGN_LAB_LAKE_DIR": str(d / "lake"), "CAMPAIGN_LAB_RUNS_DIR": str(d / "runs")} | extra


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=200_000)
    ap.add_argument("--waves", type=int, default=3)
    ap.add_argument("--baseline-root", help="run the same cycle from this checkout too (e.g. a git worktree of an older commit)")
    a = ap.parse_args()
    bare = bare_papermill()
    print(f"bare papermill, empty notebook (median of 3):           {bare:6.2f} s")
    env = scratch("small")
    os.environ.update({k: v for k, v in env.items() if k.startswith("CAMPAIGN_LAB_")})
    s = smallest(env)
    print(f"variants on 3,000 customers, its own kernel:             {s['cold_s']:6.2f} s   (cells {s['cold_cells_s']:.2f} s, imports included)")
    print(f"variants on 3,000 customers, a warm kernel:              {s['warm_s']:6.2f} s   (cells {s['data_s']:.2f} s: the data work)")
    print(f"  fixed cost: own kernel {s['cold_s'] - s['data_s']:.2f} s, warm kernel {s['warm_s'] - s['data_s']:.2f} s  "
          f"(target < 2 s; bare papermill {bare:.2f} s)")
    for k in [k for k in os.environ if k.startswith("CAMPAIGN_LAB_")]: del os.environ[k]
    print(f"\nthe demo cycle: {a.customers:,} customers, 2 campaigns, {a.waves} waves")
    print(f"{'':<34} {'wall s':>8} {'steps':>6} {'fixed/step (median)':>20} {'fixed total':>12} {'cells total':>12}", flush=True)
    rows = []
    todo = [("cycle, warm_kernels=2", scratch("warm", CAMPAIGN_LAB_WARM_KERNELS="2"), ROOT),
            ("cycle, warm_kernels=0", scratch("cold", CAMPAIGN_LAB_WARM_KERNELS="0"), ROOT)]
    if a.baseline_root: todo.append((f"cycle from {a.baseline_root}", scratch("base"), Path(a.baseline_root).resolve()))
    for name, env, root in todo:
        r = cycle(env, a.customers, a.waves, root)
        rows.append((name, r))
        print(f"{name:<34} {r['wall_s']:>8.1f} {r['steps']:>6} {r['fixed_median_s']:>20.2f} {r['fixed_total_s']:>12.1f} {r['cells_total_s']:>12.1f}", flush=True)
    base = rows[-1][1]["wall_s"]
    print(f"speed-up of warm_kernels=2 over {rows[-1][0]}: {base / rows[0][1]['wall_s']:.2f}x (target for the demo: 2.5x over the tree before)")


if __name__ == "__main__":
    main()

"""What the guardrails and the unsubscribe suppression add to a wave at scale: scans of the lake's events table.

Before each wave `waves.assign_wave` counts a campaign's sends, unsubscribes and complaints per variant
(`waves.guardrail_counts`) and the audience leaves out every customer the CRM reported unsubscribing
(`waves.unsubscribed`). Both are lazy scans of the events table. This script writes an events table the
size of a 12M-customer chain after several waves (by default three waves of 9M sends with opens, clicks,
conversions, unsubscribes and complaints, two campaigns) as parquet and times each scan (best of three),
beside the baseline of a bare scan of the same columns in the same run.

    .venv/bin/python benchmarks/guardrails.py [--sends 9000000] [--waves 3]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from campaign_lab.lake import EVENT_TYPES
from campaign_lab.variants import Guardrail
from campaign_lab.waves import guardrail_counts, guardrail_status, unsubscribed


def events(sends: int, waves: int, seed: int = 0) -> pl.DataFrame:
    "A synthetic events table: per wave `sends` sends over 352 variants, about 25% opens, 5% clicks, 2% conversions, 0.2% unsubscribes."
    rng = np.random.default_rng(seed)
    parts = []
    for w in range(waves):
        cust = rng.choice(12_000_000, sends, replace=False).astype(np.int64)
        variant = rng.integers(0, 352, sends)
        u = rng.random(sends)
        for kind, keep in (("send", np.ones(sends, bool)), ("open", u < 0.25), ("click", u < 0.05), ("conversion", u < 0.02),
                           ("unsubscribe", (u > 0.5) & (u < 0.5015)), ("complaint", (u > 0.6) & (u < 0.6002))):
            n = int(keep.sum())
            parts.append(pl.DataFrame({"event_id": pl.Series(np.arange(n), dtype=pl.Int64), "customer_id": cust[keep],
                                       "variant_id": pl.Series(variant[keep]).cast(pl.String),
                                       "campaign_id": np.where(variant[keep] < 28, "win_back", "spring_menu")})
                         .with_columns(event_id=pl.col("event_id").cast(pl.String) + f"-{w}-{kind}", wave=pl.lit(w, pl.Int32),
                                       event_type=pl.lit(kind).cast(pl.Enum(EVENT_TYPES)), revenue=pl.lit(25.0 if kind == "conversion" else 0.0)))
    return pl.concat(parts)


def timed(f, repeat: int = 3) -> tuple[float, object]:
    "The best of `repeat` runs (the first pays the page cache), and the result."
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter(); out = f(); best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sends", type=int, default=9_000_000)
    ap.add_argument("--waves", type=int, default=3)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "events.parquet"
        ev = events(a.sends, a.waves)
        ev.write_parquet(path, row_group_size=1_000_000)
        n = ev.height
        del ev
        scan = lambda: pl.scan_parquet(path)
        t_base, _ = timed(lambda: scan().select("campaign_id", "event_type", "variant_id").collect())
        t_counts, counts = timed(lambda: guardrail_counts(scan(), "spring_menu"))
        t_status, status = timed(lambda: guardrail_status(counts, (Guardrail("unsubscribe", 3.0), Guardrail("complaint", 0.5))))
        t_base2, _ = timed(lambda: scan().select("event_type", "customer_id").collect())
        t_unsub, gone = timed(lambda: unsubscribed(scan()))
    print(f"events table: {n:,} rows ({a.waves} waves of {a.sends:,} sends, two campaigns)")
    print(f"guardrail_counts (one campaign, per variant):  {t_counts:6.2f} s   baseline, bare scan of its 3 columns: {t_base:6.2f} s   ratio {t_counts / t_base:.2f}")
    print(f"guardrail_status ({counts.height} variants, 2 guardrails):    {t_status:6.3f} s")
    print(f"unsubscribed ({gone.height:,} customers):         {t_unsub:6.2f} s   baseline, bare scan of its 2 columns: {t_base2:6.2f} s   ratio {t_unsub / t_base2:.2f}")


if __name__ == "__main__":
    main()

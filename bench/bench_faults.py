"""Nothing lost, nothing duplicated, over many seeds: the fault-injection comparison of
``tests/sync/test_fault_injection.py``, run for N seeds instead of CI's four.

Each seed syncs the same sandbox portal (scores pushed, follow-up tasks for hot leads) over real loopback
sockets while the sandbox deals 5xx, 429 storms, drops before and after the effect, resets, 207 partial
failures and whole-batch rejections, plus one task create whose answer is lost after it took effect; cycles
repeat (at most 20) until nothing is open. The destination is then compared with a fault-free run's.

    python bench/bench_faults.py --seeds 50

Prints a Markdown table: faults dealt by kind, cycles and requests needed, duplicates and missing updates
found (goal: 0), ledger/sandbox mismatches, and dead letters against poisoned inputs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def spread(values: Sequence[int]) -> str:
    if not values:
        return ""
    return f"{min(values)} / {statistics.median(values):g} / {max(values)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=50, help="how many seeds to run")
    parser.add_argument("--first", type=int, default=1, help="the first seed")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every fault rate (not the poisoned share) by this, capped at 1")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))  # the rig lives with the tests: the bench measures exactly what CI asserts
    from tests.sync.rig import (
        CONTACTS,
        FAULT_KINDS,
        FAULTS,
        HOT,
        compare,
        run_reference,
        run_with_faults,
        train_model,
    )

    rates = ("error_rate", "storm_429", "timeout_rate", "reset_rate", "partial_failure_rate")
    faults = dataclasses.replace(FAULTS, **{r: min(1.0, getattr(FAULTS, r) * args.scale) for r in rates})
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp, contextlib.ExitStack() as servers:
        work = Path(tmp)
        print(f"training a model, then the fault-free run ({CONTACTS} contacts) ...", file=sys.stderr)
        model_dir = train_model(work / "train")
        reference = asyncio.run(run_reference(servers, work / "reference", model_dir))
        hot = sum(1 for s in reference.scores.values() if s["score"] >= HOT)
        rows: dict[str, list[int]] = {}
        failures: list[str] = []
        seeds = range(args.first, args.first + args.seeds)
        for seed in seeds:
            with contextlib.ExitStack() as seed_servers:
                run = asyncio.run(run_with_faults(seed_servers, work / f"seed{seed}", model_dir, seed, faults=faults))
            diff = compare(reference, run)
            measured = {
                **{kind: run.injected[kind] for kind in FAULT_KINDS},
                "207 partial answers": run.status_codes[207],
                "whole batches refused (400)": run.rejected_batches,
                "task answers lost after the effect (scripted)": run.dropped_after_create,
                "tasks found by look-up": run.outcomes("found_by_lookup"),
                "cycles to drain": len(run.reports),
                "requests": run.requests,
                "duplicates found (goal 0)": diff.duplicates,
                "missing updates (goal 0)": diff.missing,
                "other differences from fault-free (goal 0)": len(diff.scores) + len(diff.tasks) - diff.missing,
                "poisoned effects that leaked (goal 0)": len(diff.poison_leaked),
                "ledger ≠ sandbox (goal 0)": len(run.ledger_problems),
                "operations still open (goal 0)": run.open_left,
                "poisoned inputs": len(run.poisoned),
                "dead letters": len(run.dead),
                "dead letters ≠ poisoned inputs (goal 0)": len(run.dead ^ run.poisoned),
            }
            for name, value in measured.items():
                rows.setdefault(name, []).append(value)
            bad = {k: v for k, v in measured.items() if "(goal 0)" in k and v}
            if bad or any(r.status != "succeeded" for r in run.reports):
                failures.append(f"seed {seed}: {bad} {[r.errors for r in run.reports if r.errors]}")
            print(f"seed {seed}: {len(run.reports)} cycles, {run.requests} requests"
                  f"{' — ' + str(bad) if bad else ''}", file=sys.stderr)
    elapsed = time.perf_counter() - started

    print(f"\n## Fault injection: {args.seeds} seeds, {CONTACTS} contacts, {hot} hot leads "
          f"(follow-up at score ≥ {HOT}), fault rates ×{args.scale:g}, {elapsed:.0f} s\n")
    print("| measure | total | per seed: min / median / max |")
    print("|---|---:|---:|")
    print(f"| seeds | {args.seeds} | |")
    for name, values in rows.items():
        print(f"| {name} | {sum(values)} | {spread(values)} |")
    print(f"\nseeds with a difference, a duplicate, a loss or a failed cycle: {len(failures)} of {args.seeds}")
    for line in failures:
        print(f"- {line}")


if __name__ == "__main__":
    main()

"""`leadrelay demo`: the whole product end to end on the embedded defaults (SQLite + the sandbox).

It serves a seeded HubSpot sandbox on a loopback port, writes a config pointing at it, then runs the
real commands' functions in order: a first sync (pull only — there is no model yet), training from the
store's history, a dry run, a real sync and an unchanged re-sync. It prints what happened at each step
and, from the sandbox's own counters, what reached the "CRM".
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

SANDBOX_TOKEN = "sandbox-token"  # the sandbox's own token: not a secret

CONFIG_TEMPLATE = """\
# Written by `leadrelay demo`: the demo's settings (see config.example.toml for every option).
[store]
url = "sqlite:///{store}"

[scoring]
model_dir = "{models}"
horizon_days = 30
min_examples = 200
min_positives = 20

[scoring.fit.icp]
industries = ["COMPUTER_SOFTWARE", "INFORMATION_TECHNOLOGY_AND_SERVICES", "FINANCIAL_SERVICES",
              "MARKETING_AND_ADVERTISING"]
employees = [50, 2000]

[connections.hubspot]
type = "hubspot"
token = "${{HUBSPOT_TOKEN}}"
base_url = "${{HUBSPOT_BASE_URL}}"

[pipelines.hubspot_scores]
source = "hubspot"
destination = "hubspot"
"""


def _write_config(workdir: Path) -> Path:
    path = workdir / "leadrelay.toml"
    path.write_text(CONFIG_TEMPLATE.format(store=(workdir / "leadrelay.db").as_posix(),
                                           models=(workdir / "models" / "lead").as_posix()))
    return path


def _writes(sandbox: object) -> int:
    return int(sandbox.stats.write_calls)  # type: ignore[attr-defined]


def run_demo(workdir: Path, *, contacts: int, seed: int, echo: Callable[[str], None] = print) -> None:
    from connectors.sandbox import HubSpotSandbox, generate_dataset, serve_on_loopback
    from sync import config
    from sync.pipeline import run_cycle_sync
    from sync.report import render_cycle, render_training
    from sync.store import Store
    from sync.training import train_from_store

    started = time.perf_counter()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    now = datetime.now(UTC)
    echo(f"1. Seeding the HubSpot sandbox with {contacts} contacts and their activity history…")
    dataset = generate_dataset(seed=seed, contacts=contacts, now=now)
    sandbox = HubSpotSandbox(token=SANDBOX_TOKEN)
    sandbox.load(dataset)
    with serve_on_loopback(sandbox.app) as base_url:
        echo(f"   sandbox listening on {base_url}")
        env: Mapping[str, str] = {**os.environ, "HUBSPOT_TOKEN": SANDBOX_TOKEN, "HUBSPOT_BASE_URL": base_url}
        config_path = _write_config(workdir)
        settings = config.load(config_path, env=env)
        name = next(iter(settings.pipelines))
        store = Store(settings.store.url)
        store.create_all()

        echo("\n2. First sync: pull everything (no model yet, so nothing is scored or pushed)")
        echo(render_cycle(run_cycle_sync(settings, name, store)))

        echo("\n3. Training a lead model from the store's history")
        echo(render_training(train_from_store(settings, name, store, now=datetime.now(UTC))))

        echo("\n4. Dry run: the whole plan, nothing written")
        before = _writes(sandbox)
        echo(render_cycle(run_cycle_sync(settings, name, store, dry_run=True)))
        echo(f"   write requests the sandbox received during the dry run: {_writes(sandbox) - before}")

        echo("\n5. Real sync: scores pushed to HubSpot")
        before = _writes(sandbox)
        echo(render_cycle(run_cycle_sync(settings, name, store)))
        echo(f"   write requests the sandbox received: {_writes(sandbox) - before}")

        echo("\n6. Sync again with nothing changed in the CRM")
        before = _writes(sandbox)
        echo(render_cycle(run_cycle_sync(settings, name, store)))
        echo(f"   write requests the sandbox received: {_writes(sandbox) - before} (nothing changed, nothing sent)")

        sample = _sample_contact(sandbox)
        store.close()
    echo(f"\nDone in {time.perf_counter() - started:.1f} s. Where to look:")
    echo(f"  config:      {config_path}")
    echo(f"  store:       {workdir / 'leadrelay.db'} (SQLite: runs, outbox, ledger, scores, quarantine)")
    echo(f"  model card:  {Path(settings.scoring.model_dir) / 'card.json'}")
    if sample:
        echo(f"  a scored contact as the CRM now shows it: {sample}")
    echo(f"  try:         leadrelay -c {config_path} status")


def _sample_contact(sandbox: object) -> dict[str, str] | None:
    contacts = sandbox.objects["contacts"]  # type: ignore[attr-defined]
    best = None
    for record in contacts.values():
        props = record["properties"]
        if props.get("leadrelay_score") and (best is None or int(props["leadrelay_score"]) >
                                              int(best["leadrelay_score"])):
            best = props
    if best is None:
        return None
    keys = ("email", "leadrelay_score", "leadrelay_band", "leadrelay_reasons", "leadrelay_model_version")
    return {k: best.get(k) or "" for k in keys}


def serve_forever(*, port: int, contacts: int, seed: int, token: str) -> None:
    """`leadrelay sandbox serve`: a seeded sandbox on 127.0.0.1:PORT until Ctrl-C."""
    import uvicorn

    from connectors.sandbox import HubSpotSandbox, generate_dataset

    sandbox = HubSpotSandbox(token=token)
    sandbox.load(generate_dataset(seed=seed, contacts=contacts, now=datetime.now(UTC)))
    uvicorn.run(sandbox.app, host="127.0.0.1", port=port, log_level="warning")


__all__ = ["run_demo", "serve_forever"]

"""`leadrelay demo`: the whole product end to end on the embedded defaults (SQLite + the sandbox).

It serves a seeded HubSpot sandbox on a loopback port, writes a config pointing at it, then runs the
real commands' functions in order: a first sync (pull only — there is no model yet), training the lead model
and the account model (labelled by the deals pulled as opportunities) from the store's history, a dry run, a
real sync and an unchanged re-sync. It prints what happened at each step
and, from the sandbox's own counters, what reached the "CRM".
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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

# The account model: label = an opportunity (a HubSpot deal) created on the company within horizon_days.
[scoring.account]
model_dir = "{account_models}"

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
                                           models=(workdir / "models" / "lead").as_posix(),
                                           account_models=(workdir / "models" / "account").as_posix()))
    return path


def _writes(sandbox: object) -> int:
    return int(sandbox.stats.write_calls)  # type: ignore[attr-defined]


def run_demo(workdir: Path, *, contacts: int, seed: int, echo: Callable[[str], None] = print) -> None:
    from connectors.sandbox import HubSpotSandbox, generate_dataset, serve_on_loopback
    from sync import config
    from sync.pipeline import run_cycle_sync
    from sync.report import render_cycle, render_training
    from sync.store import Store
    from sync.training import train_accounts_from_store, train_from_store

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

        echo("\n3b. Training an account model: will a deal (opportunity) be created on the company within 30 days?")
        echo(render_training(train_accounts_from_store(settings, name, store, now=datetime.now(UTC))))

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


# `leadrelay sandbox serve --vendor`: the fakes it can serve, in port order for `all`.
SANDBOX_VENDORS = ("hubspot", "salesforce", "marketo", "meta", "google_ads", "linkedin")


@dataclass(frozen=True)
class ServedSandbox:
    """One fake being served: its vendor, base URL and the connection settings that reach it."""

    vendor: str
    sandbox: Any
    base_url: str
    connection: dict[str, Any]
    note: str = ""

    def toml(self) -> str:
        """The ``[connections.<vendor>]`` table to paste into a config."""
        lines = [f"[connections.{self.vendor}]" + (f"  # {self.note}" if self.note else "")]
        for key, value in self.connection.items():
            if isinstance(value, dict):
                inner = ", ".join(f"{json.dumps(str(k))} = {json.dumps(v)}" for k, v in value.items())
                lines.append(f"{key} = {{ {inner} }}")
            else:
                lines.append(f"{key} = {json.dumps(value)}")
        return "\n".join(lines)


def _build(vendor: str, *, contacts: int, seed: int, token: str, now: datetime) -> tuple[Any, Any]:
    """(the seeded fake, a function base URL -> (connection settings, note))."""
    from connectors import sandbox as fakes

    if vendor == "hubspot":
        hub = fakes.HubSpotSandbox(token=token)
        hub.load(fakes.generate_dataset(seed=seed, contacts=contacts, now=now))
        return hub, lambda url: ({"type": "hubspot", "token": token, "base_url": url}, "")
    if vendor == "salesforce":
        sf = fakes.SalesforceSandbox()
        sf.load(fakes.generate_dataset(seed=seed, contacts=contacts, now=now))
        return sf, lambda url: ({"type": "salesforce", "client_id": sf.client_id, "client_secret": sf.client_secret,
                                 "refresh_token": next(iter(sf.refresh_tokens)), "login_url": url,
                                 "lead_fields": {"account_key": "Account__c"}}, "")
    if vendor == "marketo":
        from connectors.sandbox.marketo import SANDBOX_ACTIVITY_TYPES

        mkto = fakes.MarketoSandbox()
        mkto.load(fakes.generate_dataset(seed=seed, contacts=contacts, now=now))
        list_id = mkto.create_list("leadrelay sandbox list")
        return mkto, lambda url: ({"type": "marketo", "base_url": url, "client_id": "sandbox-marketo-client",
                                   "client_secret": "sandbox-marketo-secret",
                                   "activity_types": {str(k): v for k, v in SANDBOX_ACTIVITY_TYPES.items()},
                                   "conversion_date_field": "opportunityDate"},
                                  f"static list id for an audience: {list_id}")
    if vendor == "meta":
        meta = fakes.MetaSandbox()
        audience = meta.create_audience("leadrelay sandbox audience")
        account = min(meta.accounts).removeprefix("act_")
        return meta, lambda url: ({"type": "meta", "access_token": "sandbox-meta-token", "ad_account_id": account,
                                   "base_url": f"{url}/v25.0"}, f"custom audience id: {audience}")
    if vendor == "google_ads":
        ads = fakes.GoogleAdsSandbox()
        user_list = ads.create_user_list("leadrelay sandbox list")
        return ads, lambda url: ({"type": "google_ads", "developer_token": ads.developer_token,
                                  "client_id": ads.client_id, "client_secret": ads.client_secret,
                                  "refresh_token": ads.refresh_token, "customer_id": min(ads.customers),
                                  "base_url": url, "token_url": f"{url}/token"}, f"user list id: {user_list}")
    if vendor == "linkedin":
        li = fakes.LinkedInSandbox()
        segment = li.create_segment("leadrelay sandbox segment")
        return li, lambda url: ({"type": "linkedin", "access_token": next(iter(li.tokens)),
                                 "ad_account_id": min(li.accounts), "base_url": f"{url}/rest"},
                                f"DMP segment id: {segment}")
    raise ValueError(f"unknown sandbox vendor {vendor!r}; choose from {', '.join(SANDBOX_VENDORS)} or all")


@contextlib.contextmanager
def serve_sandboxes(vendors: Sequence[str], *, port: int, contacts: int, seed: int,
                    token: str) -> Iterator[list[ServedSandbox]]:
    """Serve each vendor's seeded fake on 127.0.0.1, the n-th on ``port + n`` (``port`` 0: free ports)."""
    from connectors.sandbox import serve_on_loopback

    now = datetime.now(UTC)
    served: list[ServedSandbox] = []
    with contextlib.ExitStack() as stack:
        for n, vendor in enumerate(vendors):
            fake, connection = _build(vendor, contacts=contacts, seed=seed, token=token, now=now)
            url = stack.enter_context(serve_on_loopback(fake.app, port=port + n if port else 0))
            settings, note = connection(url)
            served.append(ServedSandbox(vendor, fake, url, settings, note))
        yield served


def serve_forever(*, port: int, contacts: int, seed: int, token: str, vendor: str = "hubspot",
                  echo: Callable[[str], None] = print, stop: threading.Event | None = None) -> None:
    """`leadrelay sandbox serve`: seeded fakes on 127.0.0.1 (from PORT on) until Ctrl-C (or ``stop`` is set);
    prints each one's base URL and the connection settings that reach it."""
    vendors = SANDBOX_VENDORS if vendor == "all" else (vendor,)
    waiting = stop or threading.Event()
    with serve_sandboxes(vendors, port=port, contacts=contacts, seed=seed, token=token) as served:
        for one in served:
            echo(f"# {one.vendor} sandbox on {one.base_url}\n{one.toml()}\n")
        echo("Serving until Ctrl-C.")
        with contextlib.suppress(KeyboardInterrupt):
            waiting.wait()


__all__ = ["SANDBOX_VENDORS", "ServedSandbox", "run_demo", "serve_forever", "serve_sandboxes"]

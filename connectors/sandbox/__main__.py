"""``python -m connectors.sandbox``: serve a seeded HubSpot sandbox on a port, for manual poking.

Example: ``python -m connectors.sandbox --port 8765 --contacts 500`` then
``curl -H 'Authorization: Bearer sandbox-token' localhost:8765/crm/v3/objects/contacts?limit=2``.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

import uvicorn

from connectors.sandbox.generator import generate_dataset
from connectors.sandbox.hubspot import HubSpotSandbox


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m connectors.sandbox", description=__doc__)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--contacts", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--token", default="sandbox-token")
    args = parser.parse_args(argv)
    sandbox = HubSpotSandbox(token=args.token, seed=args.seed)
    sandbox.load(generate_dataset(seed=args.seed, contacts=args.contacts, now=datetime.now(UTC)))
    print(
        f"HubSpot sandbox with {args.contacts} contacts on http://127.0.0.1:{args.port} "
        "(bearer token from --token)"
    )
    uvicorn.run(sandbox.app, host="127.0.0.1", port=args.port, log_level="info")


if __name__ == "__main__":
    main()

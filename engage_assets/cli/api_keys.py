"""`engage api-key`: the serving API's keys from the shell, over the environment's engagement store (SQLite under
ENGAGE_HOME locally, the DynamoDB table in production) — how the first `admin` key is made.

    engage api-key create --name NAME --scope admin [--scope read:*] [--rate R] [--burst B]
                                  prints the key ONCE (only its hash is stored; it cannot be shown again)
    engage api-key list [--json]  key ids, names, scopes, limits, created and revoked times: never a secret or hash
    engage api-key revoke KEY_ID  the key stops working (within the API's key cache time, 10 s, in running servers)

Exit status: 0 on success, 1 for an unknown key id (revoke), 2 for a bad scope.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from engage_assets.serving.auth import DEFAULT_BURST, DEFAULT_RATE_PER_SECOND, create_api_key, public_key_record
from engage_assets.settings import get_settings
from resources.engagement.base import EngagementStore


def _store() -> EngagementStore:
    """The engagement store the environment selects (the one the serving API reads)."""
    from resources.by_env import serving_stores  # the production backends load only for these commands

    return serving_stores(get_settings())[1]


def _when(epoch: Any) -> str:
    return "-" if epoch is None else datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cmd_create(args: argparse.Namespace) -> int:
    """Create a key; print it once, with its id and scopes."""
    try:
        record, key = create_api_key(_store(), args.scope, args.name, args.rate, args.burst)
    except ValueError as e:
        print(f"engage api-key create: {e}", file=sys.stderr)
        return 2
    print(f"key id:  {record['keyId']}\nscopes:  {' '.join(record['scopes'])}\nname:    {record['name']}")
    print(f"api key: {key}")
    print("This key is shown once: only its hash is stored, so it cannot be shown again.", file=sys.stderr)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """Every key, without secrets: as a table, or one JSON object per line."""
    records = sorted((public_key_record(r) for r in _store().list_api_keys()), key=lambda r: r["createdAt"])
    if args.json:
        for record in records:
            print(json.dumps(record, sort_keys=True))
        return 0
    print(f"{'KEY ID':<17} {'NAME':<20} {'CREATED':<21} {'REVOKED':<21} SCOPES")
    for r in records:
        print(
            f"{r['keyId']:<17} {str(r.get('name', ''))[:20]:<20} {_when(r['createdAt']):<21} "
            f"{_when(r.get('revokedAt')):<21} {' '.join(r['scopes'])}"
        )
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    """Revoke a key (idempotent); 1 when there is no such key."""
    store = _store()
    store.revoke_api_key(args.key_id)
    record = store.get_api_key(args.key_id)
    if record is None:
        print(f"engage api-key revoke: no key {args.key_id}", file=sys.stderr)
        return 1
    print(f"revoked {args.key_id} at {_when(record.get('revokedAt'))}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register `engage api-key create|list|revoke`."""
    keys = sub.add_parser("api-key", help="create, list and revoke the serving API's keys")
    cmds = keys.add_subparsers(dest="api_key_cmd", required=True)
    create = cmds.add_parser("create", help="create a key and print it once")
    create.add_argument("--name", required=True, help="who or what the key is for")
    create.add_argument(
        "--scope", action="append", required=True, help="admin, read:*, read:<programId>, agent, inapp, ingest"
    )
    create.add_argument("--rate", type=float, default=DEFAULT_RATE_PER_SECOND, help="requests per second")
    create.add_argument("--burst", type=int, default=DEFAULT_BURST, help="requests at once")
    create.set_defaults(fn=cmd_create)
    listing = cmds.add_parser("list", help="every key: ids, scopes, created and revoked times (never a secret)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(fn=cmd_list)
    revoke = cmds.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    revoke.set_defaults(fn=cmd_revoke)

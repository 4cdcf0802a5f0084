"""`deliver_all`: deliver every program's due touches as of a send clock (what `engage run` calls)."""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

import dagster as dg


def deliver_all(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    now: datetime,
    start_capture: bool = True,
    log_level: str = "INFO",
    send_stale: bool = False,
    groups: Collection[str] | None = None,
) -> dict[str, Any]:
    """Run every `<group>_deliver` job in process with the send clock `now`; returns
    {program group: {channel: {outcome: n}}, ..., "_reasons": {group: {channel/outcome/reason: n}}}.
    `send_stale`: the jobs' `send_stale` option (touches planned longer ago than the program's
    `delivery.staleAfterHours` are sent instead of recorded `stale`).  `groups`: only those programs' jobs.

    Locally, if nothing listens on the e-mail channel's SMTP port, a capture server is started in this process
    for the duration (so `engage run` leaves readable .eml files without `make smtp`).
    """
    from engage_assets.demo.smtp_capture import port_open, running_capture

    as_of = (now if now.tzinfo else now.replace(tzinfo=UTC)).astimezone(UTC).isoformat()
    jobs = sorted(
        j.name
        for j in defs.resolve_all_job_defs()
        if j.name.endswith("_deliver") and (groups is None or j.name.removesuffix("_deliver") in groups)
    )
    email = (defs.resources or {}).get("email_channel")
    capture: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    host, port, root = getattr(email, "host", None), getattr(email, "port", None), getattr(email, "capture_dir", None)
    if start_capture and root and host in ("127.0.0.1", "localhost") and port and not port_open(host, port):
        capture = running_capture(root, host, port)
    out: dict[str, Any] = {"_reasons": {}}
    with capture:
        for name in jobs:
            job = defs.resolve_job_def(name)
            node = job.graph.node_defs[0].name
            result = job.execute_in_process(
                instance=instance,
                tags={"engage/send_clock": as_of},
                run_config={
                    "ops": {node: {"config": {"as_of": as_of, "send_stale": send_stale}}},
                    "loggers": {"console": {"config": {"log_level": log_level}}},
                },
            )
            group = name.removesuffix("_deliver")
            meta: Mapping[str, Any] = {}
            for m in result.get_asset_materialization_events():
                meta = m.materialization.metadata
            out[group] = meta["by_channel"].value if "by_channel" in meta else {}
            reasons = meta.get("by_reason")
            out["_reasons"][group] = _parse_reasons(reasons.value) if isinstance(reasons, dg.MetadataValue) else {}
    return out


def _parse_reasons(md: str) -> dict[str, int]:
    rows = {}
    for line in md.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 2:
            rows[cells[0]] = int(cells[1].replace(",", ""))
    return rows

"""A new program from configuration alone, end to end (#12, item 7, first test).

As a user would: a program YAML and its e-mail template files in a folder of their own (`ENGAGE_PROGRAM_CONFIGS`),
a warehouse of their own (`tests/handmade_warehouse.py`, named by `ENGAGE_WAREHOUSE_PATH`), no Python.  One
`engage run --program late-delivery-apology --partition 2026-11-21 --send-stale` builds the marts it reads, trains its
model, runs the partition and delivers the touches (the partition is a week old: `--send-stale` sends its touches
instead of recording them stale).  The e-mails arrive at the local SMTP capture server with the subject the config
wrote and the body its template files wrote; the SMS carries the config's own message.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import socket
import sqlite3
from pathlib import Path

import pytest

from engage_assets.cli import main
from tests.handmade_warehouse import CUSTOMERS, DAY, write_warehouse

pytestmark = pytest.mark.slow
PROGRAM_ID = "late-delivery-apology"

PROGRAM_YAML = """\
programId: "late-delivery-apology"
programName: "Late Delivery Apology"
enabled: true
marketplaces: ["US", "UK", "DE"]

dataConnectors:
  - connectorId: "late-orders"
    type: "duckdb"
    subjectColumn: "order_id"
    config:
      table: "order_tracking"
      query: |
        SELECT customer_id, order_id, delivery_date, delay_days, order_value_usd, item_condition,
               customer_complaints, refundable
        FROM marts.order_tracking
        WHERE delivery_date = :partition_start AND delay_days > 3
    requiredColumns:
      customer_id: string
      order_id: string
      delay_days: integer
      order_value_usd: number

scoringModels:
  - modelId: "apology-impact-v1"
    endpoint: "sagemaker://apology-impact-v1"
    features: ["delay_days", "order_value_usd", "lifetime_value_usd", "satisfaction_history"]
    trainingTable: "training_refund_outcomes"
    label: "dissatisfied"

filterChain:
  - filterId: "trust"
    type: "trust"
    order: 1
  - filterId: "customer-value"
    type: "business-rule"
    order: 2
    parameters:
      minLifetimeValue: 100
  - filterId: "eligibility"
    type: "eligibility"
    order: 3

channels:
  - channelId: "email"
    type: "email"
    enabled: true
    priority: 1
    config:
      templateId: "apology-v1"
      subject: "{firstName}, we are sorry your parcel was late"
      sendTime: "10:00"
      timezone: "local"
  - channelId: "sms"
    type: "sms"
    enabled: true
    priority: 2
    config:
      message: "Late parcel? {discountPercent}% off your next order with code {discountCode}."

offerStrategy:
  enabled: true
  segmentScore: "apology-impact-v1"
  segments:
    - scoreRange: [0.0, 1.0]
      offerType: "apology"
      discount: 15

holdout: {percent: 0}
budget: {amount: 1000, currency: USD}
batchSchedule: "cron(0 3 * * ? *)"
partitionsStart: "2026-11-01"
candidateTTLDays: 14
"""

# The e-mail's body: template files beside the config, `templates/<programId>/email/<templateId>.<part>.j2`.
TEMPLATES = {
    "apology-v1.txt.j2": "Dear {{ firstName }},\n\nYour parcel came late. Take {{ discountPercent }}% off with code "
    "{{ discountCode }}.\n\nThe Apology Desk",
    "apology-v1.html.j2": "<p>Dear {{ firstName }},</p><p>Your parcel came late. Take {{ discountPercent }}% off with "
    "code <b>{{ discountCode }}</b>.</p><p>The Apology Desk</p>",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def delivered(tmp_path_factory):
    """The folder after `engage run` of the new program: (folder, exit code, output)."""
    work = tmp_path_factory.mktemp("new_program")
    configs = work / "configs"
    (configs / "templates" / PROGRAM_ID / "email").mkdir(parents=True)
    (configs / f"{PROGRAM_ID}.yaml").write_text(PROGRAM_YAML)
    for name, text in TEMPLATES.items():
        (configs / "templates" / PROGRAM_ID / "email" / name).write_text(text)
    write_warehouse(work / "shop.duckdb")
    env = {
        "ENGAGE_PROGRAM_CONFIGS": str(configs),
        "ENGAGE_WAREHOUSE_PATH": str(work / "shop.duckdb"),
        "ENGAGE_HOME": str(work / "state"),
        "DBT_TARGET_PATH": str(work / "dbt_target"),
        "ENGAGE_ENV": "local",
        "ENGAGE_SMTP_PORT": str(_free_port()),
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("DAGSTER_HOME", raising=False)
        for k, v in env.items():
            mp.setenv(k, v)
        out = work / "run.out"
        argv = ["run", "--program", PROGRAM_ID, "--partition", DAY.isoformat(), "--send-stale"]
        with open(out, "w") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
            try:
                main(argv)
                code = 0
            except SystemExit as exit_:
                code = int(exit_.code or 0)
    return work, code, out.read_text()


def _emails(work: Path) -> list[email.message.EmailMessage]:
    paths = sorted((work / "state" / "mail" / PROGRAM_ID).rglob("*.eml"))
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in paths]


def test_the_new_program_runs_its_partition_and_every_customer_gets_its_email(delivered):
    work, code, output = delivered
    assert code == 0, output
    assert f"== Late Delivery Apology  (partition {DAY.isoformat()}" in output
    mails = _emails(work)
    assert sorted(str(m["To"]) for m in mails) == sorted(f"{c.lower()}@example.com" for c in CUSTOMERS)
    ledger = sqlite3.connect(work / "state" / "delivery.sqlite")
    states = dict(ledger.execute("SELECT channel || ':' || state, count(*) FROM touches GROUP BY 1").fetchall())
    assert states == {"email:sent": len(CUSTOMERS), "sms:sent": len(CUSTOMERS)}


def test_the_captured_emails_content_comes_from_the_config_and_its_templates(delivered):
    work, code, output = delivered
    assert code == 0, output
    for mail in _emails(work):
        first = "Name"  # the hand-made customers are called "Name C01", "Name C02", …
        assert mail["Subject"] == f"{first}, we are sorry your parcel was late"  # the config's `subject`
        text = mail.get_body(preferencelist=("plain",)).get_content()  # the template file's text part
        html = mail.get_body(preferencelist=("html",)).get_content()
        assert text.startswith(f"Dear {first},") and "Take 15% off with code" in text and "The Apology Desk" in text
        assert "<p>The Apology Desk</p>" in html and "Take 15% off" in html
    # The SMS is the config's own `message`.
    outbox = sqlite3.connect(work / "state" / "outbox" / "sms.sqlite")
    bodies = [r[0] for r in outbox.execute("SELECT body FROM messages").fetchall()]
    assert len(bodies) == len(CUSTOMERS)
    assert all(b.startswith("Late parcel? 15% off your next order with code ") for b in bodies)

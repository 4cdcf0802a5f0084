"""The one place that reads the environment: where local state lives, which backends to use, their names.

`get_settings()` reads every `ENGAGE_*` variable (and `AWS_REGION`) once, through pydantic-settings, so a bad value
is an error at load naming the variable, never at 2 AM.  Secrets (Snowflake's password, AWS keys) are not settings:
the production resources read them through `dg.EnvVar` when a run starts, so they never sit in the definitions.  One
exception: the suppression list's HMAC key (`ENGAGE_SUPPRESSION_KEY`, a SecretStr), which the delivery ledgers read
through `suppression_key()` when they hash an address, so it never sits in the definitions either.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Names the production backends need (not secrets: table, topic and bucket names, the region), by variable.
PROD_REQUIRED = {
    "aws_region": "AWS_REGION",
    "s3_bucket": "ENGAGE_S3_BUCKET",
    "glue_database": "ENGAGE_GLUE_DATABASE",
    "candidate_table": "ENGAGE_CANDIDATE_TABLE",
    "score_cache_table": "ENGAGE_SCORE_CACHE_TABLE",
    "engagement_table": "ENGAGE_ENGAGEMENT_TABLE",
    "delivery_table": "ENGAGE_DELIVERY_TABLE",
    "refund_table": "ENGAGE_REFUND_TABLE",
    "outcome_table": "ENGAGE_OUTCOME_TABLE",
    "alert_topic_arn": "ENGAGE_ALERT_TOPIC_ARN",
    "push_topic_arn": "ENGAGE_PUSH_TOPIC_ARN",
    "email_from": "ENGAGE_EMAIL_FROM",
    "ses_configuration_set": "ENGAGE_SES_CONFIGURATION_SET",
    # The one secret here: the suppression list's HMAC key must be the same for every worker, and stay the same.
    "suppression_key": "ENGAGE_SUPPRESSION_KEY",
}


class Settings(BaseSettings):
    """Engage's settings: `ENGAGE_<FIELD>` variables (`ENGAGE_HOME`, `ENGAGE_ENV`, …), plus `AWS_REGION`."""

    model_config = SettingsConfigDict(env_prefix="ENGAGE_", frozen=True, extra="ignore")

    env: Literal["local", "prod"] = Field(default="local", description="local: embedded default; prod: AWS/Snowflake")
    home: Path = Field(default=PROJECT_ROOT / "data", description="Local state: warehouse, stores, exports, models")
    # The one warehouse location: the DuckDB file every part reads and writes (the dbt profile, the connectors, the
    # model training, the exports); unset, the embedded demo warehouse in `home`, which `engage run` generates when
    # it is missing.  A warehouse named here is the user's own: nothing ever generates over or beside it.
    warehouse_path_override: Path | None = Field(
        default=None, validation_alias="ENGAGE_WAREHOUSE_PATH", description="The DuckDB warehouse (default: in home)"
    )
    # The embedded warehouse's memory for a batch run's statements: beyond it DuckDB spills to disk, so the run's
    # memory stays bounded whatever the partition's size; a large partition runs faster with more (docs/scaling.md).
    warehouse_memory_limit: str = Field(
        default="400MB",
        pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$",
        description="DuckDB's memory limit for the batch programs' warehouse statements (e.g. 400MB, 2GB)",
    )
    program_configs: Path = Field(default=PROJECT_ROOT / "program_configs", description="Program YAML folder")
    # dbt's own variable: which tests a build of some models runs.  `cautious`: only tests whose every model is in
    # the build, so building the marts one program reads (`engage run --program`) never runs a relationship test
    # against a mart that was not built (dbt's default, `eager`, would, and fail on a warehouse without it).
    dbt_indirect_selection: Literal["eager", "cautious", "buildable", "empty"] = Field(
        default="cautious", validation_alias="DBT_INDIRECT_SELECTION"
    )
    # Dagster's own variable: where the instance (runs, schedules, sensors) lives; unset means an ephemeral one.
    dagster_home: Path | None = Field(default=None, validation_alias="DAGSTER_HOME")
    # Local channels: the SMTP capture server (`make smtp`) and the link base every message's links start with.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=2525, ge=1, le=65535)
    link_base: str = "https://shop.example.com"
    # Production names (see PROD_REQUIRED); the region is AWS's own variable.
    aws_region: str | None = Field(default=None, validation_alias="AWS_REGION")
    s3_bucket: str | None = None
    glue_database: str | None = None
    candidate_table: str | None = None
    score_cache_table: str | None = None
    engagement_table: str | None = None
    delivery_table: str | None = None
    refund_table: str | None = None
    # The EventBridge bus the refund ledger's issuance events go to (the order and billing systems' rules read it).
    refund_event_bus: str = "default"
    outcome_table: str | None = None
    # The SNS topics the SES outcome webhook accepts messages from (comma-separated ARNs; unset: the route answers
    # 503).  Locally nothing publishes to SNS; tests configure the webhook themselves.
    outcome_topic_arns: str | None = None
    alert_topic_arn: str | None = None
    push_topic_arn: str | None = None
    email_from: str | None = None
    ses_configuration_set: str | None = None
    # Where a promoted model is deployed in production (`resources.scoring.sagemaker_deploy`): the serving container
    # image and the role SageMaker runs it as; the artifacts go to ENGAGE_S3_BUCKET under models/.  Unset, a
    # promotion in production fails naming them (the new version is promoted but not deployed, so scoring refuses).
    sagemaker_image_uri: str | None = None
    sagemaker_role_arn: str | None = None
    # The reactive (abandoned-cart) program's SQS queue and its dead-letter queue: not in PROD_REQUIRED until that
    # program runs in production.
    cart_queue_url: str | None = None
    cart_dlq_url: str | None = None
    # The reactive decision path's table of dedup claims and cart state (purchases, stock); same caveat.
    reactive_table: str | None = None
    # The suppression list's key (HMAC-SHA256 of each address): required in production; locally, when unset, a random
    # key made once under `home` (see `suppression_key`).  A SecretStr: never in a repr or a log.
    suppression_key: SecretStr | None = Field(default=None, min_length=16)

    @field_validator("home")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return v.resolve()

    @model_validator(mode="after")
    def _prod_names(self) -> Settings:
        if self.env == "prod":
            missing = [var for name, var in PROD_REQUIRED.items() if not getattr(self, name)]
            if missing:
                raise ValueError(f"ENGAGE_ENV=prod needs {', '.join(missing)}")
        return self

    def required(self, name: str) -> str:
        """A production name (see PROD_REQUIRED) that must be set: its value, or an error naming its variable."""
        value = getattr(self, name)
        if not value:
            raise ValueError(f"{PROD_REQUIRED.get(name, f'ENGAGE_{name.upper()}')} is not set")
        return str(value)

    @property
    def warehouse_path(self) -> Path:
        """The warehouse, an absolute path (a relative ENGAGE_WAREHOUSE_PATH is read from the working directory)."""
        return (self.warehouse_path_override or self.default_warehouse_path).resolve()

    @property
    def default_warehouse_path(self) -> Path:
        """Where the embedded demo warehouse lives when ENGAGE_WAREHOUSE_PATH is unset."""
        return self.home / "warehouse.duckdb"

    @property
    def warehouse_is_default(self) -> bool:
        """Whether the warehouse is the embedded demo's (ENGAGE_WAREHOUSE_PATH unset, or naming that same file)."""
        return self.warehouse_path == self.default_warehouse_path.resolve()

    def dbt_environment(self) -> dict[str, str]:
        """The variables a dbt process needs so its profile (`dbt_project/profiles.yml`, read in `dbt_project/`)
        opens this same warehouse (the absolute path, whatever the variables said relative to which folder), and
        the test selection of a partial build.  (dagster-dbt sets its own selection when a run selects checks.)"""
        return {
            "ENGAGE_WAREHOUSE_PATH": str(self.warehouse_path),
            "ENGAGE_HOME": str(self.home),
            "DBT_INDIRECT_SELECTION": self.dbt_indirect_selection,
        }

    @property
    def store_path(self) -> Path:
        return self.home / "store.sqlite"

    @property
    def engagement_path(self) -> Path:
        return self.home / "engagement.sqlite"

    @property
    def ledger_path(self) -> Path:
        return self.home / "delivery.sqlite"

    @property
    def refund_ledger_path(self) -> Path:
        return self.home / "refunds.sqlite"

    @property
    def export_root(self) -> Path:
        return self.home / "exports"

    @property
    def model_root(self) -> Path:
        return self.home / "models"

    @property
    def stage_root(self) -> Path:
        return self.home / "stages"

    @property
    def mail_root(self) -> Path:
        return self.home / "mail"

    @property
    def outbox_root(self) -> Path:
        return self.home / "outbox"

    @property
    def alerts_path(self) -> Path:
        return self.home / "alerts.jsonl"

    @property
    def events_path(self) -> Path:
        return self.home / "events.sqlite"

    @property
    def event_batch_root(self) -> Path:
        """Where the cart-event sensor writes the batches the decision stages read (`resources.event_batches`)."""
        return self.home / "event_batches"


SUPPRESSION_KEY_FILE = "suppression.key"


def suppression_key(settings: Settings | None = None) -> bytes:
    """The key of the suppression list's address hashes: ENGAGE_SUPPRESSION_KEY; locally, when unset, a random key
    made once in ENGAGE_HOME/suppression.key (mode 0600; the first process to make it wins, the others read it).
    Changing it makes the stored hashes unreadable: every listed address would be contacted again."""
    settings = settings or get_settings()
    if settings.suppression_key is not None:
        return settings.suppression_key.get_secret_value().encode()
    if settings.env != "local":
        raise ValueError("ENGAGE_SUPPRESSION_KEY is not set")
    path = settings.home / SUPPRESSION_KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
    for _ in range(100):  # a process that lost the race may read before the winner's write lands
        key = path.read_text().strip()
        if key:
            return key.encode()
        time.sleep(0.01)
    raise ValueError(f"{path} is empty")


def get_settings() -> Settings:
    """The settings the environment gives now (read on every call: tests and the CLI change the environment)."""
    return Settings()


def program_config_dir() -> Path:
    return get_settings().program_configs

"""Production scoring: a SageMaker real-time endpoint through boto3 `sagemaker-runtime` `InvokeEndpoint`.

The model's config names the endpoint (`sagemaker://<endpoint>`); rows go in batches of 1,000 as header-less CSV,
a lossless encoding (floats in round-trip repr, booleans as 1/0, NULL as an empty field, categories as text), so
the endpoint returns the same numbers as local scoring.

Before scoring, the endpoint must serve the registry's version: its endpoint config's `engage:model-version` tag
(written by `sagemaker_deploy`) is read through the control plane (DescribeEndpoint, DescribeEndpointConfig,
ListTags) and another version, a missing tag or an endpoint not InService is refused with a `ScoringError`.  A
match is remembered for `VERIFIED_TTL_S` seconds per (endpoint, version), so a stream of small calls (the reactive
path) pays for the check once a minute, not per call.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import numpy as np
import pandas as pd
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from cachetools import TTLCache

from engage_assets.domain.models import ModelRef
from resources.scoring.base import ScoringError, ScoringResource, check_probabilities, feature_frame
from resources.scoring.deploy import VERSION_TAG

log = logging.getLogger(__name__)

SAGEMAKER_SCHEME = "sagemaker://"
VERIFIED_TTL_S = 60.0
_VERIFIED: TTLCache[tuple[str, str | None, str, str], bool] = TTLCache(maxsize=1024, ttl=VERIFIED_TTL_S)
_VERIFIED_LOCK = threading.Lock()


def endpoint_name(model: ModelRef) -> str:
    """The endpoint name in the model's `sagemaker://<name>` endpoint."""
    if not model.endpoint.startswith(SAGEMAKER_SCHEME) or len(model.endpoint) == len(SAGEMAKER_SCHEME):
        raise ValueError(f"model {model.model_id}: endpoint {model.endpoint!r} is not sagemaker://<name>")
    return model.endpoint[len(SAGEMAKER_SCHEME) :]


def to_csv_body(X: pd.DataFrame) -> bytes:
    """Rows as header-less CSV: booleans as 1/0 (what numeric model containers expect), NULL as empty."""
    X = X.copy(deep=False)
    for col in X.columns:
        dtype = X[col].dtype
        if pd.api.types.is_bool_dtype(dtype):
            X[col] = X[col].astype("Int8")
        elif pd.api.types.is_object_dtype(dtype) and pd.api.types.infer_dtype(X[col], skipna=True) == "boolean":
            X[col] = X[col].map(lambda v: v if v is None or (isinstance(v, float) and math.isnan(v)) else int(v))
    return X.to_csv(header=False, index=False, lineterminator="\n").encode("utf-8")


def _score_of(item: Any) -> float:
    if isinstance(item, dict):
        for key in ("score", "probability", "predicted_probability"):
            if key in item:
                item = item[key]
                break
        else:
            raise ValueError(f"prediction object without a score: keys {sorted(item)}")
    if isinstance(item, list):  # [p0, p1] class probabilities
        item = item[-1]
    return float(item)


def parse_predictions(body: bytes, content_type: str) -> list[float]:
    """JSON {"predictions": [...]} (numbers, or objects with score/probability) or CSV, one value per row."""
    text = body.decode("utf-8").strip()
    if "json" in (content_type or "").lower() or text[:1] in "[{":
        doc = json.loads(text)
        items = doc.get("predictions", doc.get("scores")) if isinstance(doc, dict) else doc
        if not isinstance(items, list):
            raise ValueError("JSON response has no predictions list")
        return [_score_of(item) for item in items]
    if not text:
        return []
    return [float(v) for line in text.splitlines() for v in line.split(",") if v.strip()]


def forget_verified() -> None:
    """Forget every remembered version match (the next call checks the endpoint again)."""
    with _VERIFIED_LOCK:
        _VERIFIED.clear()


class SageMakerScoringResource(ScoringResource):
    """Scores through a SageMaker real-time endpoint (`InvokeEndpoint`, text/csv in, JSON or CSV out).

    Throttling (429 / ThrottlingException) and 5xx are retried by botocore's "standard" mode with exponential
    backoff and jitter; model errors (bad input) are not retried, since a retry would fail the same way.
    Batches run on a few threads because one endpoint call is network-bound; the order of scores is preserved.
    """

    region_name: str = "us-east-1"
    endpoint_url: str | None = None  # tests: the loopback stand-in; production: leave unset
    batch_size: int = 1000
    content_type: str = "text/csv"
    accept: str = "application/json"
    max_attempts: int = 6  # total tries per batch, the first included
    max_concurrency: int = 4
    read_timeout_s: float = 60.0
    control_endpoint_url: str | None = None  # the SageMaker control plane; default endpoint_url (tests: one server)
    verify_version: bool = True  # refuse an endpoint serving another version than the registry's (module doc)

    def _client(self) -> Any:
        return boto3.client(
            "sagemaker-runtime",
            region_name=self.region_name,
            endpoint_url=self.endpoint_url,
            config=Config(
                retries={"total_max_attempts": self.max_attempts, "mode": "standard"},
                read_timeout=self.read_timeout_s,
                max_pool_connections=max(10, self.max_concurrency),
            ),
        )

    def served_version(self, name: str) -> str:
        """The registry version the endpoint's current config serves (its `engage:model-version` tag)."""
        sm = boto3.client(
            "sagemaker", region_name=self.region_name, endpoint_url=self.control_endpoint_url or self.endpoint_url
        )
        try:
            endpoint = sm.describe_endpoint(EndpointName=name)
            if endpoint.get("EndpointStatus") != "InService":
                raise ScoringError(f"endpoint {name} is {endpoint.get('EndpointStatus')}, not InService")
            config = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
            tags = sm.list_tags(ResourceArn=config["EndpointConfigArn"]).get("Tags", [])
        except ClientError as exc:
            err = exc.response.get("Error", {})
            raise ScoringError(f"endpoint {name}: {err.get('Code', 'error')}: {err.get('Message', str(exc))}") from exc
        except BotoCoreError as exc:
            raise ScoringError(f"endpoint {name}: {exc}") from exc
        version = {t["Key"]: t["Value"] for t in tags}.get(VERSION_TAG)
        if not version:
            raise ScoringError(
                f"endpoint {name} serves config {endpoint['EndpointConfigName']} without the {VERSION_TAG} tag: "
                "not deployed by engage, its version is unknown"
            )
        return str(version)

    def check_version(self, model: ModelRef, name: str) -> None:
        """Refuse to score when the endpoint serves another version than `model` (the registry's current one)."""
        key = (self.region_name, self.control_endpoint_url or self.endpoint_url, name, model.version)
        with _VERIFIED_LOCK:
            if key in _VERIFIED:
                return
        served = self.served_version(name)
        if served != model.version:
            raise ScoringError(
                f"endpoint {name} serves {model.model_id}@{served}, but the registry's current version is "
                f"{model.version}: deploy it (retrain, or `engage model rollback`) before scoring"
            )
        with _VERIFIED_LOCK:
            _VERIFIED[key] = True

    def _invoke(self, client: Any, name: str, model: ModelRef, batch: pd.DataFrame, start: int) -> list[float]:
        """Score one batch with one InvokeEndpoint call (botocore retries it); one prediction per row or an error."""
        where = f"endpoint {name} (model {model.model_id}@{model.version}), rows {start}-{start + len(batch) - 1}"
        try:
            resp = client.invoke_endpoint(
                EndpointName=name, ContentType=self.content_type, Accept=self.accept, Body=to_csv_body(batch)
            )
            body = resp["Body"].read()
        except ClientError as exc:
            err = exc.response.get("Error", {})
            raise ScoringError(f"{where}: {err.get('Code', 'error')}: {err.get('Message', str(exc))}") from exc
        except BotoCoreError as exc:
            raise ScoringError(f"{where}: {exc}") from exc
        try:
            preds = parse_predictions(body, resp.get("ContentType", self.accept))
        except (ValueError, TypeError) as exc:
            raise ScoringError(f"{where}: unreadable response: {exc}") from exc
        if len(preds) != len(batch):
            raise ScoringError(f"{where}: got {len(preds)} predictions for {len(batch)} rows")
        return preds

    def score(self, model: ModelRef, features: pd.DataFrame) -> np.ndarray:
        """Score in batches of `batch_size` rows, up to `max_concurrency` endpoint calls at once."""
        name = endpoint_name(model)
        X = feature_frame(model, features)
        n = len(X)
        if n == 0:
            return np.empty(0, dtype="float64")
        if self.verify_version:
            self.check_version(model, name)
        client = self._client()
        size = max(1, int(self.batch_size))
        starts = list(range(0, n, size))

        def invoke(start: int) -> list[float]:
            return self._invoke(client, name, model, X.iloc[start : start + size], start)

        workers = max(1, min(int(self.max_concurrency), len(starts)))
        if workers == 1:
            parts = [invoke(s) for s in starts]
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sagemaker-score") as pool:
                parts = list(pool.map(invoke, starts))
        log.debug("scored %d rows with %s in %d batches", n, name, len(starts))
        return check_probabilities(model, np.fromiter((p for part in parts for p in part), dtype="float64", count=n))

"""Scoring: run a trained model over a batch of feature rows.

`ModelRef` names one promoted model version (see `engage_assets.domain.models`).  The local implementation loads the
artifact the platform trained; the SageMaker one calls the endpoint named in the config
(`sagemaker://<endpoint>`) through boto3 `sagemaker-runtime` `InvokeEndpoint` in batches of 1,000 rows.

Both return the same numbers for the same rows: the trained pipeline parses raw values itself (see
`engage_assets.domain.models.coerce_features`), and the CSV encoding here is lossless (floats in round-trip repr,
booleans as 1/0, NULL as an empty field, categories as text).
"""

from __future__ import annotations

import json
import logging
import math
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from engage_assets.domain.models import ModelRef, load_pipeline

log = logging.getLogger(__name__)

SAGEMAKER_SCHEME = "sagemaker://"


class ScoringError(RuntimeError):
    """A model could not score a batch (bad input, endpoint error, malformed response)."""


class ScoringResource(dg.ConfigurableResource, ABC):
    @abstractmethod
    def score(self, model: ModelRef, features: pd.DataFrame) -> np.ndarray:
        """Probability in [0, 1] per row of `features` (columns = model.features, raw values)."""


def _feature_frame(model: ModelRef, features: pd.DataFrame) -> pd.DataFrame:
    """The model's columns in its order; a missing column is a configuration error, named loudly."""
    missing = [c for c in model.features if c not in features.columns]
    if missing:
        raise KeyError(
            f"model {model.model_id}@{model.version} (program {model.program_id}) needs feature column(s) "
            f"{', '.join(repr(c) for c in missing)} that the input lacks; input columns: "
            f"{', '.join(map(str, features.columns))}"
        )
    return features.loc[:, list(model.features)]


def _check_probabilities(model: ModelRef, p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, dtype="float64")
    if p.size and not (np.isfinite(p).all() and p.min() >= 0.0 and p.max() <= 1.0):
        raise ScoringError(f"model {model.model_id}@{model.version} returned values outside [0, 1]")
    return p


class LocalScoringResource(ScoringResource):
    """Scores in-process with the artifact the platform trained (cached per version).

    Large inputs are scored in chunks so memory stays bounded (the dense design matrix of 10M rows would
    otherwise be allocated at once); the chunk size does not change the results.
    """

    chunk_rows: int = 1_000_000

    def score(self, model: ModelRef, features: pd.DataFrame) -> np.ndarray:

        X = _feature_frame(model, features)
        n = len(X)
        out = np.empty(n, dtype="float64")
        if n == 0:
            return out
        pipeline = load_pipeline(model)
        step = max(1, int(self.chunk_rows))
        for start in range(0, n, step):
            chunk = X.iloc[start : start + step]
            try:
                out[start : start + len(chunk)] = pipeline.predict_proba(chunk)[:, 1]
            except (ValueError, KeyError) as exc:
                raise ScoringError(f"model {model.model_id}@{model.version} cannot score the input: {exc}") from exc
        return _check_probabilities(model, out)


def endpoint_name(model: ModelRef) -> str:
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


def parse_predictions(body: bytes, content_type: str) -> list[float]:
    """JSON {"predictions": [...]} (numbers, or objects with score/probability) or CSV, one value per row."""
    text = body.decode("utf-8").strip()
    if "json" in (content_type or "").lower() or text[:1] in "[{":
        doc = json.loads(text)
        items = doc.get("predictions", doc.get("scores")) if isinstance(doc, dict) else doc
        if not isinstance(items, list):
            raise ValueError("JSON response has no predictions list")
        out = []
        for item in items:
            if isinstance(item, dict):
                for key in ("score", "probability", "predicted_probability"):
                    if key in item:
                        item = item[key]
                        break
                else:
                    raise ValueError(f"prediction object without a score: keys {sorted(item)}")
            if isinstance(item, list):  # [p0, p1] class probabilities
                item = item[-1]
            out.append(float(item))
        return out
    if not text:
        return []
    return [float(v) for line in text.splitlines() for v in line.split(",") if v.strip()]


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

    def _client(self) -> Any:
        import boto3
        from botocore.config import Config

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

    def score(self, model: ModelRef, features: pd.DataFrame) -> np.ndarray:
        from botocore.exceptions import BotoCoreError, ClientError

        name = endpoint_name(model)
        X = _feature_frame(model, features)
        n = len(X)
        if n == 0:
            return np.empty(0, dtype="float64")
        client = self._client()
        size = max(1, int(self.batch_size))
        starts = list(range(0, n, size))

        def invoke(start: int) -> list[float]:
            batch = X.iloc[start : start + size]
            where = f"endpoint {name} (model {model.model_id}@{model.version}), rows {start}-{start + len(batch) - 1}"
            try:
                resp = client.invoke_endpoint(
                    EndpointName=name,
                    ContentType=self.content_type,
                    Accept=self.accept,
                    Body=to_csv_body(batch),
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

        workers = max(1, min(int(self.max_concurrency), len(starts)))
        if workers == 1:
            parts = [invoke(s) for s in starts]
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sagemaker-score") as pool:
                parts = list(pool.map(invoke, starts))
        log.debug("scored %d rows with %s in %d batches", n, name, len(starts))
        return _check_probabilities(model, np.fromiter((p for part in parts for p in part), dtype="float64", count=n))

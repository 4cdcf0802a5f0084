"""Scoring resources: local artifact vs. the SageMaker runtime protocol over real HTTP on loopback.

The SageMaker path is exercised with boto3's own `sagemaker-runtime` client against the stand-in endpoint
(`engage_assets.demo.sagemaker_endpoint`), so request signing, URL layout, error parsing and retries are the real
ones; only the model container is ours.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engage_assets.demo.sagemaker_endpoint import serve
from engage_assets.domain.models import ModelRegistry, train_model
from resources.scoring.base import ModelRef, ScoringError
from resources.scoring.local import LocalScoringResource
from resources.scoring.sagemaker import SageMakerScoringResource, parse_predictions, to_csv_body

FEATURES = ["lifetime_value", "churn_reason", "subscription_tenure", "engagement_history", "item_damaged"]
REASONS = ["price", "features", "competition", "support"]
PROGRAM = "win-back-campaigns"
MODEL = "win-back-likelihood-v3"
ROOT = Path(__file__).resolve().parent.parent


def history(n: int, seed: int) -> pd.DataFrame:
    """Logistic process over numeric, categorical and boolean features."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "lifetime_value": rng.uniform(200, 3000, n),
            "churn_reason": rng.choice(REASONS, n),
            "subscription_tenure": rng.integers(1, 72, n),
            "engagement_history": rng.uniform(0, 1, n),
            "item_damaged": rng.uniform(0, 1, n) < 0.3,
        }
    )
    effect = df["churn_reason"].map(dict(zip(REASONS, [0.6, 0.2, -0.2, -0.7], strict=False))).to_numpy()
    z = (
        -1.0
        + 0.0006 * df["lifetime_value"]
        + effect
        + 0.015 * df["subscription_tenure"]
        + 1.2 * df["engagement_history"]
        + 0.5 * df["item_damaged"]
    )
    df["returned"] = rng.uniform(0, 1, n) < 1 / (1 + np.exp(-z))
    return df


@pytest.fixture(scope="module")
def registry_ref(tmp_path_factory) -> tuple[Path, ModelRef]:
    root = tmp_path_factory.mktemp("models")
    registry = ModelRegistry(root)
    registry.promote_if_improved(train_model(MODEL, PROGRAM, FEATURES, history(20_000, seed=5), "returned"))
    return root, registry.current(PROGRAM, MODEL)


@pytest.fixture(scope="module")
def ref(registry_ref) -> ModelRef:
    return registry_ref[1]


@pytest.fixture(scope="module")
def endpoint(ref):
    server = serve({MODEL: ref})
    yield server
    server.shutdown()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch):
    """boto3 signs requests even against loopback; fake credentials, never real ones."""
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def rows(n: int, seed: int = 11) -> pd.DataFrame:
    """Scoring input with the awkward cases: NULLs, an unseen category, extra non-feature columns."""
    df = history(n, seed)[FEATURES].copy()
    df.insert(0, "customer_id", [f"C{i:08d}" for i in range(n)])
    df.loc[df.index[3], "churn_reason"] = None
    df.loc[df.index[4], "lifetime_value"] = np.nan
    df.loc[df.index[5], "churn_reason"] = 'reason, with "comma"'
    df.loc[df.index[6], "churn_reason"] = ""  # same as NULL on both paths
    return df.iloc[::-1]  # columns and rows in an order the model did not see


def test_local_and_sagemaker_give_the_same_scores(ref, endpoint):
    X = rows(2_500)
    local = LocalScoringResource().score(ref, X)
    before = endpoint.invocations
    remote = SageMakerScoringResource(endpoint_url=endpoint.url).score(ref, X)
    assert endpoint.invocations - before == 3  # 1,000 + 1,000 + 500
    assert local.dtype == np.float64 and remote.dtype == np.float64 and local.shape == (2_500,)
    assert np.allclose(local, remote, rtol=0, atol=1e-12)
    assert ((local > 0) & (local < 1)).all()

    as_csv = SageMakerScoringResource(endpoint_url=endpoint.url, accept="text/csv", max_concurrency=1).score(ref, X)
    assert np.allclose(local, as_csv, rtol=0, atol=1e-12)


def test_scores_match_the_trained_pipeline(ref):
    X = rows(300)
    from engage_assets.domain.models import load_pipeline

    expected = load_pipeline(ref).predict_proba(X[list(ref.features)])[:, 1]
    got = LocalScoringResource(chunk_rows=128).score(ref, X)  # chunking does not change results
    np.testing.assert_array_equal(got, expected)


def test_missing_feature_is_named(ref, endpoint):
    X = rows(10).drop(columns=["engagement_history"])
    for resource in (LocalScoringResource(), SageMakerScoringResource(endpoint_url=endpoint.url)):
        with pytest.raises(KeyError, match="'engagement_history'") as err:
            resource.score(ref, X)
        assert MODEL in str(err.value)


def test_empty_input(ref, endpoint):
    X = rows(10).iloc[:0]
    assert LocalScoringResource().score(ref, X).shape == (0,)
    assert SageMakerScoringResource(endpoint_url=endpoint.url).score(ref, X).shape == (0,)


def test_bad_values_are_a_clear_error_on_both_paths(ref, endpoint):
    X = rows(1_500).astype({"subscription_tenure": object})
    X.loc[X.index[1_200], "subscription_tenure"] = "twelve"
    with pytest.raises(ScoringError, match="subscription_tenure.*not numeric"):
        LocalScoringResource().score(ref, X)
    with pytest.raises(ScoringError, match=r"ModelError.*subscription_tenure.*not numeric") as err:
        SageMakerScoringResource(endpoint_url=endpoint.url, max_concurrency=1).score(ref, X)
    assert "twelve" not in str(err.value)  # the message names the column, never the value
    assert "rows 1000-1499" in str(err.value)


def test_server_rejects_malformed_csv_and_unknown_endpoints(endpoint):
    import boto3

    client = boto3.client("sagemaker-runtime", endpoint_url=endpoint.url, region_name="us-east-1")
    with pytest.raises(client.exceptions.ModelError, match="3 fields, expected 5"):
        client.invoke_endpoint(EndpointName=MODEL, ContentType="text/csv", Body=b"1,2,3\n")
    with pytest.raises(client.exceptions.ModelError, match="content type"):
        client.invoke_endpoint(EndpointName=MODEL, ContentType="application/json", Body=b"[]")
    with pytest.raises(client.exceptions.ClientError, match="ValidationError.*not found") as err:
        client.invoke_endpoint(EndpointName="no-such-endpoint", ContentType="text/csv", Body=b"1,2,3,4,5\n")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    resp = client.invoke_endpoint(EndpointName=MODEL, ContentType="text/csv", Body=b"900,price,12,0.5,1\n")
    assert resp["InvokedProductionVariant"] == endpoint.models[MODEL].version
    assert len(parse_predictions(resp["Body"].read(), resp["ContentType"])) == 1

    other = SageMakerScoringResource(endpoint_url=endpoint.url, verify_version=False)  # straight to the runtime
    bad_ref = ModelRef(MODEL, PROGRAM, "v", "sagemaker://no-such-endpoint", tuple(FEATURES), "/nonexistent")
    with pytest.raises(ScoringError, match="no-such-endpoint.*ValidationError"):
        other.score(bad_ref, rows(10))
    with pytest.raises(ScoringError, match="no-such-endpoint: ValidationException: Could not find"):
        SageMakerScoringResource(endpoint_url=endpoint.url).score(bad_ref, rows(10))  # the version check first
    with pytest.raises(ValueError, match="sagemaker://"):
        other.score(ModelRef(MODEL, PROGRAM, "v", "http://x", tuple(FEATURES), "/nonexistent"), rows(10))

    with urllib.request.urlopen(f"{endpoint.url}/ping", timeout=5) as ping:
        assert ping.status == 200


def test_throttling_and_5xx_are_retried(ref, endpoint):
    X = rows(1_200)
    expected = LocalScoringResource().score(ref, X)
    resource = SageMakerScoringResource(endpoint_url=endpoint.url, max_concurrency=1)
    endpoint.fail_next(1, status=429, code="ThrottlingException")
    endpoint.fail_next(1, status=503, code="ServiceUnavailable")
    before = endpoint.invocations
    got = resource.score(ref, X)
    assert endpoint.invocations - before == 4  # 2 batches + 2 retries
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)

    endpoint.fail_next(2, status=500, code="InternalFailure")  # max_attempts=2 uses up both: none left behind
    with pytest.raises(ScoringError, match="InternalFailure"):
        SageMakerScoringResource(endpoint_url=endpoint.url, max_attempts=2, max_concurrency=1).score(ref, X)


def test_csv_encoding_and_response_parsing():
    X = pd.DataFrame({"a": [0.1 + 0.2, np.nan], "b": ["x,y", None], "c": [True, False]})
    assert to_csv_body(X) == b'0.30000000000000004,"x,y",1\n,,0\n'
    assert parse_predictions(b'{"predictions": [0.1, {"score": 0.2}, [0.7, 0.3]]}', "application/json") == [
        0.1,
        0.2,
        0.3,
    ]
    assert parse_predictions(b"0.1\n0.2\n", "text/csv") == [0.1, 0.2]


def test_local_scoring_is_fast(ref):
    X = pd.concat([rows(50_000)] * 10, ignore_index=True)  # 500,000 rows
    resource = LocalScoringResource()
    resource.score(ref, X.head(10))  # load + cache the artifact
    best = min(_timed(resource.score, ref, X) for _ in range(3))
    assert best < 1.0, f"500,000 rows took {best:.2f} CPU-s"


def _timed(fn, *args) -> float:
    """The CPU seconds of this process (every thread) the call took: another process's load on a shared machine does
    not count, as wall time would (the speed figures themselves are the benches')."""
    t = time.process_time()
    fn(*args)
    return time.process_time() - t


def test_endpoint_command_line(registry_ref, tmp_path):
    import socket

    root, ref = registry_ref
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "engage_assets.demo.sagemaker_endpoint",
            "--registry",
            str(root),
            "--program",
            PROGRAM,
            "--port",
            str(port),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=1) as ping:
                    assert ping.status == 200
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"endpoint did not start: {proc.stderr.read().decode()[-2000:]}") from None
                time.sleep(0.1)
        X = rows(1_001)
        remote = SageMakerScoringResource(endpoint_url=url).score(ref, X)
        np.testing.assert_allclose(remote, LocalScoringResource().score(ref, X), rtol=0, atol=1e-12)
    finally:
        proc.terminate()
        try:
            assert proc.wait(timeout=30) == 0  # SIGTERM: a clean shutdown
        finally:
            if proc.poll() is None:
                proc.kill()

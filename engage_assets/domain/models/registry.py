"""The file-system model registry (content-addressed; nothing is ever overwritten) and the pipeline loader.

Registry layout:
    <root>/<program_id>/<model_id>/<version>/model.joblib   the serialized pipeline; version = hash of it
    <root>/<program_id>/<model_id>/<version>/linear.json    its parameters without sklearn (`linear`), if it compiles
    <root>/<program_id>/<model_id>/<version>/metrics.json   features, holdout metrics, provenance
    <root>/<program_id>/<model_id>/current.json             pointer to the promoted version
    <root>/<program_id>/<model_id>/promotions.jsonl         every promotion decision and rollback, for audit

Promotion ("deploy if improved"): a candidate is first held to the naive one-feature baseline
(`evaluation.one_feature_baseline`): its holdout ROC AUC must exceed 0.5 and beat the baseline's by more than
`baseline_z` (1.645: one-sided 5 %) DeLong standard errors of the paired difference, or it is never promoted, not
even as a first version; then it must beat the current version on the same holdout.  Scoring with a model that was
never promoted fails with the last decision's reason (`never_promoted_reason`): there is no silent fallback.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib

from engage_assets.domain.models.linear import LINEAR_ARTIFACT, compile_linear, linear_artifact

if TYPE_CHECKING:  # sklearn and the training module load only where a model is trained, saved or evaluated: the
    # decision path reads `ModelRef`s and scores from `linear.json` without them (~1 s of imports, `linear`)
    from sklearn.pipeline import Pipeline

    from engage_assets.domain.models.training import TrainedModel

# Metrics where a smaller value is better; every other metric is "higher is better".
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "truth_mae"})
BASELINE_Z = 1.645  # a candidate must beat the one-feature baseline by more than this many standard errors


@dataclass(frozen=True)
class ModelRef:
    """One promoted model version, and where its artifact is."""

    model_id: str  # e.g. "churn-risk-v6"
    program_id: str  # models are trained per program: the same modelId may use other features elsewhere
    version: str  # content hash of the promoted artifact
    endpoint: str  # "sagemaker://churn-risk-v6"
    features: tuple[str, ...]
    artifact_path: str  # local path of the joblib artifact


def content_version(artifact: bytes, features: Sequence[str]) -> str:
    """Content address of a model: same bytes and features -> same version, in any process."""
    h = hashlib.sha256(artifact)
    h.update(b"\0")
    h.update(json.dumps(list(features)).encode())
    return h.hexdigest()[:16]


_CACHE: OrderedDict[tuple[str, str], Pipeline] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 32


def load_pipeline(ref: ModelRef) -> Pipeline:
    """The fitted pipeline behind `ref`, cached per (artifact, version) for the life of the process.

    The file's hash is checked against the version, so a score is never stamped with a version it did not come
    from (a replaced or truncated artifact fails loudly instead).
    """
    key = (os.path.realpath(ref.artifact_path), ref.version)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    blob = Path(ref.artifact_path).read_bytes()
    actual = content_version(blob, ref.features)
    if actual != ref.version:
        raise ValueError(
            f"artifact {ref.artifact_path} hashes to {actual}, not {ref.version} "
            f"(corrupt, replaced, or the ref's features differ from the trained ones)"
        )
    pipeline = joblib.load(io.BytesIO(blob))
    with _CACHE_LOCK:
        _CACHE[key] = pipeline
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return pipeline


def _write_atomic(path: Path, data: bytes) -> None:
    """Readers (scoring runs, the endpoint) never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _write_linear(vdir: Path, pipeline: Any, version: str) -> None:
    """The version's linear.json, when its pipeline compiles and the file is not there yet."""
    scorer = compile_linear(pipeline)
    if scorer is not None and not (vdir / LINEAR_ARTIFACT).exists():
        _write_atomic(vdir / LINEAR_ARTIFACT, linear_artifact(scorer, version))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _gain(metric: str, candidate: float, incumbent: float) -> float:
    """How much better the candidate is (positive: better), whichever direction the metric runs."""
    return candidate - incumbent if metric not in LOWER_IS_BETTER else incumbent - candidate


class ModelRegistry:
    """Versions on a file system (local dir or a mounted volume); `current.json` marks the promoted one."""

    def __init__(self, root: Path | str):
        self.root = Path(root)

    def _model_dir(self, program_id: str, model_id: str) -> Path:
        return self.root / program_id / model_id

    def _version_dir(self, program_id: str, model_id: str, version: str) -> Path:
        return self._model_dir(program_id, model_id) / version

    def save(self, trained: TrainedModel) -> Path:
        """Write model.joblib, linear.json (its parameters, when the pipeline compiles: `linear`) and metrics.json
        for the version; returns the artifact path.  Idempotent."""
        import sklearn

        from engage_assets.domain.models.training import serialize

        vdir = self._version_dir(trained.program_id, trained.model_id, trained.version)
        artifact = vdir / "model.joblib"
        blob = trained.artifact or serialize(trained.pipeline)
        if content_version(blob, trained.features) != trained.version:
            raise ValueError(f"{trained.model_id}: artifact does not match version {trained.version}")
        if not artifact.exists():
            _write_atomic(artifact, blob)
        _write_linear(vdir, trained.pipeline, trained.version)
        meta = vdir / "metrics.json"
        if not meta.exists():
            doc = {
                "model_id": trained.model_id,
                "program_id": trained.program_id,
                "version": trained.version,
                "features": list(trained.features),
                "categorical": list(trained.categorical),
                "label": trained.label,
                "metrics": trained.metrics,
                "baseline_feature": trained.baseline_feature,
                "score_reference": trained.score_reference,
                "sklearn_version": sklearn.__version__,
                "saved_at": _now(),
            }
            _write_atomic(meta, json.dumps(doc, indent=2, sort_keys=True).encode())
        return artifact

    def metadata(self, program_id: str, model_id: str, version: str) -> dict[str, Any]:
        """The version's metrics.json."""
        path = self._version_dir(program_id, model_id, version) / "metrics.json"
        return json.loads(path.read_text())

    def ref(self, program_id: str, model_id: str, version: str, endpoint: str | None = None) -> ModelRef:
        """A saved version as a ModelRef (promoted or not); `endpoint` defaults to sagemaker://<id>."""
        meta = self.metadata(program_id, model_id, version)
        return ModelRef(
            model_id=model_id,
            program_id=program_id,
            version=version,
            endpoint=endpoint or f"sagemaker://{model_id}",
            features=tuple(meta["features"]),
            artifact_path=str(self._version_dir(program_id, model_id, version) / "model.joblib"),
        )

    def current(self, program_id: str, model_id: str, endpoint: str | None = None) -> ModelRef | None:
        """The promoted version, or None before the first training.  `endpoint` defaults to sagemaker://<id>."""
        pointer = self._model_dir(program_id, model_id) / "current.json"
        if not pointer.exists():
            return None
        version = json.loads(pointer.read_text())["version"]
        return self.ref(program_id, model_id, version, endpoint)

    def current_models(self, program_id: str) -> dict[str, ModelRef]:
        """model_id -> promoted ModelRef for every model of a program (what an endpoint server serves)."""
        pdir = self.root / program_id
        out: dict[str, ModelRef] = {}
        if pdir.is_dir():
            for mdir in sorted(p for p in pdir.iterdir() if p.is_dir()):
                ref = self.current(program_id, mdir.name)
                if ref is not None:
                    out[mdir.name] = ref
        return out

    def load(self, ref: ModelRef) -> Pipeline:
        """The fitted pipeline of a version (cached; see `load_pipeline`)."""
        return load_pipeline(ref)

    def _incumbent_value(self, trained: TrainedModel, current: ModelRef, metric: str) -> tuple[float, str]:
        """The incumbent's metric, on the candidate's own holdout when possible.

        Comparing stored metrics from different holdouts lets sampling noise decide promotions; scoring both
        models on the same rows removes it.  Falls back to the stored value when the holdout is not in memory
        (e.g. a model loaded from disk) or the incumbent uses features the candidate's holdout lacks.
        """
        h = trained.holdout
        if (
            h is not None
            and set(current.features) <= set(h.X.columns)
            and (metric != "truth_mae" or h.truth is not None)
        ):
            from engage_assets.domain.models.training import evaluate

            try:
                values = evaluate(self.load(current), h.X[list(current.features)], h.y, h.truth)
                if metric in values:
                    return values[metric], "same holdout"
            except Exception:  # noqa: BLE001 - an unloadable incumbent is judged by its stored metrics
                pass
        stored = self.metadata(current.program_id, current.model_id, current.version)["metrics"]
        if metric not in stored:
            raise ValueError(f"current {current.model_id}@{current.version} has no metric {metric!r}")
        return float(stored[metric]), "stored holdout"

    @staticmethod
    def _baseline_verdict(trained: TrainedModel, z: float) -> str | None:
        """Why the candidate does not beat the naive one-feature baseline, or None when it does."""
        m = trained.metrics
        if "baseline_roc_auc" not in m:
            raise ValueError(f"{trained.model_id}: candidate has no baseline metrics (train it with train_model)")
        auc, base, gain, se = m["roc_auc"], m["baseline_roc_auc"], m["baseline_gain"], m["baseline_gain_se"]
        if auc > 0.5 and gain > z * se:
            return None
        return (
            f"{trained.version} does not beat the naive one-feature baseline ({trained.baseline_feature or '?'} "
            f"alone): roc_auc {auc:.4f} vs {base:.4f}, gain {gain:+.4f}, required > {z:g} x se {se:.4f} "
            "and roc_auc > 0.5; not promoted"
        )

    def _decide(
        self, trained: TrainedModel, current: ModelRef | None, metric: str, min_gain: float, baseline_z: float
    ) -> tuple[bool, str, float | None]:
        """(promoted, reason, the incumbent's metric when it was compared)."""
        candidate_value = float(trained.metrics[metric])
        beaten = self._baseline_verdict(trained, baseline_z)
        if beaten is not None:
            return False, beaten, None
        if current is None:
            return True, f"first {trained.model_id} model ({metric}={candidate_value:.4f})", None
        if current.version == trained.version:
            return False, f"version {trained.version} is already current", None
        incumbent, basis = self._incumbent_value(trained, current, metric)
        gain = _gain(metric, candidate_value, incumbent)
        promoted = gain > min_gain
        verdict = "improves on" if promoted else "does not improve on"
        reason = (
            f"{trained.version} {verdict} {current.version}: {metric} {candidate_value:.4f} vs "
            f"{incumbent:.4f} ({basis}), gain {gain:+.4f}, required > {min_gain:g}"
        )
        return promoted, reason, incumbent

    def promote_if_improved(
        self, trained: TrainedModel, metric: str = "roc_auc", min_gain: float = 0.0, baseline_z: float = BASELINE_Z
    ) -> tuple[bool, str]:
        """Save the candidate; make it current only if it beats the naive baseline and the current version.

        (promoted, reason); the whole decision is `decide`'s record.
        """
        record = self.decide(trained, metric, min_gain, baseline_z)
        return bool(record["promoted"]), str(record["reason"])

    def decide(
        self, trained: TrainedModel, metric: str = "roc_auc", min_gain: float = 0.0, baseline_z: float = BASELINE_Z
    ) -> dict[str, Any]:
        """Save the candidate and decide (module docstring); the decision record, appended to promotions.jsonl.

        An equal or worse candidate stays on disk (auditable) but scoring keeps using the incumbent.  For
        log_loss/brier/truth_mae lower is better.
        """
        if metric not in trained.metrics:
            raise ValueError(f"candidate has no metric {metric!r}; has {sorted(trained.metrics)}")
        self.save(trained)
        current = self.current(trained.program_id, trained.model_id)
        promoted, reason, incumbent = self._decide(trained, current, metric, min_gain, baseline_z)
        m = trained.metrics
        record = {
            "at": _now(),
            "action": "train",
            "version": trained.version,
            "promoted": promoted,
            "metric": metric,
            "value": float(m[metric]),
            "incumbent_version": current.version if current else None,
            "incumbent_value": incumbent,
            "baseline_feature": trained.baseline_feature,
            **{k: float(m[k]) for k in ("baseline_roc_auc", "baseline_gain", "baseline_gain_se") if k in m},
            "reason": reason,
        }
        self._record(trained.program_id, trained.model_id, record, make_current=promoted)
        return record

    def _record(self, program_id: str, model_id: str, record: dict[str, Any], make_current: bool) -> None:
        mdir = self._model_dir(program_id, model_id)
        if make_current:
            vdir = self._version_dir(program_id, model_id, record["version"])
            if not (vdir / LINEAR_ARTIFACT).exists():  # a version saved before linear.json existed (a rollback)
                _write_linear(vdir, load_pipeline(self.ref(program_id, model_id, record["version"])), record["version"])
            _write_atomic(mdir / "current.json", json.dumps(record, indent=2, sort_keys=True).encode())
        mdir.mkdir(parents=True, exist_ok=True)
        with open(mdir / "promotions.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, sort_keys=True) + "\n")

    def history(self, program_id: str, model_id: str) -> list[dict[str, Any]]:
        """Every decision and rollback of the model, oldest first (promotions.jsonl)."""
        path = self._model_dir(program_id, model_id) / "promotions.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def models(self) -> list[tuple[str, str]]:
        """(program_id, model_id) of every model with a version in the registry."""
        if not self.root.is_dir():
            return []
        return sorted((p.name, m.name) for p in self.root.iterdir() if p.is_dir() for m in p.iterdir() if m.is_dir())

    def never_promoted_reason(self, program_id: str, model_id: str) -> str:
        """Why the model has no promoted version: never trained, or its last candidate's verdict."""
        decisions = [r for r in self.history(program_id, model_id) if r.get("action", "train") == "train"]
        if not decisions:
            return f"{program_id}/{model_id} was never trained"
        last = decisions[-1]
        return f"{program_id}/{model_id}: no version was ever promoted; the last candidate ({last['at']}): {last['reason']}"

    def promoted_versions(self, program_id: str, model_id: str) -> list[str]:
        """The versions that have been current, in the order they became current (repeats removed)."""
        out: list[str] = []
        for r in self.history(program_id, model_id):
            if r.get("promoted") and r["version"] in out:
                out.remove(r["version"])
            if r.get("promoted"):
                out.append(r["version"])
        return out

    def rollback(self, program_id: str, model_id: str, to: str | None = None) -> dict[str, Any]:
        """Make an earlier promoted version current again: `to`, or the one current before the current one.

        Only a version that was promoted before can come back (one that never beat the baseline cannot).  The
        rollback is recorded in promotions.jsonl like a promotion.
        """
        current = self.current(program_id, model_id)
        if current is None:
            raise LookupError(self.never_promoted_reason(program_id, model_id))
        earlier = [v for v in self.promoted_versions(program_id, model_id) if v != current.version]
        if to is None:
            if not earlier:
                raise LookupError(f"{program_id}/{model_id}: no earlier promoted version than {current.version}")
            to = earlier[-1]
        elif to == current.version:
            raise ValueError(f"{program_id}/{model_id}: {to} is already current")
        elif to not in earlier:
            raise LookupError(
                f"{program_id}/{model_id}: {to} was never promoted; earlier promoted versions: "
                f"{', '.join(earlier) or 'none'}"
            )
        self.metadata(program_id, model_id, to)  # the artifact's metadata must still be there
        record = {
            "at": _now(),
            "action": "rollback",
            "version": to,
            "promoted": True,
            "incumbent_version": current.version,
            "reason": f"rolled back from {current.version} to {to}",
        }
        self._record(program_id, model_id, record, make_current=True)
        return record

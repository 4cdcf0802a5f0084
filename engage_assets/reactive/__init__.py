"""The reactive programs' event path (abandoned cart): one decision path for one event and for a micro-batch.

- `decision`: `decide(program, events, parts, now)` → `DecisionResult` (de-duplication, enrichment, the filter
  chain, scoring, discount, holdout, candidates, touch plan); `DecisionParts`, the resources it uses;
- `events`: the batch split by kind, the abandoned carts as Arrow, the dedup and partition keys;
- `context`: the context columns the filters and the model read, joined in one pass;
- `offers`: score, discount, holdout, candidate records, touch plan;
- `training`: `train_purchase_intent`, the purchase-intent model trained like the batch models;
- `handler`: `handle(event, context)`, the AWS Lambda entry point (EventBridge target or SQS batch).

A layer beside `engage_assets.delivery`: it orchestrates resources and the domain, and knows nothing of Dagster
assets.
"""

from engage_assets.reactive.decision import DecisionParts, DecisionResult, Quarantined, decide
from engage_assets.reactive.training import train_purchase_intent

__all__ = ["DecisionParts", "DecisionResult", "Quarantined", "decide", "train_purchase_intent"]

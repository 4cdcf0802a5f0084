"""Scoring: the `ScoringResource` interface (`base`) and its implementations.

- local: `local.LocalScoringResource`, in-process with the artifact the platform trained;
- production: `sagemaker.SageMakerScoringResource`, a SageMaker real-time endpoint through boto3.

Import each class from its module.
"""

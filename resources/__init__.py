"""Dagster resources: one interface per part, a local (embedded) and a production implementation."""

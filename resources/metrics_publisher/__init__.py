"""Where the daily metrics go besides the asset's metadata: a SQLite log locally, CloudWatch in production."""

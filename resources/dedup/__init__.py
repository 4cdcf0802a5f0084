"""Event de-duplication for the reactive programs: the `DedupStore` interface (`base`) and its implementations.

- local: `sqlite.SqliteDedupStore`, claims in a SQLite file (WAL) that every consumer process shares;
- production: `dynamodb.DynamoDbDedupStore`, one item per key written with a conditional put.

Import each class from its module.
"""

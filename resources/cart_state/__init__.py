"""What the cart events say about carts and stock, for the abandoned-cart program: the `CartStateStore` interface
(`base`, with `CartConversions`, the delivery engine's conversion source over it) and its SQLite implementation
(`sqlite.SqliteCartState`).  Import each class from its module.
"""

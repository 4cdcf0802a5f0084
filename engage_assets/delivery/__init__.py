"""Delivery: touch plans, the delivery ledger, contact pressure, channels and the send loop (ARCHITECTURE §7)."""

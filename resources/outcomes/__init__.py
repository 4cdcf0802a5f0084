"""Provider outcomes (deliveries, opens, clicks, bounces, complaints, unsubscribes) and the opt-outs they record:
`base` (the interface) | `sqlite` (local) | `dynamodb` (production)."""

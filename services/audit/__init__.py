"""The safety audit trail: safety.events into an append-only, hash-chained database."""

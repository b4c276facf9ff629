"""The safety audit trail: safety.events into an append-only, keyed (HMAC) chain, anchored."""

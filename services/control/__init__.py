"""The control topic: command signing (gate side) and verification (vehicle side)."""

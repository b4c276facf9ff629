"""`roadstream bench …`: benchmarks whose figures go to docs/benchmarks.md."""

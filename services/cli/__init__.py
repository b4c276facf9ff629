"""The `roadstream` command line."""

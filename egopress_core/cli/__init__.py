"""The `egopress` command line: one sub-command per module in this package."""

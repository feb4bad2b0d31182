"""valueharms."""

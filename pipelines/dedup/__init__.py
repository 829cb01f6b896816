"""Near-duplicate removal: signatures → exact groups → LSH → verification → components → survivors."""

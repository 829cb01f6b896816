"""Tokenize and pack a corpus into fixed-length training rows (Parquet and TFRecord shards)."""

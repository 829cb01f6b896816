"""Reading corpora and publishing outputs."""

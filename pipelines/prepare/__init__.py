"""The end-to-end run behind ``jobs/prepare.py``: stages, their verification, skipping and reporting."""

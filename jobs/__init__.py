"""Entry points: each ``jobs/NAME.py`` parses its options and runs a pipeline (``spark-submit jobs/NAME.py``).

Installed, the same jobs are the subcommands of ``corpus-prep`` (``jobs/__main__.py``).
"""

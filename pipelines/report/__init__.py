"""Run reports: HTML pages with PNG charts, built from the jobs' own ``stats.json``/``manifest.json``.

``charts`` draws, ``html`` lays out, ``dedup``/``pack``/``prepare`` gather and arrange one job's
numbers each, ``console`` prints the end-of-run summary.
"""

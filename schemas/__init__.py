"""Schemas of every table the jobs read or write, and the checks that enforce them."""

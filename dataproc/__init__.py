"""Shipping corpus-prep to Google Cloud Dataproc: packaging, gcloud command lines, their CLI.

Pure Python without Spark, so the Airflow DAG (``dags/corpus_prep.py``) can import it too.
"""

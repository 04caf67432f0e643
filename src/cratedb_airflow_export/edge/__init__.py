"""The Airflow edge: everything that imports Airflow lives here.

- ``resolve``: Airflow connections -> what the core needs (S3 client and credentials, source
  connection parameters, secrets masked in task logs), resolved once per task;
- ``operators``: the export operators (errors that cannot heal fail without retries; OpenLineage);
- ``dag``: the export DAG factory; ``consumer``: the example DAG scheduled on the export Assets;
- ``lineage``: the OpenLineage datasets of an export (the source table in, the S3 partition out).

The core (every module outside this package) never imports Airflow.
"""

"""Tables to export (the tutorial's format, unchanged).

Required keys: ``table``, ``timestamp_column`` and one of ``target_bucket`` (tutorial layout,
``s3://<bucket>/<path>-YYYY-MM-DD/``) or ``target`` (Hive layout,
``s3://<bucket>/<prefix>/<schema>.<table>/dt=YYYY-MM-DD/``). Optional keys and their defaults are
listed in docs/configuration.md.
"""

TABLES = [
    {
        # fully-qualified name of the table to export
        "table": "doc.metrics",
        # name of the timestamp column to use for filtering the export
        "timestamp_column": "timestamp",
        # name and path of the target S3 bucket
        "target_bucket": "crate-astro-tutorial/metrics",
    }
]

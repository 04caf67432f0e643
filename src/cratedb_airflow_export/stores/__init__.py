"""One backend per object store, each behind :class:`~cratedb_airflow_export.storage.Store`:
``s3`` (AWS S3 and S3-compatible servers), ``azure`` (Azure Blob Storage), ``gcs`` (Google Cloud
Storage).
A backend is the only module that imports its store's SDK."""

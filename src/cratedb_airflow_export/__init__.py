"""cratedb-airflow-export: export CrateDB tables to S3-compatible storage, daily, with Apache Airflow."""

__version__ = "0.1.0"

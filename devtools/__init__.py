"""Development tools: the local stack (PostgreSQL + S3 on 127.0.0.1) and sample data used by
``make demo``, ``make bench`` and the tests. Not part of the installed package or the Docker image."""

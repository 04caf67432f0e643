# Astro Runtime 3.x (Apache Airflow 3). Pick the Runtime release that ships Airflow 3.3.x;
# pyproject.toml/constraints.txt pin the versions this project is tested with.
FROM astrocrpublic.azurecr.io/runtime:3.3-2

# The Runtime's ONBUILD steps have copied the project and installed requirements.txt;
# install the export package itself (all logic lives in src/cratedb_airflow_export).
RUN pip install --no-cache-dir --no-deps /usr/local/airflow

# Arrow allocates from the system allocator: with its default (mimalloc) a streaming export keeps
# 20-30 MB more resident (measured with `make bench`). Read once, when pyarrow starts.
ENV ARROW_DEFAULT_MEMORY_POOL=system

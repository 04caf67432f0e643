# Astro Runtime 3.x (Apache Airflow 3). Any Runtime release that ships Airflow 3.2 or 3.3 (the
# versions make test-compat checks); requirements.txt holds the package's dependencies as ranges.
FROM astrocrpublic.azurecr.io/runtime:3.3-2

# The Runtime's ONBUILD steps have copied the project and installed requirements.txt;
# install the export package itself (all logic lives in src/cratedb_airflow_export).
RUN pip install --no-cache-dir --no-deps /usr/local/airflow

# Arrow allocates from the system allocator: with its default (mimalloc) a streaming export keeps
# 20-30 MB more resident (measured with `make bench`). Read once, when pyarrow starts.
ENV ARROW_DEFAULT_MEMORY_POOL=system

"""OpenLineage for the export operators: the source table in, the S3 partition out.

Airflow's OpenLineage provider calls the operator's ``get_openlineage_facets_on_complete`` after a
successful export and emits the datasets with the task's run events, so lineage tools (Marquez,
Astro) show CrateDB -> S3 without user code. Dataset names follow OpenLineage's naming rules:

- input: ``crate://<host>:<port>`` / ``<schema>.<table>`` for CrateDB (which has no databases above
  its schemas), ``postgres://<host>:<port>`` / ``<database>.<schema>.<table>`` for PostgreSQL, with the
  exported columns and their types (schema facet);
- output: ``s3://<bucket>`` / ``<partition folder>`` (``gs://<bucket>``; on Azure
  ``abfss://<container>@<account>.dfs.core.windows.net``: the spelling lake tools use, from the
  store), or an Iceberg table's folder, with the same schema, an identity column lineage, the row
  count, bytes and file count, and ``OVERWRITE`` (a rerun replaces the partition).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cratedb_airflow_export.config import TableExport
    from cratedb_airflow_export.credentials import SourceParams
    from cratedb_airflow_export.engines import ExportResult
    from cratedb_airflow_export.storage import Store

DEFAULT_PORT = 5432


def source_dataset_id(cfg: TableExport, params: SourceParams, dialect: str) -> tuple[str, str]:
    """(namespace, name) of the exported table."""
    authority = f"{params.host or 'localhost'}:{params.port or DEFAULT_PORT}"
    if dialect == "CrateDB":
        return f"crate://{authority}", cfg.qualified_name
    return f"postgres://{authority}", f"{params.dbname or 'postgres'}.{cfg.qualified_name}"


def export_lineage(cfg: TableExport, params: SourceParams, store: Store, results: list[ExportResult]) -> Any:
    """The OpenLineage ``OperatorLineage`` of published exports: the table in, each partition out."""
    from airflow.providers.common.compat.openlineage.facet import (
        ColumnLineageDatasetFacet,
        Fields,
        InputDataset,
        InputField,
        LifecycleStateChange,
        LifecycleStateChangeDatasetFacet,
        OutputDataset,
        OutputStatisticsOutputDatasetFacet,
        SchemaDatasetFacet,
        SchemaDatasetFacetFields,
    )
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.generated.column_lineage_dataset import Transformation

    source = results[0].source
    assert source is not None, "a published result knows its source"
    namespace, name = source_dataset_id(cfg, params, source.dialect.name)
    exported = list(cfg.columns or source.top_level)
    schema = SchemaDatasetFacet(
        fields=[SchemaDatasetFacetFields(name=column, type=source.columns.get(column)) for column in exported]
    )
    table = InputDataset(namespace=namespace, name=name, facets={"schema": schema})
    lineage = ColumnLineageDatasetFacet(
        fields={
            column: Fields(
                inputFields=[
                    InputField(
                        namespace=namespace,
                        name=name,
                        field=column,
                        transformations=[Transformation(type="DIRECT", subtype="IDENTITY")],
                    )
                ]
            )
            for column in exported
        }
    )
    partitions = [
        OutputDataset(
            *output_dataset_id(store, result),
            facets={
                "schema": schema,
                "columnLineage": lineage,
                "lifecycleStateChange": LifecycleStateChangeDatasetFacet(
                    lifecycleStateChange=LifecycleStateChange.OVERWRITE
                ),
            },
            outputFacets={
                "outputStatistics": OutputStatisticsOutputDatasetFacet(
                    rowCount=result.rows, size=sum(o.size for o in result.objects), fileCount=len(result.objects)
                )
            },
        )
        for result in results
    ]
    return OperatorLineage(inputs=[table], outputs=partitions)


def output_dataset_id(store: Store, result: ExportResult) -> tuple[str, str]:
    """(namespace, name) of where the rows went: the partition folder, or (format iceberg) the
    Iceberg table's folder (where its metadata folder is), as the store spells it for lake tools."""
    if result.committed is not None:
        uri = result.committed.metadata_location.rsplit("/metadata/", 1)[0]
    else:
        uri = store.lake_uri(result.job.location)
    scheme, _, rest = uri.partition("://")
    authority, _, path = rest.partition("/")
    return f"{scheme}://{authority}", path

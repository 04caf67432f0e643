"""What the copy engine makes of CrateDB's COPY failures (engines/copy.py): a store that refused the
credentials or what they may do fails the attempt as unusable, naming where; anything else keeps
its own class."""

from __future__ import annotations

import pytest

from cratedb_airflow_export.engines.copy import refused_by_store
from cratedb_airflow_export.errors import is_retryable

WHERE = "az://lake/_cratedb_export_staging/doc.t/dt=2024-01-04/run-1/"


@pytest.mark.parametrize(
    "message",
    [
        # CrateDB 5.10.16 / 6.4.3 with a wrong Azure key (opendal's error kinds)
        "PermissionDenied (permanent) at write, context: { uri: http://devstoreaccount1.localhost:10000/... }",
        "Access Denied (Service: Amazon S3; Status Code: 403; Error Code: AccessDenied; Request ID: x)",
        "The AWS Access Key Id you provided does not exist in our records. (Error Code: InvalidAccessKeyId)",
    ],
)
def test_a_store_that_refused_for_good_makes_the_attempt_unusable(message):
    refused = refused_by_store(RuntimeError(message), WHERE)
    assert refused is not None and not is_retryable(refused)
    assert WHERE in str(refused) and message.splitlines()[0] in str(refused)


@pytest.mark.parametrize(
    "message",
    [
        "Unexpected (temporary) at write, context: { ... } => connection reset",
        # CrateDB 6.4.3, an S3 endpoint out of its reach: opendal calls it permanent, a network path heals it
        "ConfigInvalid (permanent) at Builder::build => region is missing. Please find it by S3::detect_region()",
        "Unable to execute HTTP request: Connect to s3.example.com:443 failed: Connection refused",
        "JobKilledException: Job killed. Participating node=n1 disconnected.",
    ],
)
def test_other_copy_failures_keep_their_class(message):
    assert refused_by_store(RuntimeError(message), WHERE) is None

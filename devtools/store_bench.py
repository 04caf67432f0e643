"""``make bench-stores``: one 512 MiB streaming upload of JSON Lines rows (the tutorial table's shape)
per store client, each in a process of its own: rows/s, MB/s and peak RSS over the interpreter's
own. The stores are real servers on 127.0.0.1: moto (S3), Azurite (Azure Blob Storage),
fake-gcs-server (Google Cloud Storage); per store, the cloud's own SDK (for S3: this package's
boto3 MultipartWriter) against obstore, one Rust library for all three (issue 29: which client
library the storage interface's backends use).

    python -m devtools.store_bench [--mib 512] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

CHUNK = 8 * 1024 * 1024  # what the writer is handed at a time, and the part / block size
CLIENTS = ("boto3-s3", "obstore-s3", "azure-sdk", "obstore-azure", "gcs-sdk", "obstore-gcs")


def chunk_of_rows() -> tuple[bytes, int]:
    """About 8 MiB of JSON Lines rows shaped like the tutorial's metrics, and how many rows."""
    lines, size, n = [], 0, 0
    while size < CHUNK:
        row = {
            "hash_id": 7_000_000_000 + n,
            "timestamp": 1_704_326_400_000 + n * 37,
            "name": f"cpu-{n % 97}",
            "tags": {"cluster": "c1", "host": f"host-{n % 13}.example", "region": "eu-central-1"},
            "fields": {"usage_user": (n % 1000) / 10, "usage_system": (n % 333) / 7, "usage_idle": 71.5},
        }
        line = (json.dumps(row, separators=(",", ":")) + "\n").encode()
        lines.append(line)
        size += len(line)
        n += 1
    return b"".join(lines), n


def chunks(total: int) -> Iterator[bytes]:
    data, _ = chunk_of_rows()
    for _ in range(total // CHUNK):
        yield data


def rss_mb() -> float:
    """This process's peak RSS (VmHWM: ru_maxrss would carry the parent's over exec)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- one client each: write ``total`` bytes as one object, streaming ------------------------------


def boto3_s3(cfg: dict[str, Any], total: int, key: str) -> Callable[[], None]:
    from cratedb_airflow_export.credentials import S3Credentials
    from cratedb_airflow_export.stores.s3 import S3Store

    store = S3Store.from_credentials(S3Credentials(cfg["access_key"], cfg["secret_key"], endpoint_url=cfg["endpoint"]))

    def upload() -> None:
        writer = store.writer(cfg["bucket"], key, CHUNK)
        for data in chunks(total):
            writer.write(data)
        writer.close()
        store.delete(cfg["bucket"], [key])  # the servers keep objects in memory

    return upload


def obstore_upload(store: Any, total: int, key: str) -> Callable[[], None]:
    import obstore

    def upload() -> None:
        with obstore.open_writer(store, key, buffer_size=CHUNK, max_concurrency=2) as writer:
            for data in chunks(total):
                writer.write(data)
        obstore.delete(store, key)

    return upload


def obstore_s3(cfg: dict[str, Any], total: int, key: str) -> Callable[[], None]:
    from obstore.store import S3Store

    store = S3Store(
        cfg["bucket"],
        endpoint=cfg["endpoint"],
        access_key_id=cfg["access_key"],
        secret_access_key=cfg["secret_key"],
        region="us-east-1",
        virtual_hosted_style_request=False,
        client_options={"allow_http": True},
    )
    return obstore_upload(store, total, key)


def azure_sdk(cfg: dict[str, Any], total: int, key: str) -> Callable[[], None]:
    from azure.storage.blob import BlobServiceClient

    blob = BlobServiceClient.from_connection_string(cfg["connection_string"]).get_blob_client(cfg["container"], key)

    def upload() -> None:  # a block per chunk, then the block list: the SDK's streaming path
        ids = []
        for number, data in enumerate(chunks(total)):
            block_id = f"{number:08d}"
            blob.stage_block(block_id, data)
            ids.append(block_id)
        blob.commit_block_list(ids)
        blob.delete_blob()

    return upload


def obstore_azure(cfg: dict[str, Any], total: int, key: str) -> Callable[[], None]:
    from obstore.store import AzureStore

    os.environ["AZURITE_BLOB_STORAGE_URL"] = cfg["blob_url"]  # object_store's emulator endpoint
    store = AzureStore(
        cfg["container"],
        account_name=cfg["account"],
        account_key=cfg["account_key"],
        use_emulator=True,
        client_options={"allow_http": True},
    )
    return obstore_upload(store, total, key)


def gcs_sdk(cfg: dict[str, Any], total: int, key: str) -> Callable[[], None]:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project="bench", credentials=AnonymousCredentials(), client_options={"api_endpoint": cfg["endpoint"]}
    )
    blob = client.bucket(cfg["bucket"]).blob(key)

    def upload() -> None:  # a resumable upload, a chunk per request
        with blob.open("wb", chunk_size=CHUNK, ignore_flush=True) as writer:
            for data in chunks(total):
                writer.write(data)
        blob.delete()

    return upload


def obstore_gcs(cfg: dict[str, Any], total: int, key: str) -> Callable[[], None]:
    from obstore.store import GCSStore

    account = {"gcs_base_url": cfg["endpoint"], "disable_oauth": True, "client_email": "", "private_key": ""}
    account["private_key_id"] = ""
    store = GCSStore(cfg["bucket"], service_account_key=json.dumps(account), client_options={"allow_http": True})
    return obstore_upload(store, total, key)


PREPARE: dict[str, Callable[[dict[str, Any], int, str], Callable[[], None]]] = {
    "boto3-s3": boto3_s3,
    "obstore-s3": obstore_s3,
    "azure-sdk": azure_sdk,
    "obstore-azure": obstore_azure,
    "gcs-sdk": gcs_sdk,
    "obstore-gcs": obstore_gcs,
}


def one(client: str, cfg: dict[str, Any], total: int) -> dict[str, Any]:
    """In the child: import and set up, then the upload alone is timed; peak RSS over the set-up's."""
    _, rows_per_chunk = chunk_of_rows()
    upload = PREPARE[client](cfg, total, f"bench/{client}-{uuid.uuid4().hex[:6]}.jsonl")
    before = rss_mb()
    started = time.perf_counter()
    cpu = time.process_time()
    upload()  # and one DELETE of the object
    seconds = time.perf_counter() - started
    rows = rows_per_chunk * (total // CHUNK)
    return {
        "client": client,
        "seconds": seconds,
        "rows_per_s": rows / seconds,
        "mb_per_s": total / 1e6 / seconds,
        "cpu_s": time.process_time() - cpu,
        "peak_rss_mb": rss_mb(),
        "rss_before_mb": before,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", action="append", choices=CLIENTS)
    parser.add_argument("--child", nargs=2, metavar=("CLIENT", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    total = args.mib * 1024 * 1024
    if args.child:
        print(json.dumps(one(args.child[0], json.loads(args.child[1]), total)))
        return

    from devtools.devstack import LocalS3
    from devtools.emulators import AZURITE_ACCOUNT, AZURITE_KEY, LocalAzurite, LocalFakeGCS

    s3, azurite, gcs = LocalS3().start(), LocalAzurite().start(), LocalFakeGCS().start()
    try:
        bucket = s3.ensure_bucket("bench")
        from azure.storage.blob import BlobServiceClient

        BlobServiceClient.from_connection_string(azurite.connection_string).create_container("bench")
        import urllib.request

        request = urllib.request.Request(
            f"{gcs.endpoint}/storage/v1/b?project=bench",
            data=json.dumps({"name": "bench"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=10).close()
        configs = {
            "s3": {
                "bucket": bucket,
                "endpoint": s3.endpoint_url,
                "access_key": s3.access_key,
                "secret_key": s3.secret_key,
            },
            "azure": {
                "container": "bench",
                "connection_string": azurite.connection_string,
                "blob_url": f"http://127.0.0.1:{azurite.port}",
                "account": AZURITE_ACCOUNT,
                "account_key": AZURITE_KEY,
            },
            "gcs": {"bucket": "bench", "endpoint": gcs.endpoint},
        }
        results: dict[str, list[dict[str, Any]]] = {}
        for _ in range(args.runs):
            for client in args.only or CLIENTS:
                store = "s3" if client.endswith("s3") else "azure" if "azure" in client else "gcs"
                child = [sys.executable, "-m", "devtools.store_bench", "--mib", str(args.mib)]
                done = subprocess.run(
                    [*child, "--child", client, json.dumps(configs[store])],
                    capture_output=True,
                    text=True,
                    timeout=1800,
                    check=False,
                )
                if done.returncode != 0:
                    print(f"{client}: failed\n{done.stderr[-2000:]}", flush=True)
                    continue
                result = json.loads(done.stdout.strip().splitlines()[-1])
                results.setdefault(client, []).append(result)
                print(
                    f"{client:14} {result['rows_per_s']:>12,.0f} rows/s {result['mb_per_s']:>7.1f} MB/s "
                    f"cpu {result['cpu_s']:5.1f} s  peak RSS {result['peak_rss_mb']:6.1f} MB "
                    f"(before the upload {result['rss_before_mb']:.1f})",
                    flush=True,
                )
        print(f"\nmedians of {args.runs} ({args.mib} MiB, {CHUNK // 2**20} MiB chunks):")
        print("| client | rows/s | MB/s | worker CPU-s | peak RSS MB (before the upload) |\n|---|---:|---:|---:|---:|")
        for client, runs in results.items():
            med = {k: statistics.median(r[k] for r in runs) for k in ("rows_per_s", "mb_per_s", "cpu_s")}
            rss = statistics.median(r["peak_rss_mb"] for r in runs)
            before = statistics.median(r["rss_before_mb"] for r in runs)
            print(
                f"| {client} | {med['rows_per_s']:,.0f} | {med['mb_per_s']:.1f} | {med['cpu_s']:.1f} | "
                f"{rss:.0f} ({before:.0f}) |"
            )
    finally:
        gcs.stop()
        azurite.stop()
        s3.stop()


if __name__ == "__main__":
    main()

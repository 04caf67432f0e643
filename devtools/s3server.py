"""An S3-compatible server on 127.0.0.1 for a CrateDB you run yourself, without Docker.

    python -m devtools.s3server [--port 9000] [--access-key minioadmin] [--secret-key minioadmin]

It is the local stack's server (moto, objects in memory) answering as MinIO does for
``compose.yaml``: HEAD Bucket reports no region (CrateDB 5.x would otherwise send its requests to
AWS) and requests signed with another access key are refused. With it running, and CrateDB on
this machine,

    make integration CRATEDB_URL=postgresql://crate@127.0.0.1:5432/doc

runs the CrateDB suite (the defaults of ``make integration`` name this server's address and keys).
Stops on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import threading

from devtools.devstack import LocalS3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.s3server", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--access-key", default="minioadmin")
    parser.add_argument("--secret-key", default="minioadmin")
    args = parser.parse_args(argv)
    server = LocalS3(port=args.port, access_key=args.access_key, secret_key=args.secret_key, check_access_key=True)
    server.start()
    print(f"S3 server on {server.endpoint_url} (access key {args.access_key!r}); Ctrl-C stops it", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

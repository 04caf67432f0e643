"""The other clouds' stores, emulated for real on 127.0.0.1: Azurite (Azure Blob Storage, from the npm
registry) and fake-gcs-server (Google Cloud Storage, built from the Go module proxy). Both pinned,
installed under ``.tools/`` on first use, started on free ports and stopped by the PID started here.

    python -m devtools.emulators install     # both, pinned (what make does before using them)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools.devstack import free_port

REPO = Path(__file__).resolve().parent.parent
TOOLS = REPO / ".tools"
AZURITE_VERSION = "3.37.0"
FAKE_GCS_VERSION = "v1.56.1"
AZURITE = TOOLS / "azurite" / "node_modules" / ".bin" / "azurite-blob"
FAKE_GCS = TOOLS / "bin" / "fake-gcs-server"
# Azurite's well-known development account (public, in Microsoft's documentation: not a secret)
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def _run(*args: str | Path, env: dict[str, str] | None = None) -> None:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed ({done.returncode}):\n{done.stderr[-3000:]}")


def install_azurite() -> Path:
    """Azurite, pinned, into .tools/azurite (npm; nothing global)."""
    if not AZURITE.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is not installed: Azurite comes from the npm registry")
        (TOOLS / "azurite").mkdir(parents=True, exist_ok=True)
        _run(npm, "install", "--prefix", TOOLS / "azurite", "--no-audit", "--no-fund", f"azurite@{AZURITE_VERSION}")
    return AZURITE


def install_fake_gcs() -> Path:
    """fake-gcs-server, pinned, built into .tools/bin (go install from the Go module proxy)."""
    if not FAKE_GCS.exists():
        go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
        if go is None:
            raise RuntimeError("go is not installed: fake-gcs-server is built from the Go module proxy")
        import os

        env = {**os.environ, "GOBIN": str(TOOLS / "bin"), "CGO_ENABLED": "0"}
        _run(go, "install", f"github.com/fsouza/fake-gcs-server@{FAKE_GCS_VERSION}", env=env)
    return FAKE_GCS


def _wait_http(url: str, proc: subprocess.Popen[Any], timeout: float, ok: tuple[int, ...] = (200,)) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status in ok:
                    return
        except urllib.error.HTTPError as exc:
            if exc.code in ok:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"nothing answered {url} within {timeout} s")


def _stop(proc: subprocess.Popen[Any] | None) -> None:
    """Stop an emulator: its data is throwaway, and a graceful shutdown waits for the clients' idle
    keep-alive connections (10 s and more), so it gets 2 s before it is killed."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class LocalAzurite:
    """Azurite's blob service on 127.0.0.1 (data in a temporary folder)."""

    port: int = 0
    proc: subprocess.Popen[Any] | None = field(default=None, repr=False)
    workdir: Path | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={self.endpoint};"
        )

    def start(self) -> LocalAzurite:
        binary = install_azurite()
        self.port = self.port or free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="azurite-"))
        args = [str(binary), "--blobHost", "127.0.0.1", "--blobPort", str(self.port), "--location", str(self.workdir)]
        self.proc = subprocess.Popen(
            [*args, "--skipApiVersionCheck", "--loose", "--silent"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        _wait_http(f"{self.endpoint}?comp=list", self.proc, 60, ok=(200, 403))
        return self

    def stop(self) -> None:
        _stop(self.proc)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def credentials(self) -> Any:
        """The account's credentials as the package takes them (key and endpoint)."""
        from cratedb_airflow_export.credentials import AzureCredentials

        return AzureCredentials(AZURITE_ACCOUNT, AZURITE_KEY, endpoint_url=self.endpoint, origin="Azurite")

    def store(self) -> Any:
        """The package's Azure backend on this server."""
        from cratedb_airflow_export.stores.azure import AzureStore

        return AzureStore.from_credentials(self.credentials())

    def create_container(self, name: str) -> str:
        self.store().service.create_container(name)
        return name


@dataclass
class LocalFakeGCS:
    """fake-gcs-server on 127.0.0.1 over plain HTTP (objects in memory)."""

    port: int = 0
    proc: subprocess.Popen[Any] | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LocalFakeGCS:
        binary = install_fake_gcs()
        self.port = self.port or free_port()
        args = [str(binary), "-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port), "-backend", "memory"]
        self.proc = subprocess.Popen(
            [*args, "-public-host", f"127.0.0.1:{self.port}", "-log-level", "error"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        _wait_http(f"{self.endpoint}/storage/v1/b", self.proc, 60)
        return self

    def stop(self) -> None:
        _stop(self.proc)

    def credentials(self) -> Any:
        """The package's GCS credentials for this server (its endpoint, anonymous access)."""
        from cratedb_airflow_export.credentials import GcsCredentials

        return GcsCredentials(project="test", endpoint_url=self.endpoint, origin="fake-gcs-server")

    def store(self) -> Any:
        """The package's GCS backend on this server."""
        from cratedb_airflow_export.stores.gcs import GcsStore

        return GcsStore.from_credentials(self.credentials())

    def create_bucket(self, name: str) -> str:
        self.store().client.create_bucket(name)
        return name


def main() -> None:
    if sys.argv[1:] != ["install"]:
        sys.exit(__doc__)
    print(install_azurite())
    print(install_fake_gcs())


if __name__ == "__main__":
    main()

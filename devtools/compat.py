"""``make test-compat``: the package installed into each supported Airflow, as a user would.

For each Airflow release (the newest of each supported minor): a virtual environment of its own
under ``.compat/``, Airflow with the providers this package uses (``apache-airflow[amazon,postgres,
openlineage]``) installed from ``compat/airflow-<version>.txt``, then ``pip install .[iceberg,azure,gcs]`` with
the same constraints (and constraints.txt's versions for what the release does not hold). That
file is the release's resolution as of its release day (``uv pip compile --exclude-newer``, once,
by ``lock``): our stand-in for Airflow's own constraint files, which are not reachable here;
resolved today instead, Airflow 3.2.2 does not even run its own tasks (a later FastAPI refuses its
execution API's models). It fails when installing the package changed any package that was there
before (Airflow, a provider, a pin), and then runs the unit tests and the shipped DAG end to end
(``tests/e2e/test_dag.py``) in that environment, and then the README's quick start as written
(``tests/e2e/test_quickstart.py``, which runs ``pip install .`` there again: alone, after the others).

    python -m devtools.compat lock 3.2.2 --as-of 2026-05-29   # the release's day, from PyPI
    python -m devtools.compat check 3.2.2    # the check above
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOCKS = REPO / "compat"
ENVS = REPO / ".compat"
AIRFLOW_EXTRAS = "amazon,postgres,openlineage"
# what the tests need beyond the package (requirement -> its name in constraints.txt), at our versions
TEST_TOOLS = {
    "pytest": "pytest",
    "pytest-xdist": "pytest-xdist",
    "hypothesis": "hypothesis",
    "moto[server]": "moto",
    "pgserver": "pgserver",
    "duckdb": "duckdb",
}
TESTS = ("tests/unit", "tests/e2e/test_dag.py")
QUICKSTART = "tests/e2e/test_quickstart.py"  # reinstalls the package: alone, after the others


def lock_file(version: str) -> Path:
    return LOCKS / f"airflow-{version}.txt"


def run(*args: str | Path, env: dict[str, str] | None = None) -> str:
    print("+", " ".join(map(str, args)), flush=True)
    done = subprocess.run([str(a) for a in args], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(map(str, args))}\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return done.stdout


def pip_version() -> str:
    return run(sys.executable, "-m", "pip", "--version").split()[1]


def new_env(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    run(sys.executable, "-m", "venv", path)
    python = path / "bin" / "python"
    run(python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", f"pip=={pip_version()}")
    return python


def parse_pins(text: str) -> dict[str, str]:
    """name (normalised) -> version of the ``name==version`` lines of pip freeze or a constraints file."""
    found = {}
    for line in text.splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            found[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return found


def frozen(python: Path) -> dict[str, str]:
    """name -> version of every installed distribution but this package."""
    versions = parse_pins(run(python, "-m", "pip", "freeze", "--all"))
    versions.pop("cratedb-airflow-export", None)
    return versions


def test_tools() -> list[str]:
    """TEST_TOOLS at the versions constraints.txt pins (where our exact versions live)."""
    pinned = parse_pins((REPO / "constraints.txt").read_text())
    return [f"{requirement}=={pinned[name]}" for requirement, name in TEST_TOOLS.items()]


def lock(version: str, as_of: str) -> None:
    """compat/airflow-<version>.txt: what pip would have installed on the release day ``as_of``."""
    uv = Path(sys.executable).parent / "uv"
    LOCKS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wanted = Path(tmp) / "airflow.in"
        wanted.write_text(f"apache-airflow[{AIRFLOW_EXTRAS}]=={version}\n")
        out = Path(tmp) / "airflow.txt"
        python = f"{sys.version_info.major}.{sys.version_info.minor}"
        day_after = (date.fromisoformat(as_of) + timedelta(days=1)).isoformat()
        run(
            uv,
            "pip",
            "compile",
            "--quiet",
            "--no-header",
            "--no-annotate",
            "--python-version",
            python,
            "--exclude-newer",
            f"{day_after}T00:00:00Z",
            wanted,
            "-o",
            out,
        )
        versions = parse_pins(out.read_text())
    header = (
        f"# apache-airflow[{AIRFLOW_EXTRAS}]=={version} as resolved on its release day {as_of}, for Python "
        f"{python}\n# (`python -m devtools.compat lock {version} --as-of {as_of}`): the environment make "
        "test-compat installs\n# this package into, a stand-in for Airflow's own constraint file.\n"
    )
    lock_file(version).write_text(header + "".join(f"{n}=={v}\n" for n, v in sorted(versions.items())))
    print(f"wrote {lock_file(version)} ({len(versions)} packages)")


def check(version: str) -> None:
    locked = lock_file(version)
    if not locked.exists():
        sys.exit(f"{locked} is missing: run python -m devtools.compat lock {version} --as-of <its release day>")
    env_dir = ENVS / f"airflow-{version}"
    python = new_env(env_dir)
    # the release's pins, and ours (constraints.txt) for what the release does not hold: every version
    # installed is fixed, so the check gives the same answer tomorrow
    airflow_pins = parse_pins(locked.read_text())
    ours = parse_pins((REPO / "constraints.txt").read_text())
    constraints = env_dir / "constraints.txt"
    constraints.write_text(
        "".join(
            f"{n}=={v}\n"
            for n, v in {**{n: v for n, v in ours.items() if n not in airflow_pins}, **airflow_pins}.items()
        )
    )
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-c", constraints]
    run(*pip, f"apache-airflow[{AIRFLOW_EXTRAS}]=={version}")
    before = frozen(python)
    run(*pip, f"{REPO}[iceberg,azure,gcs]")
    after = frozen(python)
    changed = {name: (old, after.get(name)) for name, old in before.items() if after.get(name) != old}
    if changed:
        lines = "\n".join(f"  {name}: {old} -> {new or 'removed'}" for name, (old, new) in sorted(changed.items()))
        sys.exit(f"Airflow {version}: installing cratedb-airflow-export changed what was installed:\n{lines}")
    added = sorted(set(after) - set(before))
    print(
        f"Airflow {version}: installing cratedb-airflow-export changed none of the {len(before)} packages "
        f"(apache-airflow {after['apache-airflow']}); it added {len(added)}: {', '.join(added)}"
    )
    run(*pip, *test_tools())
    env = {**os.environ, "TZ": os.environ.get("TZ", "Asia/Kathmandu"), "CRATEDB_EXPORT_FRESH_ENV": "1"}
    env.pop("VIRTUAL_ENV", None)
    pytest = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    for what, args in (
        ("the unit tests and the shipped DAG end to end", ["-n", "2", *TESTS]),
        ("the README's quick start, as written", [QUICKSTART]),
    ):
        print(f"Airflow {version}: {what}", flush=True)
        tests = subprocess.run([*pytest, *args], cwd=REPO, env=env, check=False)
        if tests.returncode != 0:
            sys.exit(f"Airflow {version}: {what} failed ({tests.returncode})")
    print(f"Airflow {version}: OK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["lock", "check"])
    parser.add_argument("versions", nargs="+", metavar="AIRFLOW_VERSION")
    parser.add_argument("--as-of", help="lock: the release's day (YYYY-MM-DD), as PyPI shows it")
    args = parser.parse_args()
    if args.action == "lock" and not args.as_of:
        parser.error("lock needs --as-of: the day the release was published")
    for version in args.versions:
        if args.action == "lock":
            lock(version, args.as_of)
        else:
            check(version)


if __name__ == "__main__":
    main()

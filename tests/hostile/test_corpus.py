"""Every hostile input of ``cases.py``, run as a real ``prescale`` process against a seeded home.

The home is seeded once per session (an ingested app, the simulated cluster after one apply, a ledger day)
and copied for each case, so a case that damaged it could not hide behind the next. Checked for each case:
the exit code, the message fragments, no traceback, nothing outside the home changed (the case's scratch
folder, the repository's ``infra/`` and ``data/``), and no file of the seeded home changed or vanished; a
refusal (exit 2) also adds nothing to the home's data, ledger, cluster state or registry.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.hostile.cases import CASES, Case

REPO = Path(__file__).resolve().parents[2]
PRESCALE = str(Path(sys.executable).parent / "prescale")
GUARDED = ("data", "ledger", "cluster", "phases", "mlflow")  # what a refusal must leave exactly as it was


def _run(args: list[str], *, home: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    from prefect.settings import PREFECT_API_URL

    environ = {**os.environ, "PRESCALE_HOME": str(home), "PREFECT_API_URL": str(PREFECT_API_URL.value()), **(env or {})}
    return subprocess.run([PRESCALE, *args], capture_output=True, text=True, env=environ, timeout=300, cwd=home.parent)


def _digests(root: Path, *, within: tuple[str, ...] | None = None) -> dict[str, str]:
    """Every file under ``root`` (or under its sub-folders ``within``) -> a digest of its bytes."""
    tops = [root / name for name in within] if within else [root]
    return {
        str(path.relative_to(root)): hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
        for top in tops
        if top.exists()
        for path in sorted(top.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="session")
def seeded_home(prefect_harness, tmp_path_factory) -> Path:
    """A home holding what a user's would: metrics of `web`, the cluster after one apply, a ledger day."""
    home = tmp_path_factory.mktemp("seed") / "home"
    metrics = home.parent / "web.csv"
    metrics.write_text("ts,app,metric,value\n" + "".join(
        f"2026-01-01T00:{m:02d}:00Z,web,app.requests_per_s,{100 + m}\n" for m in range(30)))  # fmt: skip
    for args in (["ingest", str(metrics)], ["apply", "--app", "web"]):
        result = _run(args, home=home)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
    day = home / "ledger" / "app=web" / "date=2026-01-01"
    day.mkdir(parents=True)
    for i in range(10):
        pq.write_table(pa.table({"decided_at": [i], "app": ["web"]}), day / f"part-{i:03d}.parquet")
    assert (home / "cluster" / "state.json").is_file() and list((home / "data").rglob("*.parquet"))
    return home


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_hostile_input(case: Case, seeded_home, tmp_path):
    home, work = tmp_path / "home", tmp_path / "work"
    shutil.copytree(seeded_home, home)
    work.mkdir()
    for name, content in case.files.items():
        (work / name).write_bytes(content)
    if case.state is not None:
        (home / "cluster" / "state.json").write_bytes(case.state)
    to_work = os.path.relpath(work, REPO / "infra" / "apps")
    fill = {"work": str(work), "home": str(home), "repo": str(REPO), "to_work": to_work}
    args = [a.format(**fill) for a in case.args]
    before = {"home": _digests(home), "work": _digests(work), "repo": _digests(REPO, within=("infra", "data"))}
    guarded = _digests(home, within=GUARDED)

    result = _run(args, home=home, env={k: v.format(**fill) for k, v in case.env.items()})

    output = result.stdout + result.stderr
    assert result.returncode == case.exit, output
    assert "Traceback" not in output, output
    for fragment in case.says:
        assert fragment.format(**fill) in output, f"{fragment!r} not in the output:\n{output}"
    after_home = _digests(home)
    changed = sorted(k for k, v in before["home"].items() if after_home.get(k) != v and k.startswith(GUARDED))
    assert not changed, f"files of the seeded home changed or vanished: {changed}"
    assert _digests(work) == before["work"], "the case's scratch folder (outside the home) changed"
    assert _digests(REPO, within=("infra", "data")) == before["repo"], "the repository's infra/ or data/ changed"
    if case.exit == 2:
        assert _digests(home, within=GUARDED) == guarded, "a refused input wrote into the home"

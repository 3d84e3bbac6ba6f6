"""The order of a batch's durable writes, read from the system calls of a real writer (strace).

A SIGKILL cannot show durability (the page cache survives it; a power cut does not), so this checks
the order the guarantee rests on, in the calls the writer really made: every data file fsynced
before it is renamed in; every folder that changed (it gained a file, lost a killed attempt's
leftover, or is the parent of a folder made) fsynced after its last change and before the commit
record is renamed into place; the commit record fsynced before that rename and ``_batches``
fsynced after it. The calls of all the writer's threads are in one trace, in the order they
completed, so "before" means: one call completed before the other began.

Local store only (an object store has no fsync: a PUT is durable when it returns).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import need_component

REPO = Path(__file__).resolve().parents[2]
BATCH = "durable"
CALLS = "fsync,fdatasync,rename,renameat,renameat2,mkdir,mkdirat,unlink,unlinkat"

WRITER = """
import sys
import pandas as pd
from prescale.metrics.store import MetricsStore
root, batch_id, apps, days = sys.argv[1], sys.argv[2], sys.argv[3].split(","), int(sys.argv[4])
ts = pd.date_range("2026-03-01", periods=days * 1440, freq="min", tz="UTC")  # one partition per app and day
frame = pd.concat([pd.DataFrame({"app": app, "ts": ts, "metric": "cpu_cores", "value": 1.0}) for app in apps])
print(MetricsStore(root).write_batch(frame, batch_id=batch_id).files)
"""


@dataclass
class Call:
    name: str
    text: str  # the arguments and the result, as strace printed them
    start: int  # line of the trace where the call began
    end: int  # line where it completed

    @property
    def ok(self) -> bool:
        return re.search(r"\) += (-?\d+)", self.text) is not None and not re.search(r"\) += -1 ", self.text)

    @property
    def paths(self) -> list[str]:
        """The paths the call named: fds as strace -y resolves them, then quoted strings."""
        return re.findall(r"\d+<([^>]*)>", self.text) or re.findall(r'"((?:[^"\\]|\\.)*)"', self.text)


def _trace(lines: list[str]) -> list[Call]:
    """The calls of `lines` (``strace -f``), joining the halves of calls interrupted by another thread."""
    calls, pending = [], {}
    for number, line in enumerate(lines):
        pid, _, rest = line.strip().partition(" ")
        rest = rest.strip()
        if resumed := re.match(r"<\.\.\. (\w+) resumed>(.*)", rest):
            call = pending.pop(pid)
            call.text, call.end = call.text + resumed[2], number
        elif called := re.match(r"(\w+)\((.*)", rest):
            unfinished = called[2].endswith("<unfinished ...>")
            call = Call(called[1], called[2].removesuffix("<unfinished ...>"), number, -1 if unfinished else number)
            calls.append(call)
            if unfinished:
                pending[pid] = call
    return [call for call in calls if call.end >= 0 and call.ok]


def _write_traced(root: Path, tmp_path: Path, *, apps: list[str], days: int) -> list[Call]:
    out = tmp_path / "trace.txt"
    command = ["strace", "-f", "-qq", "-y", "-s", "4096", "-e", f"trace={CALLS}", "-o", str(out)]
    writer = [sys.executable, "-c", WRITER, str(root), BATCH, ",".join(apps), str(days)]
    proc = subprocess.run([*command, *writer], cwd=REPO, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0 and "ptrace" in proc.stderr:
        need_component("strace", f"it cannot trace here: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(len(apps) * days), "one data file per app and day"
    return _trace(out.read_text().splitlines())


def _leftovers(root: Path) -> list[Path]:
    """What a killed attempt of the batch leaves in one of its partitions: a complete file and a temporary one."""
    folder = root / "app=web" / "date=2026-03-01"
    folder.mkdir(parents=True)
    left = [folder / f"part-{BATCH}-{1:019d}.parquet", folder / f".tmp-0a1b-part-{BATCH}-{1:019d}.parquet"]
    for path in left:
        path.write_bytes(b"torn")
    return left


@pytest.mark.parametrize(
    ("leftovers", "apps", "days"),
    [
        pytest.param(False, ["api", "web"], 2, id="a-new-store-every-folder-made"),
        pytest.param(True, ["api", "web"], 2, id="a-retry-over-a-killed-attempts-leftovers"),
        pytest.param(True, ["web"], 1, id="a-one-file-batch-written-without-threads"),
    ],
)
def test_every_file_and_folder_is_durable_before_the_commit_record_and_the_record_after(
    tmp_path, leftovers, apps, days
):
    if shutil.which("strace") is None:
        need_component("strace", "the durability test reads a real writer's system calls (apt-get install strace)")
    root = tmp_path / "store" / "metrics"
    left = _leftovers(root) if leftovers else []
    calls = _write_traced(root, tmp_path, apps=apps, days=days)
    fsyncs = [c for c in calls if c.name in ("fsync", "fdatasync")]
    renames = [c for c in calls if c.name.startswith("rename")]

    def synced(path: str, *, after: float, before: float) -> bool:
        return any(c.paths == [path] and c.start > after and c.end < before for c in fsyncs)

    commit_path = str(root / "_batches" / f"{BATCH}.json")
    (commit,) = [c for c in renames if c.paths[-1] == commit_path]
    data = [c for c in renames if re.fullmatch(rf"part-{BATCH}-\d{{19}}\.parquet", os.path.basename(c.paths[-1]))]
    assert len(data) == len(apps) * days and all(c.end < commit.start for c in data)

    for call in (*data, commit):  # the bytes, under the temporary name, before the rename
        tmp, final = call.paths
        assert synced(tmp, after=-1, before=call.start), f"{final} renamed in before its data was fsynced"
    changes = [(os.path.dirname(c.paths[-1]), c) for c in data]
    changes += [(os.path.dirname(c.paths[0]), c) for c in calls if c.name.startswith("mkdir") and c.end < commit.start]
    removed = [c for c in calls if c.name.startswith("unlink") and c.paths[-1] in map(str, left)]
    assert len(removed) == len(left), "the retry deleted the killed attempt's files"
    changes += [(os.path.dirname(c.paths[-1]), c) for c in removed]
    for folder in {folder for folder, _ in changes}:
        last = max(c.end for f, c in changes if f == folder)
        assert synced(folder, after=last, before=commit.start), f"{folder} not fsynced after its last change"
    assert synced(str(root / "_batches"), after=commit.end, before=float("inf")), "the record's name"

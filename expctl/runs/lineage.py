"""Lineage: which run produced an artifact version, what it was initialised from, who used it.

Nothing new is recorded for this; it joins what is already on disk:

* a version's manifest names the run that published it (``metadata["run_dir"]``, written by the
  trainer's publish; ``artifacts push`` of a run directory names it as ``source``);
* a run's ``summary.json`` says what ``--init-from`` loaded
  (``init_from: {ref, version, file, sha256}``) and which version it published (``artifact``);
* a run's ``provenance.json``, when present, holds its git commit.

"Initialised from" follows producer → ``init_from`` → that version → its producer → ... back,
stopping at a version already seen (a cycle made by hand) or after :data:`MAX_CHAIN` steps.
"Consumed by" is every run under the runs root whose ``init_from`` names the version or one of
its files' sha256 (a pulled copy, a ``.pt`` file taken out of the store). It is found by
scanning the runs root — no second index that could disagree with the run records — and is
cheap: each ``summary.json`` is read with the records' safe reader and parsed only when its
bytes contain the version's ref or one of its sha256s (benchmarks/lineage.py: 1,000 runs).

Every record file is read through :func:`expctl.record.safe_read.read_record_bytes` (FIFOs,
devices and oversized files refused); nothing here raises on a damaged run, it notes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expctl.record.files import PROVENANCE_FILE
from expctl.record.read import read_summary
from expctl.record.safe_read import (
    RefusedFile,
    read_record_bytes,
)
from expctl.record.scan import looks_like_run_dir
from expctl.runs.records import RunInfo, load_run

if TYPE_CHECKING:
    from expctl.artifacts.manifest import ArtifactVersion
    from expctl.artifacts.store import ArtifactStore

MAX_CHAIN = 32  # "initialised from" steps followed before stopping
KEY_METRICS = 4  # final metrics shown per run (the monitored one first)
BOOKKEEPING = frozenset({"step", "epoch", "lr", "global_step", "trainer/global_step"})


@dataclass
class LineageRun:
    """A run as lineage shows it: where, how it ended, its key metrics and its commit."""

    run_dir: str
    exists: bool
    id: str | None = None
    name: str | None = None
    status: str | None = None
    started_at: str | None = None
    monitor: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)  # key final metrics
    commit: str | None = None  # None: unknown (no provenance.json, or unreadable)
    dirty: bool | None = None
    init_from: dict[str, Any] | None = None  # summary.json's init_from
    sort_key: tuple[Any, ...] = field(default=(), compare=False, repr=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "run_dir": self.run_dir,
            "exists": self.exists,
            "id": self.id,
            "name": self.name,
            "status": self.status,
            "started_at": self.started_at,
            "monitor": self.monitor,
            "metrics": self.metrics,
            "commit": self.commit,
            "dirty": self.dirty,
            "init_from": self.init_from,
        }


@dataclass
class ChainLink:
    """One step back: what a run was initialised from, and that version's producer."""

    init_from: dict[str, Any]  # the consuming run's summary.json init_from
    version: str | None  # NAME:vN when it came from the store (or a pull of it)
    in_store: bool
    producer: LineageRun | None = None
    stop: str | None = None  # why the chain stops here (a cycle, the depth cap)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "file": self.init_from.get("file"),
            "sha256": self.init_from.get("sha256"),
            "ref": self.init_from.get("ref"),
            "in_store": self.in_store,
            "produced_by": self.producer.to_json() if self.producer else None,
            "stop": self.stop,
        }


@dataclass
class Lineage:
    """``expctl artifacts show``: a version, its producer, its ancestry and its consumers."""

    version: ArtifactVersion
    producer: LineageRun | None
    chain: list[ChainLink]
    consumers: list[LineageRun]  # newest first
    runs_root: str
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.version.summary(),
            "produced_by": self.producer.to_json() if self.producer else None,
            "initialised_from": [link.to_json() for link in self.chain],
            "consumed_by": {
                "count": len(self.consumers),
                "runs_root": self.runs_root,
                "runs": [run.to_json() for run in self.consumers],
            },
            "notes": self.notes,
        }


@dataclass
class RunArtifacts:
    """``runs show``: the versions a run published and the ones it was initialised from."""

    produced: list[str] = field(default_factory=list)  # NAME:vN
    consumed: list[str] = field(default_factory=list)  # NAME:vN, or the file loaded
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"produced": self.produced, "consumed": self.consumed}


# -- one version's lineage -------------------------------------------------------------------


def version_lineage(store: ArtifactStore, ref: str, runs_root: Path) -> Lineage:
    """The lineage of ``ref`` (``NAME``, ``NAME:ALIAS``, ``NAME:vN``); NotFoundError (exit 2,
    with the versions and aliases there are) when the store has no such version."""
    version = store.resolve(ref)
    runs_root = Path(runs_root).absolute()
    notes: list[str] = []
    producer = _producer(version, notes)
    chain = _chain(store, version, producer, notes)
    consumers = find_consumers(version, runs_root, notes)
    return Lineage(version, producer, chain, consumers, str(runs_root), notes)


def producer_dir(version: ArtifactVersion) -> Path | None:
    """The run directory that published ``version``: the trainer records ``run_dir``; a pushed
    run directory (``artifacts push runs/x/STAMP-ID``) is its ``source``."""
    run_dir = version.metadata.get("run_dir")
    if isinstance(run_dir, str) and run_dir:
        return Path(run_dir)
    source = version.metadata.get("source")
    if isinstance(source, str) and source and looks_like_run_dir(Path(source)):
        return Path(source)
    return None


def _producer(version: ArtifactVersion, notes: list[str]) -> LineageRun | None:
    path = producer_dir(version)
    return lineage_run(path, notes) if path is not None else None


def _chain(
    store: ArtifactStore,
    version: ArtifactVersion,
    producer: LineageRun | None,
    notes: list[str],
) -> list[ChainLink]:
    """producer.init_from → that version → its producer's init_from → ... (cycle-safe)."""
    chain: list[ChainLink] = []
    seen = {version.ref}
    run = producer
    while run is not None and run.init_from is not None:
        if len(chain) == MAX_CHAIN:
            chain[-1].stop = f"stopped after {MAX_CHAIN} steps"
            break
        init = run.init_from
        ref = init.get("version") if isinstance(init.get("version"), str) else None
        link = ChainLink(init, ref, in_store=False)
        chain.append(link)
        if ref is None:
            break  # a plain .pt file: nothing in the store to follow
        found = _stored_version(store, ref)
        link.in_store = found is not None
        if found is None:
            break
        if found.ref in seen:
            link.stop = f"cycle: {found.ref} already shown"
            break
        seen.add(found.ref)
        link.producer = run = _producer(found, notes)
    return chain


def _stored_version(store: ArtifactStore, ref: str) -> ArtifactVersion | None:
    from expctl.artifacts.refs import parse_ref
    from expctl.errors import ExpctlError

    try:
        parsed = parse_ref(ref)
        number = parsed.version
        return store.version(parsed.name, number) if number is not None else None
    except ExpctlError:  # an invalid ref in a summary, a version removed, a damaged manifest
        return None


# -- runs --------------------------------------------------------------------------------------


def lineage_run(path: Path, notes: list[str], info: RunInfo | None = None) -> LineageRun:
    """What lineage shows of the run at ``path`` (a removed run directory says so)."""
    if not path.is_dir():
        return LineageRun(str(path), exists=False)
    info = info or load_run(path)
    notes += [f"{path}: {note}" for note in info.refused]
    commit, dirty = read_commit(path, notes)
    init = info.summary.get("init_from")
    return LineageRun(
        run_dir=str(info.path),
        exists=True,
        id=info.id,
        name=info.name,
        status=info.status,
        started_at=info.started_at,
        monitor=info.monitor,
        metrics=key_metrics(info),
        commit=commit,
        dirty=dirty,
        init_from=init if isinstance(init, dict) else None,
        sort_key=info.sort_key,
    )


def key_metrics(info: RunInfo) -> dict[str, Any]:
    """The run's final numeric metrics that say how good it is: the monitored one, then
    validation/test ones, then the rest; bookkeeping (step, epoch, lr, throughput, timings)
    left out; at most KEY_METRICS."""
    final = {
        k: v
        for k, v in info.final_metrics.items()
        if isinstance(v, int | float)
        and not isinstance(v, bool)
        and k not in BOOKKEEPING
        and not k.endswith(("_per_s", "_s"))
    }
    order = sorted(final, key=lambda k: (k != info.monitor, not k.startswith(("val", "test")), k))
    return {k: final[k] for k in order[:KEY_METRICS]}


def read_commit(run_dir: Path, notes: list[str]) -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` from the run's provenance.json, ``(None, None)`` when unknown (also
    when the run's directory was untracked in the repository around it)."""
    try:
        data = json.loads(read_record_bytes(run_dir / PROVENANCE_FILE))
    except FileNotFoundError:
        return None, None
    except RefusedFile as e:
        notes.append(f"{run_dir}: {e.note}")
        return None, None
    except (OSError, ValueError, RecursionError):
        notes.append(f"{run_dir}: {PROVENANCE_FILE} is unreadable or not JSON")
        return None, None
    git = data.get("git") if isinstance(data, dict) else None
    if not isinstance(git, dict):
        return None, None
    if git.get("workdir_untracked") is True:  # another project's commit: not this run's code
        return None, None
    commit, dirty = git.get("commit"), git.get("dirty")
    return (
        commit if isinstance(commit, str) and commit else None,
        dirty if isinstance(dirty, bool) else None,
    )


# -- consumers ---------------------------------------------------------------------------------


def find_consumers(version: ArtifactVersion, runs_root: Path, notes: list[str]) -> list[LineageRun]:
    """Every run under ``runs_root`` initialised from ``version``, newest first.

    A run consumed it when its ``init_from.version`` is ``version.ref`` or its
    ``init_from.sha256`` is one of the version's files (a pulled copy or a file taken from it).
    """
    from expctl.runs.index import init_source, refresh

    shas = {f.sha256 for f in version.files}
    # through the runs index (a column each for init_from's version and sha256): at 10⁵ runs
    # a scan of every summary.json took seconds; the index re-reads only what changed
    table, scan, fresh = refresh(runs_root)
    versions, digests = table.column("init_version"), table.column("init_sha256")
    found: list[LineageRun] = []
    for row, rel in enumerate(scan.paths):
        run = fresh.get(row)
        init = init_source(run.summary) if run is not None else None
        ref = init["init_version"] if init else versions[row]
        sha = init["init_sha256"] if init else digests[row]
        if ref == version.ref or sha in shas:
            found.append(lineage_run(Path(runs_root) / rel, notes))
    found.sort(key=lambda run: run.sort_key, reverse=True)
    return found


# -- one run's artifacts (`runs show`) ---------------------------------------------------------


def run_artifacts(run_dir: Path, summary: dict[str, Any] | None = None) -> RunArtifacts:
    """The versions the run at ``run_dir`` published and was initialised from, from its
    summary.json (``summary``: the one already read, e.g. ``RunInfo.summary``)."""
    result = RunArtifacts()
    if summary is None:
        summary, note = read_summary(run_dir)
        if summary is None:
            result.notes.append(note or "no summary.json")
            return result
    produced = summary.get("artifact")
    if isinstance(produced, str) and produced:
        result.produced.append(produced)
    init = summary.get("init_from")
    if isinstance(init, dict):
        version, file = init.get("version"), init.get("file")
        if isinstance(version, str) and version:
            result.consumed.append(version)
        elif isinstance(file, str) and file:
            result.consumed.append(file)
    return result

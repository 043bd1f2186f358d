"""Lightning DDP on 2 CPU processes (gloo): disjoint training sets per process, one saved model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import scgde

JOB = Path(__file__).with_name("_ddp_job.py")
#: a 2-process DDP job takes ~30 s on an idle 2-core machine; on a loaded one, many times that (no wall-clock checks)
DDP_TIMEOUT_S = 1200


def _kill_group(pgid: int) -> None:
    """SIGKILL every process left in the process group ``pgid`` (nothing when it is empty)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):  # no process left in the group
        pass


def _run_in_own_group(args: list[str], *, cwd: Path, timeout: float, env=None) -> subprocess.CompletedProcess:
    """Run ``args`` as the leader of a new session and process group; kill the whole group afterwards, always.

    DDP workers (Lightning's launcher, ``multiprocessing`` spawn) stay in the leader's group, so a job that times
    out, fails or is interrupted (Ctrl-C) leaves no orphaned worker behind. A timeout fails the test.
    """
    proc = subprocess.Popen(
        args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        stdout, stderr = proc.communicate()
        pytest.fail(
            f"{' '.join(map(str, args))} did not finish within {timeout:g} s; its process group was killed.\n"
            f"stderr (end): {stderr[-3000:]}"
        )
    finally:
        _kill_group(proc.pid)  # workers that outlived the leader, or everything on an error or interrupt
        if proc.poll() is None:
            proc.wait()
    return subprocess.CompletedProcess(args, proc.returncode, stdout, stderr)


def _run_job(out: Path, strategy: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # 2 workers x all cores: slower
    for attempt in range(2):
        done = _run_in_own_group(
            [sys.executable, str(JOB), str(out), strategy], cwd=out, timeout=DDP_TIMEOUT_S, env=env
        )
        # the free port Lightning picks for the process group can be taken by a concurrent job before it binds it
        if done.returncode == 0 or attempt or "address already in use" not in done.stderr.lower():
            break
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("strategy", ["ddp", "ddp_spawn"])
def test_two_process_ddp_training(tmp_path, strategy):
    _run_job(tmp_path, strategy)
    # the same data as the job (a seeded dataset): map every drawn cell back to its set
    adata = scgde.datasets.synthetic_mvn(n_sets=12, set_size=40, dim=3, seed=0)
    set_of_row = {row.tobytes(): name for row, name in zip(adata.X.astype(np.float32), adata.obs["set"].astype(str))}
    seen, shares = [], []
    for rank in (0, 1):
        share = json.loads((tmp_path / f"rank{rank}_share.json").read_text())
        assert share["world_size"] == 2
        cells = np.load(tmp_path / f"rank{rank}_cells.npy")
        seen.append({set_of_row[row.tobytes()] for row in cells.astype(np.float32)})
        shares.append(set(share["sets"]))
        assert seen[rank] <= shares[rank]  # each process drew only from its own share
    assert shares[0].isdisjoint(shares[1]) and seen[0].isdisjoint(seen[1])
    assert seen[0] and seen[1]
    # one model was written, by the global-zero process, and a 1-process load embeds the same
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["model.pt"]
    scgde.model.GDE.setup_anndata(adata, set_key="set")
    loaded = scgde.model.GDE.load(str(tmp_path / "model"), adata=adata)
    written = pd.read_csv(tmp_path / "embedding.csv", index_col=0)
    np.testing.assert_allclose(
        loaded.get_set_representation(progress_bar=False).to_numpy(), written.to_numpy(), atol=1e-5
    )
    # the process that saved holds the trained model: its loss history covers both epochs
    assert len(pd.read_csv(tmp_path / "train_loss.csv")) == 2


def _splitter_on_rank(rank: int, world: int, **kwargs):
    from types import SimpleNamespace

    from scgde.data import SetDataSplitter

    adata = scgde.datasets.synthetic_mvn(n_sets=10, set_size=20, dim=2, seed=0)
    scgde.model.GDE.setup_anndata(adata, set_key="set")
    model = scgde.model.GDE(adata, n_latent=2, n_hidden=8)
    dm = SetDataSplitter(model.adata_manager, batch_size=4, cells_per_set=5, seed=0, **kwargs)
    dm.trainer = SimpleNamespace(world_size=world, global_rank=rank)  # what Lightning sets before setup()
    dm.setup("fit")
    return dm


def test_each_process_draws_from_its_own_share():
    ranks = [_splitter_on_rank(r, 3) for r in range(3)]
    shares = [set(dm.rank_train_idx) for dm in ranks]
    assert set().union(*shares) == set(ranks[0].train_idx)
    assert all(a.isdisjoint(b) for i, a in enumerate(shares) for b in shares[i + 1 :])
    with pytest.raises(ValueError, match="at least 20 training sets"):
        _splitter_on_rank(0, 20)


def test_mixtures_keep_every_set_but_not_the_same_draws():
    zero, one = (_splitter_on_rank(r, 2, mixer="dirichlet") for r in (0, 1))
    assert set(zero.rank_train_idx) == set(zero.train_idx)  # mixtures need every training set
    assert not np.array_equal(zero._train[0]["X"].numpy(), one._train[0]["X"].numpy())


def test_several_processes_means_ddp():
    from scgde.model._train import several_processes

    assert several_processes("cpu", 2, None) and several_processes("cpu", [0, 1], 1)
    assert several_processes("cpu", 1, 2) and several_processes("cpu", "2", None)
    assert not several_processes("cpu", 1, None) and not several_processes("cpu", "auto", None)


def test_ddp_strategy_tolerates_unused_parameters():
    from scgde.model._train import ddp_strategy

    assert ddp_strategy("ddp") == "ddp_find_unused_parameters_true"
    assert ddp_strategy("ddp_spawn") == "ddp_spawn_find_unused_parameters_true"
    assert ddp_strategy("auto") == "auto"


def test_cluster_scripts_parse():
    """The SLURM and torchrun examples of docs/scale.md are valid bash (they are not run here)."""
    examples = Path(__file__).resolve().parents[1] / "docs" / "examples"
    scripts = sorted(examples.glob("*.sh"))
    assert [p.name for p in scripts] == ["train_slurm.sh", "train_torchrun.sh"]
    for script in scripts:
        assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0, script
        assert "scgde train" in script.read_text() or "-m scgde train" in script.read_text()


# ---------------------------------------------------------------------------------------------------------------------
# the job runner leaves no process behind
# ---------------------------------------------------------------------------------------------------------------------

#: a leader that starts a long-lived worker (detached from the pipes, as a DDP worker may be) and records both pids
_SPAWNER = """
import os, subprocess, sys, time
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
open(sys.argv[1], "w").write(f"{os.getpid()} {worker.pid}")
time.sleep(float(sys.argv[2]))
"""


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of the process group ``pgid``, from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(stat.parent.name))
    return members


def _gone(pgid: int, patience_s: float = 30) -> bool:
    deadline = time.monotonic() + patience_s  # killed orphans are reaped by init: give it a moment on a slow machine
    while _group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not _group_members(pgid)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc (Linux)")
@pytest.mark.parametrize("outcome", ["leader exits", "timeout"])
def test_job_runner_kills_the_whole_process_group(tmp_path, outcome):
    pids = tmp_path / "pids"
    if outcome == "leader exits":  # the worker outlives its leader: it is killed anyway
        done = _run_in_own_group([sys.executable, "-c", _SPAWNER, str(pids), "0"], cwd=tmp_path, timeout=DDP_TIMEOUT_S)
        assert done.returncode == 0, done.stderr
    else:  # the job hangs: the test fails and leaves nothing behind
        with pytest.raises(pytest.fail.Exception, match="did not finish within 5 s; its process group was killed"):
            _run_in_own_group([sys.executable, "-c", _SPAWNER, str(pids), "600"], cwd=tmp_path, timeout=5)
        if not pids.exists():  # too loaded a machine to start the leader in 5 s: nothing to check
            pytest.skip("the leader had not started within the 5 s timeout")
    leader, worker = map(int, pids.read_text().split())
    assert _gone(leader), f"processes of the job's group are still running: {_group_members(leader)} (worker {worker})"

"""Lightning DDP on 2 CPU processes (gloo): disjoint training sets per process, one saved model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import scgde

JOB = Path(__file__).with_name("_ddp_job.py")


def _run_job(out: Path, strategy: str) -> None:
    done = subprocess.run(
        [sys.executable, str(JOB), str(out), strategy], capture_output=True, text=True, timeout=300, cwd=out
    )
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

"""The command line: train, embed, generate; fast argument handling and one-line input errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import scgde
from scgde.cli import main

TINY = ["--n-latent", "4", "--max-epochs", "1", "--batches-per-epoch", "2", "--sets-per-batch", "4"]
TINY += ["--cells-per-set", "8"]


def _error_line(capsys) -> str:
    """The single ``scgde: error:`` line of a failed call (and no traceback)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("scgde: error:")]
    assert len(lines) == 1, err
    return lines[0]


def _fails(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    return _error_line(capsys)


@pytest.fixture(scope="module")
def gaussian_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("gaussian")
    scgde.datasets.synthetic_mvn(n_sets=8, set_size=30, dim=3).write_h5ad(root / "d.h5ad")
    main(["train", str(root / "d.h5ad"), "--set-key", "set", "--out", str(root / "run"), *TINY])
    return root


@pytest.fixture(scope="module")
def counts_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("counts")
    data = scgde.datasets.synthetic_poisson(n_sets=6, set_size=30, dim=4)
    data.layers["counts"] = data.X.copy()
    data.X = np.log1p(data.X)
    data.write_h5ad(root / "d.h5ad")
    argv = ["train", str(root / "d.h5ad"), "--set-key", "set", "--out", str(root / "run"), *TINY]
    main([*argv, "--layer", "counts", "--likelihood", "nb", "--generator", "cvae"])
    return root, data


@pytest.mark.parametrize("flag", ["--version", "--help"])
def test_version_and_help_import_no_torch(flag):
    code = (
        "import sys, scgde.cli\n"
        "try:\n"
        f"    scgde.cli.main([{flag!r}])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted({'torch', 'lightning', 'scvi', 'anndata'} & set(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert result.stdout.splitlines()[-1] == "[]"
    if flag == "--version":
        assert result.stdout.startswith(f"scgde {scgde.__version__}")


def test_package_attributes_load_lazily():
    assert {"model", "tl", "datasets"} <= set(dir(scgde))
    assert scgde.model.GDE.__name__ == "GDE" and callable(scgde.tl.embed_sets)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        scgde.nope  # noqa: B018


def test_train_embed_generate(gaussian_run):
    root = gaussian_run
    assert ad.read_h5ad(root / "run" / "sets.h5ad").n_obs == 8
    new = scgde.datasets.synthetic_mvn(n_sets=3, set_size=20, dim=3, seed=5)
    new.write_h5ad(root / "new.h5ad")
    main(["embed", str(root / "run" / "model"), str(root / "new.h5ad"), "--out", str(root / "emb")])
    assert ad.read_h5ad(root / "emb" / "sets.h5ad").n_obs == 3
    argv = ["generate", str(root / "run" / "model"), "--n-cells", "7", "--out", str(root / "gen.h5ad")]
    main([*argv, "--sets", "set_1", "set_2"])
    assert ad.read_h5ad(root / "gen.h5ad").shape == (14, 3)
    main([*argv[:-1], str(root / "all.h5ad")])  # default: every training set
    assert ad.read_h5ad(root / "all.h5ad").obs["set"].nunique() == 8


class _Stop(Exception):
    pass


def _spy_gde(monkeypatch, seen: dict):
    """Replace GDE by a spy recording the model's options (``seen["model"]``) and train()'s, then stopping."""

    class SpyGDE:
        @staticmethod
        def setup_anndata(adata, **kwargs):
            pass

        def __init__(self, adata, **kwargs):
            seen["model"] = kwargs

        def train(self, **kwargs):
            seen["train"] = kwargs
            raise _Stop

    monkeypatch.setattr(scgde.model, "GDE", SpyGDE)


def test_train_passes_only_given_options(tmp_path, monkeypatch):
    import torch

    scgde.datasets.synthetic_mvn(n_sets=4, set_size=10, dim=2).write_h5ad(tmp_path / "d.h5ad")
    seen = {}
    _spy_gde(monkeypatch, seen)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: seen.setdefault("threads", n))
    argv = ["train", str(tmp_path / "d.h5ad"), "--set-key", "set", "--out", str(tmp_path / "run")]
    with pytest.raises(_Stop):
        main(argv)
    # the model's and train()'s own defaults (generator included); torch's thread count untouched
    assert seen == {"model": {}, "train": {}}
    with pytest.raises(_Stop):
        main([*argv, "--generator", "flow", "--threads", "1"])
    assert seen == {"model": {"generator": "flow"}, "train": {}, "threads": 1}
    assert not (tmp_path / "run").exists()


def test_train_passes_device_options(tmp_path, monkeypatch):
    scgde.datasets.synthetic_mvn(n_sets=4, set_size=10, dim=2).write_h5ad(tmp_path / "d.h5ad")
    seen = {}
    _spy_gde(monkeypatch, seen)
    argv = ["train", str(tmp_path / "d.h5ad"), "--set-key", "set", "--out", str(tmp_path / "run")]
    with pytest.raises(_Stop):
        main([*argv, "--accelerator", "gpu", "--devices", "0,1", "--strategy", "ddp", "--num-nodes", "2"])
    assert seen["train"] == {"accelerator": "gpu", "devices": [0, 1], "strategy": "ddp", "num_nodes": 2}
    with pytest.raises(_Stop):
        main([*argv, "--devices", "4", "--precision", "bf16-mixed"])
    assert seen["train"] == {"devices": 4, "precision": "bf16-mixed"}


@pytest.mark.parametrize("devices", ["0", "two", "-2"])
def test_bad_devices_flag(devices, capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "d.h5ad", "--set-key", "set", "--out", "run", "--devices", devices])
    assert info.value.code == 2
    assert "--devices" in capsys.readouterr().err


def test_train_in_mixed_precision(tmp_path):
    scgde.datasets.synthetic_mvn(n_sets=8, set_size=30, dim=3).write_h5ad(tmp_path / "d.h5ad")
    main(["train", str(tmp_path / "d.h5ad"), "--set-key", "set", "--out", str(tmp_path / "run"), *TINY])
    main(
        [
            "train",
            str(tmp_path / "d.h5ad"),
            "--set-key",
            "set",
            "--out",
            str(tmp_path / "bf16"),
            *TINY,
            "--precision",
            "bf16-mixed",
        ]
    )
    full = pd.read_csv(tmp_path / "run" / "set_embeddings.csv", index_col=0)
    half = pd.read_csv(tmp_path / "bf16" / "set_embeddings.csv", index_col=0)
    assert np.isfinite(half.to_numpy()).all() and half.index.equals(full.index)
    # the same seed and steps: bf16 autocast changes the numbers a little, not the result
    assert np.corrcoef(full.to_numpy().ravel(), half.to_numpy().ravel())[0, 1] > 0.9


def test_train_on_two_processes(tmp_path):
    """``--devices 2 --strategy ddp`` relaunches the command per process; only the global-zero one writes."""
    scgde.datasets.synthetic_mvn(n_sets=8, set_size=30, dim=3).write_h5ad(tmp_path / "d.h5ad")
    argv = ["train", "d.h5ad", "--set-key", "set", "--out", "run", *TINY, "--batches-per-epoch", "4"]
    argv += ["--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"]
    done = subprocess.run(
        [sys.executable, "-m", "scgde", *argv], capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("[scgde] model saved") == 1
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "history.csv",
        "model",
        "set_embeddings.csv",
        "sets.h5ad",
    ]
    model = scgde.model.GDE.load(str(tmp_path / "run" / "model"), adata=ad.read_h5ad(tmp_path / "d.h5ad"))
    written = pd.read_csv(tmp_path / "run" / "set_embeddings.csv", index_col=0)
    np.testing.assert_allclose(model.get_set_representation(progress_bar=False).loc[written.index], written, atol=1e-5)


def test_embed_in_shards_from_a_backed_file(gaussian_run, tmp_path):
    """One job per shard (e.g. a SLURM array): the shards' sets are disjoint and embed as the whole does."""
    root = gaussian_run
    whole = pd.read_csv(root / "run" / "set_embeddings.csv", index_col=0)
    parts = []
    for i in range(3):
        out = tmp_path / f"shard{i}"
        main(
            [
                "embed",
                str(root / "run" / "model"),
                str(root / "d.h5ad"),
                "--out",
                str(out),
                "--backed",
                "--shard",
                f"{i}/3",
            ]
        )
        parts.append(pd.read_csv(out / "set_embeddings.csv", index_col=0))
    joined = pd.concat(parts)
    assert joined.index.is_unique and set(joined.index) == set(whole.index)
    np.testing.assert_allclose(joined.loc[whole.index].to_numpy(), whole.to_numpy(), atol=1e-5)


@pytest.mark.parametrize("shard", ["3/3", "a/b", "1"])
def test_bad_shard_flag(shard, capsys):
    with pytest.raises(SystemExit) as info:
        main(["embed", "m", "d.h5ad", "--out", "o", "--shard", shard])
    assert info.value.code == 2
    assert "--shard" in capsys.readouterr().err


def test_missing_and_corrupt_inputs(tmp_path, capsys):
    out = tmp_path / "out"
    line = _fails(capsys, ["train", str(tmp_path / "nope.h5ad"), "--set-key", "set", "--out", str(out)])
    assert "nope.h5ad does not exist" in line
    (tmp_path / "bad.h5ad").write_bytes(b"not an hdf5 file" * 10)
    line = _fails(capsys, ["train", str(tmp_path / "bad.h5ad"), "--set-key", "set", "--out", str(out)])
    assert "bad.h5ad could not be read as .h5ad" in line
    scgde.datasets.synthetic_mvn(n_sets=4, set_size=10, dim=2).write_h5ad(tmp_path / "d.h5ad")
    line = _fails(capsys, ["train", str(tmp_path / "d.h5ad"), "--set-key", "nope", "--out", str(out)])
    assert "'nope'" in line and "set" in line
    for argv in (
        ["embed", str(tmp_path / "no_model"), str(tmp_path / "d.h5ad"), "--out", str(out)],
        ["generate", str(tmp_path / "no_model"), "--out", str(out / "cells.h5ad")],
    ):
        line = _fails(capsys, argv)
        assert "model folder" in line and "does not exist" in line and "--data" not in line
    assert not out.exists()


def test_model_folder_problems(gaussian_run, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(gaussian_run / "run" / "model", model)
    out = tmp_path / "out"
    data = str(gaussian_run / "d.h5ad")
    (model / "scgde_run.json").write_text(json.dumps({"data": str(tmp_path / "moved.h5ad")}))
    line = _fails(capsys, ["embed", str(model), data, "--out", str(out)])
    assert "moved.h5ad" in line and "--model-data" in line
    (model / "scgde_run.json").unlink()
    line = _fails(capsys, ["embed", str(model), data, "--out", str(out)])
    assert "does not record" in line and "--model-data" in line
    assert "--data" in _fails(capsys, ["generate", str(model), "--out", str(out / "c.h5ad")])
    (model / "model.pt").unlink()
    assert "no model.pt" in _fails(capsys, ["embed", str(model), data, "--out", str(out), "--model-data", data])
    assert not out.exists()


def test_unknown_set_and_obs_key(gaussian_run, capsys):
    root, out = gaussian_run, gaussian_run / "failed"
    line = _fails(capsys, ["generate", str(root / "run" / "model"), "--sets", "nope", "--out", str(out / "c.h5ad")])
    assert "nope" in line and "set_1" in line  # names the bad set and some valid ones
    line = _fails(
        capsys, ["embed", str(root / "run" / "model"), str(root / "d.h5ad"), "--out", str(out), "--set-key", "nope"]
    )
    assert "'nope'" in line
    assert not out.exists()


def test_count_model_refuses_log_normalised_data(counts_run, tmp_path, capsys):
    root, data = counts_run
    model = str(root / "run" / "model")
    logged = data.copy()
    logged.layers["counts"] = logged.X.copy()  # log1p values where the model expects counts
    logged.write_h5ad(tmp_path / "log.h5ad")
    line = _fails(capsys, ["embed", model, str(tmp_path / "log.h5ad"), "--out", str(tmp_path / "e1")])
    assert "layers['counts']" in line and "raw counts" in line
    del logged.layers["counts"]
    logged.write_h5ad(tmp_path / "nolayer.h5ad")
    line = _fails(capsys, ["embed", model, str(tmp_path / "nolayer.h5ad"), "--out", str(tmp_path / "e2")])
    assert "'counts'" in line and "lacks" in line
    assert not (tmp_path / "e1").exists() and not (tmp_path / "e2").exists()
    main(["embed", model, str(root / "d.h5ad"), "--out", str(tmp_path / "ok")])  # real counts are accepted
    assert ad.read_h5ad(tmp_path / "ok" / "sets.h5ad").n_obs == 6

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
            # the CLI's own callback (plan, time estimate, Ctrl-C) is no training option of the user's
            assert [type(c).__name__ for c in kwargs.pop("callbacks")] == ["TrainMonitor"]
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


# --------------------------------------------------------------------------- issue 28: refusals, limits, plan, Ctrl-C


def _tiny(path, n_sets=4, set_size=10, dim=2, **kwargs):
    data = scgde.datasets.synthetic_mvn(n_sets=n_sets, set_size=set_size, dim=dim, **kwargs)
    data.write_h5ad(path)
    return data


def test_cli_choices_and_defaults_match_the_model():
    """The CLI's lists (kept without importing torch) are the model's own choices and defaults."""
    import inspect
    from typing import get_args

    from scgde import _cli_checks as checks
    from scgde.model import _gde
    from scgde.nn._generators import GENERATORS

    assert set(checks.ENCODERS) == set(get_args(_gde.Encoder))
    assert set(checks.GENERATORS) == set(get_args(_gde.Generator)) == set(GENERATORS)
    assert set(checks.LIKELIHOODS) == set(get_args(_gde.Likelihood))
    assert set(checks.COUNT_GENERATORS) == {name for name, cls in GENERATORS.items() if cls.supports_counts}
    train = inspect.signature(scgde.model.GDE.train).parameters
    assert {k: train[k].default for k in ("sets_per_batch", "cells_per_set")} == {
        k: checks.TRAIN_DEFAULTS[k] for k in ("sets_per_batch", "cells_per_set")
    }
    assert (
        inspect.signature(scgde.model.GDE.__init__).parameters["n_latent"].default == checks.TRAIN_DEFAULTS["n_latent"]
    )


@pytest.mark.parametrize(("flag", "value"), [("--generator", "flw"), ("--encoder", "resnt"), ("--precision", "8")])
def test_unknown_choice_is_refused_by_the_parser(flag, value, capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "no_such.h5ad", "--set-key", "set", "--out", "run", flag, value])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert flag in err and repr(value) in err and "choose from" in err


def test_names_are_refused_before_the_matrix_is_read_and_torch_imported(tmp_path):
    """A wrong layer, set key, batch key or generator for counts: exit 2 with no matrix read and no torch."""
    data = _tiny(tmp_path / "d.h5ad")
    data.obs["one"] = "a"
    data.write_h5ad(tmp_path / "d.h5ad")
    base = ["train", str(tmp_path / "d.h5ad"), "--out", str(tmp_path / "run")]
    cases = [
        ([*base, "--set-key", "set", "--layer", "counts"], "--layer 'counts'"),
        ([*base, "--set-key", "sett"], "--set-key 'sett'"),
        ([*base, "--set-key", "set", "--batch-key", "donor"], "--batch-key 'donor'"),
        ([*base, "--set-key", "one"], "defines 1 set"),
        ([*base, "--set-key", "set", "--likelihood", "nb", "--generator", "flow"], "--generator cvae"),
    ]
    code = (
        "import json, sys\n"
        "import anndata\n"
        "def no_read(*args, **kwargs):\n"
        "    raise RuntimeError('the matrix was read')\n"
        "anndata.read_h5ad = no_read\n"
        "import scgde.cli\n"
        "results = []\n"
        f"for argv, _ in {cases!r}:\n"
        "    try:\n"
        "        scgde.cli.main(argv)\n"
        "    except SystemExit as stop:\n"
        "        results.append(stop.code)\n"
        "print(json.dumps({'codes': results, 'torch': 'torch' in sys.modules}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result == {"codes": [2] * len(cases), "torch": False}
    lines = [line for line in done.stderr.splitlines() if line.startswith("scgde: error:")]
    assert len(lines) == len(cases), done.stderr
    for line, (_, expected) in zip(lines, cases, strict=True):
        assert expected in line
    assert not (tmp_path / "run").exists()


def test_cells_per_set_is_clipped_to_the_largest_set_with_a_note(tmp_path, monkeypatch, capsys):
    _tiny(tmp_path / "d.h5ad", n_sets=4, set_size=10)
    seen = {}
    _spy_gde(monkeypatch, seen)
    argv = ["train", str(tmp_path / "d.h5ad"), "--set-key", "set", "--out", str(tmp_path / "run")]
    with pytest.raises(_Stop):
        main([*argv, "--cells-per-set", "1000000", "--sets-per-batch", "9"])
    assert seen["train"] == {"cells_per_set": 10, "sets_per_batch": 9}
    out = capsys.readouterr().out
    assert "--cells-per-set 1,000,000 is more than the largest set (10 cells): using 10" in out
    assert "--sets-per-batch 9 is more than the 4 sets" in out


def test_a_step_larger_than_memory_is_refused_before_reading(tmp_path, monkeypatch, capsys):
    import scgde.cli

    _tiny(tmp_path / "d.h5ad", n_sets=4, set_size=10)
    seen = {}
    _spy_gde(monkeypatch, seen)
    monkeypatch.setattr(scgde.cli, "available_memory", lambda: 100_000_000)
    monkeypatch.setattr(scgde.cli, "gpu_present", lambda: False)
    monkeypatch.setattr(scgde.cli, "_read", lambda *a, **k: pytest.fail("the data were read"))
    argv = ["train", str(tmp_path / "d.h5ad"), "--set-key", "set", "--out", str(tmp_path / "run")]
    line = _fails(capsys, [*argv, "--sets-per-batch", "1000000"])
    assert "1,000,000 sets x 100 cells x 2 genes" in line and "--sets-per-batch" in line and "--cells-per-set" in line
    assert "(80% of the 100 MB available)" in line and "at most" in line
    line = _fails(capsys, [*argv, "--n-latent", "1000000"])
    assert "--n-latent" in line
    assert seen == {} and not (tmp_path / "run").exists()


def test_the_default_batch_is_bounded_by_memory_with_a_note(tmp_path, monkeypatch, capsys):
    """No --sets-per-batch: a default step too large for the memory takes fewer sets (said), not the machine down."""
    import scgde.cli

    _tiny(tmp_path / "d.h5ad", n_sets=4, set_size=10)
    seen = {}
    _spy_gde(monkeypatch, seen)
    monkeypatch.setattr(scgde.cli, "available_memory", lambda: 1_000_000)
    monkeypatch.setattr(scgde.cli, "gpu_present", lambda: False)
    with pytest.raises(_Stop):
        main(["train", str(tmp_path / "d.h5ad"), "--set-key", "set", "--out", str(tmp_path / "run")])
    # 100 cells x (8 x 2 genes + 8 x 16 latent) x 4 bytes = 57.6 KB a set; 80% of 1 MB, less the data, fits 13
    assert seen["train"] == {"sets_per_batch": 13}
    out = capsys.readouterr().out
    assert "a step of the default 64 sets x 100 cells x 2 genes" in out and "using --sets-per-batch 13" in out


def test_seed_and_threads_are_checked(tmp_path, monkeypatch, capsys):
    import os

    import torch

    for seed in ("-1", str(2**32), "x"):
        with pytest.raises(SystemExit) as info:
            main(["train", "d.h5ad", "--set-key", "set", "--out", "run", "--seed", seed])
        assert info.value.code == 2 and "--seed" in capsys.readouterr().err
    _tiny(tmp_path / "d.h5ad")
    seen = {}
    _spy_gde(monkeypatch, seen)
    monkeypatch.setattr(torch, "set_num_threads", lambda n: seen.setdefault("threads", n))
    with pytest.raises(_Stop):
        main(["train", str(tmp_path / "d.h5ad"), "--set-key", "set", "--out", str(tmp_path / "r"), "--threads", "4096"])
    assert seen["threads"] == os.cpu_count()
    assert f"--threads 4096 is more than the {os.cpu_count()} CPU cores" in capsys.readouterr().out


def test_api_errors_are_reported_with_flags(tmp_path, monkeypatch, capsys):
    from scgde._cli_checks import as_flags

    text = as_flags("layer='x' is not in adata.layers (available: []); pass layer=None to use adata.X.")
    assert text == "--layer 'x' is not in adata.layers (available: []); omit --layer to use adata.X."
    assert as_flags("set_key=['a'] defines 1 set") == "--set-key ['a'] defines 1 set"
    assert as_flags("sets_per_batch must be >= 1, got 0.") == "--sets-per-batch must be >= 1, got 0."
    assert as_flags("generate(n_cells=5) and batch=None") == "generate(--n-cells 5) and no --batch"
    assert as_flags("file /runs/n_cells/cells_per_set.h5ad") == "file /runs/n_cells/cells_per_set.h5ad"
    _tiny(tmp_path / "d.h5ad")
    seen = {}
    _spy_gde(monkeypatch, seen)

    def setup_anndata(adata, **kwargs):
        raise KeyError("batch_key='b' is not a column of adata.obs; pass batch_key=None.")

    monkeypatch.setattr(scgde.model.GDE, "setup_anndata", staticmethod(setup_anndata))
    line = _fails(capsys, ["train", str(tmp_path / "d.h5ad"), "--set-key", "set", "--out", str(tmp_path / "r")])
    assert line == "scgde: error: --batch-key 'b' is not a column of adata.obs; omit --batch-key."


def test_train_refuses_to_overwrite_a_run(gaussian_run, monkeypatch, capsys):
    root = gaussian_run
    before = {p.name: p.stat().st_mtime_ns for p in (root / "run").iterdir()}
    argv = ["train", str(root / "d.h5ad"), "--set-key", "set", "--out", str(root / "run"), *TINY]
    line = _fails(capsys, argv)
    assert "--out would overwrite" in line and "--overwrite" in line
    assert {p.name: p.stat().st_mtime_ns for p in (root / "run").iterdir()} == before
    (root / "a_file").write_text("x")
    into_file = ["train", str(root / "d.h5ad"), "--set-key", "set", "--out", str(root / "a_file"), *TINY]
    assert "is a file" in _fails(capsys, into_file)
    seen = {}
    _spy_gde(monkeypatch, seen)
    with pytest.raises(_Stop):  # --overwrite: the training is reached
        main([*argv, "--overwrite"])


def test_embed_and_generate_refuse_to_overwrite(gaussian_run, tmp_path, capsys):
    root = gaussian_run
    model, data = str(root / "run" / "model"), str(root / "d.h5ad")
    main(["embed", model, data, "--out", str(tmp_path / "emb")])
    line = _fails(capsys, ["embed", model, data, "--out", str(tmp_path / "emb")])
    assert "--overwrite" in line and "sets.h5ad" in line
    main(["embed", model, data, "--out", str(tmp_path / "emb"), "--overwrite"])
    gen = ["generate", model, "--n-cells", "3", "--sets", "set_1", "--out", str(tmp_path / "g.h5ad")]
    main(gen)
    written = (tmp_path / "g.h5ad").stat().st_mtime_ns
    assert "--overwrite" in _fails(capsys, gen)
    assert (tmp_path / "g.h5ad").stat().st_mtime_ns == written
    main([*gen, "--overwrite"])
    assert ad.read_h5ad(tmp_path / "g.h5ad").n_obs == 3


def test_generate_refuses_more_cells_than_memory(gaussian_run, tmp_path, monkeypatch, capsys):
    import scgde.cli

    model = str(root_model := gaussian_run / "run" / "model")
    monkeypatch.setattr(scgde.cli, "available_memory", lambda: 1_000_000_000)
    monkeypatch.setattr(scgde.model.GDE, "generate", lambda *a, **k: pytest.fail("generate was called"))
    out = str(tmp_path / "g.h5ad")
    with monkeypatch.context() as m:  # the cells alone are too many: refused before the model is loaded
        m.setattr(scgde.cli, "_load_model", lambda *a: pytest.fail("the model was loaded"))
        line = _fails(capsys, ["generate", model, "--n-cells", "100000000", "--out", out])
        assert "--n-cells 100,000,000 x 8 sets (every training set; choose some with --sets) x 3 genes" in line
        assert "9.6 GB" in line and "--sets" in line and "at most about" in line
        line = _fails(capsys, ["generate", model, "--n-cells", "1000000000", "--sets", "set_1", "--out", out])
        assert "x 1 set (from --sets)" in line
    # 120 MB of cells fit, but one network call on 10 million cells does not
    line = _fails(capsys, ["generate", model, "--n-cells", "10000000", "--sets", "set_1", "--out", out])
    assert "--n-cells 10,000,000" in line and "while generating" in line
    assert root_model.is_dir() and not (tmp_path / "g.h5ad").exists()


def test_plan_before_and_summary_after_training(tmp_path, capsys):
    data = _tiny(tmp_path / "d.h5ad", n_sets=8, set_size=30, dim=3)
    data.obs["set"] = data.obs["set"].astype(object)
    data.obs.iloc[:5, data.obs.columns.get_loc("set")] = None  # 5 cells without a set
    data.write_h5ad(tmp_path / "d.h5ad")
    main(["train", str(tmp_path / "d.h5ad"), "--set-key", "set", "--out", str(tmp_path / "run"), *TINY])
    out = capsys.readouterr().out
    assert "[scgde] training: 235 cells in 8 sets (set) (5 cells without a set label are left out), 3 genes" in out
    assert "generator flow, likelihood gaussian, n_latent 4" in out
    assert "[scgde] plan: 2 optimiser steps (1 epoch x 2 batches of 4 sets x 8 cells), as --max-epochs asks" in out
    summary = next(line for line in out.splitlines() if line.startswith("[scgde] done:"))
    assert "2 of 2 optimiser steps" in summary and "final loss: train" in summary and "validation" in summary
    assert str(tmp_path / "run" / "set_embeddings.csv") in summary
    assert out.index("[scgde] plan:") < out.index("[scgde] done:")


def test_plan_gives_the_models_default_steps(tmp_path, monkeypatch, capsys):
    """Without --max-epochs the plan states the steps the trainer will take and that the model's rule chose them."""
    from scgde import _cli_train

    _tiny(tmp_path / "d.h5ad", n_sets=8, set_size=30, dim=3)
    seen = {}
    start = _cli_train.TrainMonitor.on_train_start

    def start_then_stop(self, trainer, pl_module):
        start(self, trainer, pl_module)
        seen["steps"] = trainer.max_epochs * trainer.num_training_batches
        raise _Stop

    monkeypatch.setattr(_cli_train.TrainMonitor, "on_train_start", start_then_stop)
    argv = ["train", str(tmp_path / "d.h5ad"), "--set-key", "set", "--out", str(tmp_path / "run")]
    with pytest.raises(_Stop):
        main([*argv, "--batches-per-epoch", "7", "--n-latent", "4"])
    out = capsys.readouterr().out
    assert f"[scgde] plan: {seen['steps']:,} optimiser steps ({seen['steps'] // 7:,} epochs x 7 batches" in out
    assert "the model's default for 216 training cells" in out and "--max-epochs sets another length" in out
    assert not (tmp_path / "run").exists()


def test_interrupt_before_training_exits_130(tmp_path, monkeypatch, capsys):
    _tiny(tmp_path / "d.h5ad")

    class Interrupting:
        @staticmethod
        def setup_anndata(adata, **kwargs):
            raise KeyboardInterrupt

    monkeypatch.setattr(scgde.model, "GDE", Interrupting)
    try:
        main(["train", str(tmp_path / "d.h5ad"), "--set-key", "set", "--out", str(tmp_path / "run")])
    except SystemExit as stop:
        assert stop.code == 130
    except KeyboardInterrupt:  # caught here: escaping, it would stop the whole test session
        pytest.fail("the KeyboardInterrupt escaped main() as a traceback")
    else:
        pytest.fail("main() returned")
    assert "interrupted" in capsys.readouterr().err and not (tmp_path / "run").exists()


def _train_then_ctrl_c(tmp_path, *extra: str) -> tuple[int, str, str]:
    """Run ``scgde train`` in its own process group, send SIGINT (as Ctrl-C does) once the plan is printed."""
    import contextlib
    import os
    import queue
    import signal
    import threading
    import time

    argv = ["train", "d.h5ad", "--set-key", "set", "--out", "run", *TINY[:2], "--max-epochs", "100000"]
    argv += ["--batches-per-epoch", "2", "--sets-per-batch", "4", "--cells-per-set", "8", *extra]
    err_path = tmp_path / "stderr.txt"
    with open(err_path, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "scgde", *argv],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            start_new_session=True,
        )
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True)
    reader.start()
    out = []
    deadline = time.monotonic() + 300  # generous: a loaded machine imports torch slowly
    try:
        while not any(line.startswith("[scgde] training:") for line in out):
            if time.monotonic() > deadline or (proc.poll() is not None and lines.empty()):
                pytest.fail(f"no training plan on stdout:\n{''.join(out)[-2000:]}\n{err_path.read_text()[-2000:]}")
            with contextlib.suppress(queue.Empty):
                out.append(lines.get(timeout=1))
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    reader.join(timeout=60)  # the rest of stdout, up to its end
    while not lines.empty():
        out.append(lines.get())
    return code, "".join(out), err_path.read_text()


@pytest.mark.parametrize("save", [False, True])
def test_ctrl_c_stops_training_cleanly(tmp_path, save):
    _tiny(tmp_path / "d.h5ad", n_sets=8, set_size=30, dim=3)
    code, out, err = _train_then_ctrl_c(tmp_path, *(["--save-on-interrupt"] if save else []))
    assert code == 130, err[-3000:]
    assert "Traceback" not in err and "Exception raised during training" not in err
    last = [line for line in err.splitlines() if line.startswith("scgde:")]
    assert len(last) == 1 and "training was interrupted after" in last[0]
    if save:
        assert "saved in run" in last[0] and "[scgde] interrupted:" in out
        assert (tmp_path / "run" / "model" / "model.pt").is_file()
        assert len(pd.read_csv(tmp_path / "run" / "set_embeddings.csv", index_col=0)) == 8
    else:
        assert "nothing was saved" in last[0] and "--save-on-interrupt" in last[0]
        assert not (tmp_path / "run").exists()

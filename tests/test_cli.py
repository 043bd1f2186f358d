"""The command line: demo, train, embed, generate."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np

import scgde
from scgde.cli import main


def test_demo_quick(tmp_path):
    main(["demo", "--quick", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "report.json").read_text())
    assert np.isfinite(report["spearman_latent_vs_composition"])
    assert (tmp_path / "set_umap.png").stat().st_size > 1000
    sets = ad.read_h5ad(tmp_path / "sets.h5ad")
    assert "X_umap" in sets.obsm and "dominant_type" in sets.obs


def test_train_embed_generate(tmp_path):
    data = scgde.datasets.synthetic_mvn(n_sets=8, set_size=30, dim=3)
    data.write_h5ad(tmp_path / "d.h5ad")
    main(
        [
            "train",
            str(tmp_path / "d.h5ad"),
            "--set-key",
            "set",
            "--out",
            str(tmp_path / "run"),
            "--n-latent",
            "4",
            "--max-epochs",
            "1",
            "--sets-per-batch",
            "4",
            "--cells-per-set",
            "8",
        ]
    )
    assert ad.read_h5ad(tmp_path / "run" / "sets.h5ad").n_obs == 8
    new = scgde.datasets.synthetic_mvn(n_sets=3, set_size=20, dim=3, seed=5)
    new.write_h5ad(tmp_path / "new.h5ad")
    main(["embed", str(tmp_path / "run" / "model"), str(tmp_path / "new.h5ad"), "--out", str(tmp_path / "emb")])
    assert ad.read_h5ad(tmp_path / "emb" / "sets.h5ad").n_obs == 3
    main(
        [
            "generate",
            str(tmp_path / "run" / "model"),
            "--sets",
            "set_1",
            "set_2",
            "--n-cells",
            "7",
            "--out",
            str(tmp_path / "gen.h5ad"),
        ]
    )
    assert ad.read_h5ad(tmp_path / "gen.h5ad").shape == (14, 3)

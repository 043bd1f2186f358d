"""What every peer script hands back to ``python -m benchmarks.celleval --peers DIR``, in one place.

Imported by the peer scripts, which run as files in the peers' own environments (``python
benchmarks/peers/<peer>_kang.py``, so this folder is on ``sys.path``); it needs only anndata, numpy and pandas.
"""

from __future__ import annotations

import json
from pathlib import Path

#: the Kang 2018 held-out cell types, as ``benchmarks/_kang.py`` names them
CELL_TYPES = ["CD4T", "CD14+Mono", "B", "CD8T", "NK", "FCGR3A+Mono", "Dendritic"]


def write_prediction(x, fold: str, genes: list[str], control, true, out: str | Path, prefix: str, **info) -> dict:
    """``OUT/<fold>.h5ad`` (the predicted stimulated cells) and ``OUT/<fold>.json`` (``info`` and sanity checks).

    The checks are for the record only (the scores are cell-eval's): the value range, and the correlation of the
    predicted and measured mean (and mean change from the type's control cells).
    """
    import anndata as ad
    import numpy as np
    import pandas as pd

    n = len(x)
    result = ad.AnnData(
        X=x,
        obs=pd.DataFrame(
            {"cell_type": pd.Categorical([fold] * n), "condition": pd.Categorical(["stimulated"] * n)},
            index=[f"{prefix}_{i}" for i in range(n)],
        ),
        var=pd.DataFrame(index=genes),
    )
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    result.write_h5ad(out_dir / f"{fold}.h5ad")
    c_mean = np.asarray(control.X, dtype=np.float64).mean(0)
    t_mean = np.asarray(true.X, dtype=np.float64).mean(0)
    p_mean = np.asarray(x, dtype=np.float64).mean(0)
    summary = {
        "fold": fold,
        "n_pred": int(n),
        "n_genes": len(genes),
        **info,
        "x_min": float(np.min(x)),
        "x_max": float(np.max(x)),
        "true_max": float(np.asarray(true.X).max()),
        "r_mean": float(np.corrcoef(p_mean, t_mean)[0, 1]),
        "r_delta": float(np.corrcoef(p_mean - c_mean, t_mean - c_mean)[0, 1]),
    }
    (out_dir / f"{fold}.json").write_text(json.dumps(summary, indent=1))
    return summary

"""Synthetic families with ground truth, the demo sets, and loaders for real datasets."""

from ._digits import digits_mixtures, digits_split_indices
from ._downloads import ChecksumError, kang2018, norman2019, replogle2022_k562_essential, weinreb2020
from ._gpra import gpra2020, read_promoter_table
from ._images import digit_image_sets, nuclei_crops, pooled_screen
from ._multimodal import multimodal_sets
from ._pbmc import pbmc_composition_sets
from ._perturbation import synthetic_perturbseq, synthetic_perturbseq_truth
from ._sequences import dna_patterns, dna_simplex_sources, synthetic_dna_simplex
from ._spatial import bdtnp_embryo, intestine_zonation, niche_tissue
from ._supervision import synthetic_donors
from ._synthetic import simplex_grid, synthetic_gmm, synthetic_multinomial, synthetic_mvn, synthetic_poisson
from ._viral import nextstrain_spike_sets, read_gisaid_spike, spike_variant_sets

__all__ = [
    "ChecksumError",
    "bdtnp_embryo",
    "digit_image_sets",
    "digits_mixtures",
    "dna_patterns",
    "dna_simplex_sources",
    "digits_split_indices",
    "gpra2020",
    "intestine_zonation",
    "kang2018",
    "multimodal_sets",
    "nextstrain_spike_sets",
    "niche_tissue",
    "norman2019",
    "nuclei_crops",
    "pbmc_composition_sets",
    "pooled_screen",
    "read_gisaid_spike",
    "read_promoter_table",
    "replogle2022_k562_essential",
    "simplex_grid",
    "spike_variant_sets",
    "synthetic_dna_simplex",
    "synthetic_donors",
    "synthetic_gmm",
    "synthetic_multinomial",
    "synthetic_mvn",
    "synthetic_perturbseq",
    "synthetic_perturbseq_truth",
    "synthetic_poisson",
    "weinreb2020",
]

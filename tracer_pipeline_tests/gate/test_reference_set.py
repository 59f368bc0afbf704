"""ReferenceSet.label_similarity: the nearest prototype of each label, whatever the layout."""

from __future__ import annotations

import numpy as np

from tracer_pipeline.gate.features import ReferenceSet, unit_rows


def test_label_similarity_is_the_best_cosine_over_each_labels_prototypes():
    rng = np.random.default_rng(0)
    n_labels, per_label, dimension = 5, 3, 8
    prototypes = unit_rows(rng.normal(size=(n_labels * per_label, dimension)))
    present = np.array([True, True, False, True, True])
    reference = ReferenceSet(prototypes, per_label, present, np.array([4, 3, 0, 9, 1]))
    X_unit = unit_rows(rng.normal(size=(6, dimension)))

    similarity = reference.label_similarity(X_unit)

    for row in range(6):
        for label in range(n_labels):
            block = prototypes[label * per_label : (label + 1) * per_label]
            expected = (block @ X_unit[row]).max() if present[label] else -1.0
            assert np.isclose(similarity[row, label], expected, atol=1e-6)

"""Pareto fronts, their knee and their hypervolume (all objectives minimised: a metric where
more is better, magnitude_kept, comes negated, explore.search.objective_values)."""
from __future__ import annotations

import numpy as np


def dominates(a, b) -> bool:
    """Returns True when ``a`` is no worse than ``b`` everywhere and better somewhere."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def front_indices(vectors) -> list[int]:
    """Returns the indices of the non-dominated vectors, in input order (equal vectors all kept)."""
    values = np.asarray(vectors, dtype=float)
    if len(values) == 0:
        return []
    kept = []
    order = np.lexsort(values.T[::-1])          # by first objective, then the next ...
    best: list[np.ndarray] = []
    for index in order:
        vector = values[index]
        if any(np.all(other <= vector) and np.any(other < vector) for other in best):
            continue
        best.append(vector)
        kept.append(int(index))
    return sorted(kept)


def knee_index(vectors) -> int:
    """Returns the index of the front point nearest the ideal point after scaling each
    objective to [0, 1] over the front (the usual 'closest to utopia' knee)."""
    values = np.asarray(vectors, dtype=float)
    low, high = values.min(axis=0), values.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    scaled = (values - low) / span
    return int(np.argmin(np.sqrt((scaled ** 2).sum(axis=1))))


def hypervolume(vectors, reference) -> float:
    """Returns the exact volume dominated by ``vectors`` and bounded by ``reference``.

    Slices along the last objective (HSO, While et al. 2006): O(n^(d-1) log n),
    ample for the fronts of a design space. Points not better than the reference
    in every objective add nothing."""
    points = np.asarray(vectors, dtype=float).reshape(-1, len(reference))
    reference = np.asarray(reference, dtype=float)
    points = points[np.all(points < reference, axis=1)]
    if len(points) == 0:
        return 0.0
    if points.shape[1] == 1:
        return float(reference[0] - points[:, 0].min())
    if points.shape[1] == 2:
        ordered = points[np.argsort(points[:, 0], kind="stable")]
        volume, best_y = 0.0, reference[1]
        for x, y in ordered:
            if y < best_y:
                volume += (reference[0] - x) * (best_y - y)
                best_y = y
        return float(volume)
    ordered = points[np.argsort(points[:, -1], kind="stable")]
    volume = 0.0
    for index in range(len(ordered)):
        top = ordered[index + 1, -1] if index + 1 < len(ordered) else reference[-1]
        depth = top - ordered[index, -1]
        if depth > 0:
            volume += depth * hypervolume(ordered[:index + 1, :-1], reference[:-1])
    return float(volume)


def normalised_hypervolume_ratio(front, exact_front) -> float:
    """Returns hv(front) / hv(exact_front) with both scaled by the exact front's ideal and
    nadir points and the reference at 1.1 x the scaled nadir."""
    exact = np.asarray(exact_front, dtype=float)
    low, high = exact.min(axis=0), exact.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    reference = np.full(exact.shape[1], 1.1)
    exact_volume = hypervolume((exact - low) / span, reference)
    found = (np.asarray(front, dtype=float) - low) / span
    return hypervolume(found, reference) / exact_volume if exact_volume else 1.0

"""Embedding metrics on unit-norm rows: mean pairwise cosine similarity and the Vendi score (the
formulas are in the package docstring), and the row helpers the other metrics share."""

from __future__ import annotations

import numpy as np

# ---------------------------------------------------------------------------
# helpers


def normalize_rows(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (all-zero rows stay zero), as float32."""
    X = np.asarray(X, dtype=np.float32)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1.0)


def _sum64(X: np.ndarray, chunk: int = 65536) -> np.ndarray:
    out = np.zeros(X.shape[1], dtype=np.float64)
    for a in range(0, len(X), chunk):
        out += X[a : a + chunk].sum(axis=0, dtype=np.float64)
    return out


def sq_norms(X: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", X, X, dtype=np.float64)


def sample_indices(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted uniform sample of min(n, k) distinct row indices."""
    if k >= n:
        return np.arange(n)
    return np.sort(rng.choice(n, size=k, replace=False))


# ---------------------------------------------------------------------------
# embedding metrics


def mean_pairwise_cosine(X: np.ndarray) -> float:
    """Mean of x_i·x_j over ordered pairs i≠j, exact in O(n·d) (see module docstring)."""
    n = len(X)
    if n < 2:
        return float("nan")
    s = _sum64(X)
    return float((s @ s - sq_norms(X).sum()) / (n * (n - 1)))


def second_moment(X: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """C = XᵀX / n (d×d, float64), accumulated in chunks."""
    d = X.shape[1]
    C = np.zeros((d, d), dtype=np.float64)
    for a in range(0, len(X), chunk):
        B = np.asarray(X[a : a + chunk], dtype=np.float64)
        C += B.T @ B
    return C / max(len(X), 1)


def entropy_exp(eigs: np.ndarray) -> float:
    lam = np.clip(np.asarray(eigs, dtype=np.float64), 0.0, None)
    total = lam.sum()
    if total <= 0:
        return float("nan")
    lam = lam / total
    lam = lam[lam > 1e-15]
    return float(np.exp(-(lam * np.log(lam)).sum()))


def vendi_score(X: np.ndarray) -> float:
    """Vendi score with the cosine kernel, via the d×d dual (see module docstring)."""
    if len(X) == 0:
        return float("nan")
    return entropy_exp(np.linalg.eigvalsh(second_moment(X)))


def vendi_at_k(X: np.ndarray, k: int, rng: np.random.Generator, repeats: int = 5) -> dict[str, float]:
    """Vendi score of uniform samples of k rows: mean and standard deviation over ``repeats``."""
    n = len(X)
    if n <= k:
        return {"value": vendi_score(X), "std": 0.0, "k": n, "repeats": 1}
    vals = [vendi_score(X[sample_indices(n, k, rng)]) for _ in range(repeats)]
    return {"value": float(np.mean(vals)), "std": float(np.std(vals)), "k": k, "repeats": repeats}

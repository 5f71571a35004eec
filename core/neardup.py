"""Semantic near-duplicate detection for generated rows, in bounded memory at a million rows.

A new row is a near-duplicate when the cosine between its sentence embedding and that of an
already accepted row is at least a threshold (``DEFAULT_NEAR_DUP_COSINE``, measured on GSM8K
train by benchmarks/neardup_threshold.py; figures in benchmarks/README.md).

``NearDuplicateIndex`` answers "the highest cosine to anything accepted so far" and admits rows
below the threshold:

* Exact while small: the first ``exact_limit`` accepted vectors (4,096, or ten per IVF cell, whichever is
  more) sit in a float32 buffer and every query is a matrix product over all of them.
* Then approximate (``INDEX_KIND``, "ivf" by default): they train an IVF of about sqrt(expected rows) / 2
  cells (``ivf_cells``) whose cells hold 4-bit product-quantiser fast-scan codes (24 bytes a row at 384
  dimensions); a query scans ``nprobe`` cells (8) and its ``candidates`` best (8) are re-ranked with their
  exact float16 vectors in faiss (``IndexRefine`` over an ``IndexScalarQuantizer``). Newer rows wait in the
  same exact buffer until ``flush_rows`` of them (256) have gathered, when they join the index in one add,
  so the newest rows are always compared exactly. The codes only choose what is re-ranked, so a decision is
  an exact float16 cosine; recall of near-duplicates against brute force is measured on GSM8K
  (benchmarks/dedup_recall_gsm8k.py: 1.0000 at nprobe 4, 8 and 16) and on planted near-copies at 100k and
  1M rows (benchmarks/bench_dedup.py). "hnsw" (a faiss HNSW graph over float16 vectors, connectivity 16,
  expansion_add 64, expansion_search growing with the graph: ``auto_expansion_search``) is kept for
  comparison (benchmarks/README.md, "Semantic dedup" and "The IVF stage").
* Rows of one ``admit`` batch are compared with each other exactly (a Gram matrix, ``ADMIT_CHUNK`` rows at
  most): a row is compared with the rows before it in the batch that were kept.

faiss runs on one OpenMP thread by default (``threads=1``): on two shared cores a second thread made 5-row
queries about 10x slower and adds about 3x slower (OpenMP's waiting threads compete with everything else).
A large run's index lives in a process of its own (core/neardup_process.py), so it uses the second core.
The library is faiss (faiss-cpu): usearch, tried first, links its own C++ runtime, and llama.cpp
loaded after it in the same process fails to read the embedded model (std::bad_cast);
tests/test_quality.py checks that the index and the embedded model live in one process.
Memory: the float16 vectors (768 bytes a row at 384 dimensions, sized for the expected rows at once) and
the codes, about 0.8 GiB at 1M rows (``memory_bytes``).

``VectorLog`` is the run's file of accepted rows' vectors (rundir.ROW_VECTORS), from which a
resumed run seeds the index with ``add``. Layout (little-endian): a 16-byte header, the magic
``b"TSVEC16\\0"``, uint32 format version (1), uint32 dim; then the rows, each ``dim`` float16
values (``dim * 2`` bytes), row-major, nothing else. Appends are one ``os.write`` of whole rows on
an O_APPEND descriptor, so a crash leaves at most one torn row at the end: readers ignore it and
the next append cuts it off first.

Not thread-safe: both classes are used from one thread (the engine's event loop) and every call
is synchronous.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import faiss

DEFAULT_NEAR_DUP_COSINE: float = 0.92

#: the HNSW settings (see the module docstring)
HNSW_DTYPE = "f16"  # or "f32"
HNSW_CONNECTIVITY = 16
HNSW_EXPANSION_ADD = 64
HNSW_EXPANSION_SEARCH: int | None = None  # None: auto_expansion_search(size of the graph)
EXACT_LIMIT = 4096
FLUSH_ROWS = 256
#: the approximate stage's kind: "ivf" (the default: cells, fast to add and search) or "hnsw"
INDEX_KIND = "ivf"
IVF_NPROBE = 8  # cells searched per query (recall against speed: benchmarks/README.md)
IVF_TRAIN_PER_CELL = 10  # vectors per cell the k-means is trained on
IVF_CANDIDATES = 8  # fast-scan neighbours per query re-ranked by their exact float16 vectors
# dimensions per 4-bit product-quantiser code of the fast-scan stage (dim 384: 48 codes, 24 bytes a row). The codes
# only choose which rows to re-rank exactly, so coarser ones cost no decision: 8 instead of 4 admitted 100k rows in
# 4.4 s instead of 6.0 and 1M in 71.6 s instead of 85.6, with the same rows turned away and every planted
# near-duplicate found at both sizes (benchmarks/README.md, "Gates at API speed", session 20)
IVF_PQ_DIMS = 8
# faiss (1.15) compares queries with the cells' centroids in a SIMD loop below 128,000 of its
# ``distance_compute_blas_threshold``, and an admit's few hundred queries against a few hundred cells stay under it:
# a matrix product instead took 10% off the index's CPU at 100k rows (2.8 -> 2.5 s; benchmarks/README.md, "Gates at
# API speed", session 24). The index's process is the only faiss user in it; a small run's index shares the
# run's, which has no other
BLAS_FROM = 20
# the codes of a row itself, not of its offset from its cell's centroid: the codes only rank candidates for the
# exact re-rank, and without residuals they rank near-duplicates as well or better (found every natural
# near-duplicate of 10k GSM8K-like rows against 90k, where residual codes missed 1 in 133) and add 15% faster
IVF_BY_RESIDUAL = False
# k-means iterations of each product-quantiser code book (faiss's default: 25). Training the codes took 0.3 of the
# 0.5 CPU-s the IVF stage's training cost, a fifth of a 100k-row run's index; the codes only rank candidates for
# the exact re-rank, and 16 centroids in 8 dimensions settle well before 25: at 10, 100k planted rows gave the same
# decisions (1,977 turned away, 0 of 1,651 near-copies missed) in 2.4 s instead of 2.8-3.0, where 5 missed one
# (benchmarks/README.md, "Gates at API speed", session 25)
IVF_PQ_TRAIN_ITERS = 10
ADMIT_CHUNK = 256  # rows of one admit compared with each other exactly (a Gram matrix) at most: b^2 products


def ivf_cells(expected_rows: int) -> int:
    """The IVF's number of cells for an index expected to hold ``expected_rows`` vectors: about
    sqrt(n) / 2. A query pays for the cells' centroids (a product with every one) and for scanning
    nprobe cells of n / cells fast-scan codes; with 48-byte codes the centroids are the dearer part, so
    fewer, larger cells (measured at 100k rows, nprobe 8: 632 cells 79 us a row for search and add, 158
    cells 38 us; benchmarks/README.md)."""
    return int(min(4096, max(16, round(0.5 * max(1, expected_rows) ** 0.5))))


def auto_expansion_search(n: int) -> int:
    """The HNSW search beam for a graph of ``n`` vectors: recall of near-duplicates (cosine >= 0.92)
    against brute force, measured with faiss f16, connectivity 16, expansion_add 64 on GSM8K-like
    vectors: 300k: 99.0% at 64, 99.75% at 128; 1M: 94.1% at 64, 98.0% at 128, 99.4% at 256."""
    return 64 if n < 150_000 else 128 if n < 500_000 else 256


_NO_NEIGHBOUR = -1.0  # the max cosine reported while nothing is accepted (the lowest cosine)


def _unit_rows(X: np.ndarray | list, dim: int) -> np.ndarray:
    """``X`` as a C-contiguous float32 (n, dim) array of unit rows (zero rows stay zero)."""
    A = np.asarray(X, dtype=np.float32)
    if A.ndim == 1:
        A = A.reshape(1, -1)
    if A.ndim != 2 or A.shape[1] != dim:
        raise ValueError(f"expected vectors of dimension {dim}, got an array of shape {A.shape}")
    if A.shape[0] and not np.isfinite(A).all():
        raise ValueError("vectors contain NaN or infinite values")
    n = np.linalg.norm(A, axis=1, keepdims=True)
    return np.ascontiguousarray(A / np.where(n > 0, n, 1.0), dtype=np.float32)


class NearDuplicateIndex:
    """Accepted rows' unit vectors; ``admit`` keeps the rows whose max cosine to them is below
    ``threshold``. Exact below ``exact_limit`` vectors, HNSW plus an exact buffer of the newest
    rows above (module docstring)."""

    def __init__(
        self,
        dim: int,
        threshold: float = DEFAULT_NEAR_DUP_COSINE,
        *,
        exact_limit: int = EXACT_LIMIT,
        flush_rows: int = FLUSH_ROWS,
        dtype: str = HNSW_DTYPE,
        connectivity: int = HNSW_CONNECTIVITY,
        expansion_add: int = HNSW_EXPANSION_ADD,
        expansion_search: int | None = HNSW_EXPANSION_SEARCH,
        threads: int = 1,
        kind: str = INDEX_KIND,
        expected_rows: int = 100_000,
        nprobe: int = IVF_NPROBE,
        pq_dims: int = IVF_PQ_DIMS,
        candidates: int = IVF_CANDIDATES,
        pq_train_iters: int = IVF_PQ_TRAIN_ITERS,
    ) -> None:
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        if not -1.0 <= threshold <= 1.0:
            raise ValueError(f"threshold is a cosine in [-1, 1], got {threshold}")
        if exact_limit < 1 or flush_rows < 1:
            raise ValueError("exact_limit and flush_rows must be at least 1")
        self.dim = dim
        self.threshold = float(threshold)
        self.exact_limit = exact_limit
        self.flush_rows = flush_rows
        self.dtype = dtype
        self.connectivity = connectivity
        self.expansion_add = expansion_add
        self._expansion_search = expansion_search  # None: by the graph's size (auto_expansion_search)
        self.threads = threads  # faiss's OpenMP threads for adds and large query batches; 0: faiss's default (every core)
        self._buf = np.zeros((max(exact_limit, flush_rows), dim), dtype=np.float32)
        self._nbuf = 0
        self._n = 0  # accepted vectors: the graph's plus the buffer's
        self._hnsw: Any = None  # the approximate stage: a faiss IndexHNSW or IndexIVF, once built
        self._fast_scan = False  # the IVF stage is 4-bit PQ fast-scan, its candidates re-ranked by exact float16 vectors
        self._parts: tuple[Any, ...] = ()  # faiss objects the index points to (faiss holds raw pointers)
        self.expected_rows = max(1, int(expected_rows))
        if kind not in ("ivf", "hnsw"):
            raise ValueError(f"kind is 'ivf' or 'hnsw', got {kind!r}")
        self.kind = kind
        self.cells = ivf_cells(expected_rows)
        self.nprobe = nprobe
        if pq_dims < 1 or candidates < 1:
            raise ValueError("pq_dims and candidates must be at least 1")
        self.pq_dims = pq_dims  # dimensions per 4-bit code of the fast-scan stage
        self.pq_train_iters = max(1, int(pq_train_iters))
        self.candidates = candidates  # fast-scan neighbours re-ranked exactly per query
        if kind == "ivf":  # the exact stage lasts until the cells can be trained
            self.exact_limit = max(exact_limit, self.cells * IVF_TRAIN_PER_CELL)
            self._buf = np.zeros((max(self.exact_limit, flush_rows), dim), dtype=np.float32)

    def __len__(self) -> int:
        return self._n

    @property
    def expansion_search(self) -> int:
        """The HNSW search beam now (recall against speed): the value set, or by the graph's size.
        Settable at any time; None goes back to the size-based schedule."""
        if self._expansion_search is not None:
            return self._expansion_search
        return auto_expansion_search(int(self._hnsw.ntotal) if self._hnsw is not None else 0)

    @expansion_search.setter
    def expansion_search(self, value: int | None) -> None:
        self._expansion_search = None if value is None else int(value)
        if self._hnsw is not None and self.kind == "hnsw":
            self._hnsw.hnsw.efSearch = self.expansion_search

    @property
    def exact(self) -> bool:
        """True while every answer is exact (no vector has moved into the HNSW graph yet)."""
        return self._hnsw is None

    @property
    def memory_bytes(self) -> int:
        """The graph's memory (vectors at their storage size, level-0 links of 2 x connectivity int32
        ids and the upper levels' share) plus the exact buffer: an estimate, faiss keeps no count."""
        if self._hnsw is None:
            return self._buf.nbytes
        n = int(self._hnsw.ntotal)
        if self.kind == "ivf" and self._fast_scan:  # 4-bit codes, an int64 id, the float16 vectors (held for the expected rows); the centroids
            held = max(n, self.expected_rows) * self.dim * 2
            return n * (self.dim // self.pq_dims // 2 + 8) + held + self.cells * self.dim * 4 + self._buf.nbytes
        if self.kind == "ivf":  # float16 codes and an int64 id per vector, the centroids
            return n * (self.dim * (2 if self.dtype == "f16" else 4) + 8) + self.cells * self.dim * 4 + self._buf.nbytes
        per_vector = self.dim * (2 if self.dtype == "f16" else 4)
        links = (2 * self.connectivity + self.connectivity // 2) * 4 + 8
        return n * (per_vector + links) + self._buf.nbytes

    def add(self, X: np.ndarray) -> None:
        """Accept every row of ``X`` without checking (seeding: a resumed run's stored vectors, a
        balance run's real rows)."""
        self._accept(_unit_rows(X, self.dim))

    def admit(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(keep, max_cosine) for the rows of ``X`` in order, and accept the kept ones.

        ``max_cosine[i]`` is row i's highest cosine to the accepted set, which includes the rows
        before it in ``X`` that were kept (-1.0 when nothing is accepted); ``keep[i]`` is
        ``max_cosine[i] < threshold``. A large ``X`` is taken ``ADMIT_CHUNK`` rows at a time (each chunk against
        the index, which by then holds the earlier chunks' kept rows): the same answer as one pass, without a
        Gram matrix of every row against every other."""
        A = _unit_rows(X, self.dim)
        if len(A) <= ADMIT_CHUNK:
            return self._admit(A)
        keeps, bests = zip(*(self._admit(A[a : a + ADMIT_CHUNK]) for a in range(0, len(A), ADMIT_CHUNK)), strict=True)
        return np.concatenate(keeps), np.concatenate(bests)

    def _admit(self, A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b = len(A)
        keep = np.zeros(b, dtype=bool)
        if b == 0:
            return keep, np.full(0, _NO_NEIGHBOUR, dtype=np.float32)
        best = self._max_cosine(A)
        th = self.threshold
        if b == 1:
            keep[0] = best[0] < th
        else:
            G = np.tril(A @ A.T, k=-1)  # row i against the rows before it in the batch
            keep[:] = best < th
            # a row with no earlier row of the batch at the threshold is decided by the index alone; only
            # rows that have one (few: near-duplicates are rare) need the order of the batch
            earlier = np.tri(b, k=-1, dtype=bool) & keep[None, :]  # the earlier rows the index kept
            close = np.flatnonzero(keep & (np.where(earlier, G, _NO_NEIGHBOUR).max(axis=1) >= th))
            if len(close):
                for i in range(b):  # in order: a row is compared with the earlier rows that were kept
                    if i:
                        best[i] = max(best[i], np.max(G[i, :i], where=keep[:i], initial=_NO_NEIGHBOUR))
                    keep[i] = best[i] < th
            else:
                np.maximum(best, np.where(earlier, G, _NO_NEIGHBOUR).max(axis=1), out=best)
        if keep.any():
            self._accept(A[keep])
        return keep, best

    def max_cosine(self, X: np.ndarray) -> np.ndarray:
        """Each row's highest cosine to the accepted set (-1.0 when it is empty), without accepting
        anything and without comparing the rows with each other."""
        return self._max_cosine(_unit_rows(X, self.dim))

    def _max_cosine(self, A: np.ndarray) -> np.ndarray:
        b = len(A)
        best = np.full(b, _NO_NEIGHBOUR, dtype=np.float32)
        if b == 0:
            return best
        if self._hnsw is not None and self._hnsw.ntotal:
            Q = np.ascontiguousarray(A, dtype=np.float32)
            self._set_threads(b)
            if self._fast_scan:  # the codes' best ``candidates``, re-ranked by their float16 vectors, in faiss
                sims, ids = self._hnsw.search(Q, 1)
                cos = sims[:, 0].astype(np.float32)
                best = np.where((ids[:, 0] >= 0) & np.isfinite(cos), np.minimum(cos, 1.0), best).astype(np.float32)
            else:
                if self.kind == "hnsw":
                    ef = self.expansion_search
                    if self._hnsw.hnsw.efSearch != ef:
                        self._hnsw.hnsw.efSearch = ef
                sims, ids = self._hnsw.search(Q, 1)
                found = ids[:, 0] >= 0
                cos = sims[:, 0].astype(np.float32)
                best = np.where(found & np.isfinite(cos), np.minimum(cos, 1.0), best).astype(np.float32)
        if self._nbuf:
            np.maximum(best, (A @ self._buf[: self._nbuf].T).max(axis=1), out=best)
        return best

    # ---- storage ---------------------------------------------------------
    def _set_threads(self, rows: int) -> None:
        if self.threads > 0:
            import faiss

            faiss.omp_set_num_threads(1 if rows < 64 else self.threads)

    def _limit(self) -> int:
        return self.exact_limit if self._hnsw is None else self.flush_rows

    def _accept(self, A: np.ndarray) -> None:
        i = 0
        while i < len(A):
            take = min(len(A) - i, self._limit() - self._nbuf)
            self._buf[self._nbuf : self._nbuf + take] = A[i : i + take]
            self._nbuf += take
            self._n += take
            i += take
            if self._nbuf >= self._limit():
                self._flush()

    def _flush(self) -> None:
        import faiss  # loaded once the index outgrows its exact stage

        if self._hnsw is None and self.kind == "ivf":
            faiss.cvar.distance_compute_blas_threshold = min(BLAS_FROM, faiss.cvar.distance_compute_blas_threshold)
            self._hnsw = self._train_ivf(faiss)
        elif self._hnsw is None:
            ix: faiss.IndexHNSW
            if self.dtype == "f16":
                qt: Any = faiss.ScalarQuantizer.QT_fp16  # faiss's stubs type the enum's members as the class
                ix = faiss.IndexHNSWSQ(self.dim, qt, self.connectivity, faiss.METRIC_INNER_PRODUCT)
            else:
                ix = faiss.IndexHNSWFlat(self.dim, self.connectivity, faiss.METRIC_INNER_PRODUCT)
            ix.hnsw.efConstruction = self.expansion_add
            self._hnsw = ix
            ix.hnsw.efSearch = self.expansion_search
        self._set_threads(self._nbuf)
        X = np.ascontiguousarray(self._buf[: self._nbuf])
        self._hnsw.add(X)  # ids follow the order of acceptance
        self._nbuf = 0

    def _train_ivf(self, faiss: Any) -> Any:
        """Cells (k-means centroids) trained on the exact stage's vectors. Rows are stored as 4-bit PQ
        fast-scan codes whose ``candidates`` best answers are re-ranked with the rows' exact float16
        vectors (a scan of 24 bytes a row instead of 768, benchmarks/README.md). Fast-scan needs an even number
        of codes: a dimension ``pq_dims`` cannot split so takes codes of 4 dimensions, and one 4 cannot split
        either falls back to float16 scalar-quantised cells."""
        quantizer = faiss.IndexFlatIP(self.dim)
        pq = next((d for d in (self.pq_dims, 4) if self.dim % (2 * d) == 0), None)
        if self.dtype == "f16" and pq is not None:
            fs = faiss.IndexIVFPQFastScan(quantizer, self.dim, self.cells, self.dim // pq, 4, faiss.METRIC_INNER_PRODUCT)
            self.pq_dims = pq
            fs.by_residual = IVF_BY_RESIDUAL
            fs.cp.min_points_per_centroid = 1
            fs.cp.seed = 1234
            fs.pq.cp.niter = self.pq_train_iters
            self._set_threads(self._nbuf)
            fs.train(np.ascontiguousarray(self._buf[: self._nbuf]))
            fs.nprobe = self.nprobe
            self._fast_scan = True
            # the exact stage: every row's float16 vector; a query's ``candidates`` best by the codes are compared with
            # them in faiss (SIMD, no GIL): the same answers as numpy's gather and product, which took a quarter of a
            # 100k-row admit (benchmarks/README.md, "Gates at API speed", session 21)
            exact = faiss.IndexScalarQuantizer(self.dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
            # room for the expected rows at once (written, so resident from here): grown by doubling instead, the
            # 768 MB of 1M rows would be copied while both copies are held, half as much again at the peak
            exact.codes.resize(self.expected_rows * exact.code_size)
            exact.codes.resize(0)
            refine = faiss.IndexRefine(fs, exact)
            refine.k_factor = float(self.candidates)
            self._parts = (quantizer, fs, exact)
            return refine
        qt: Any = faiss.ScalarQuantizer.QT_fp16 if self.dtype == "f16" else faiss.ScalarQuantizer.QT_8bit_direct
        if self.dtype == "f16":
            ix = faiss.IndexIVFScalarQuantizer(quantizer, self.dim, self.cells, qt, faiss.METRIC_INNER_PRODUCT)
        else:
            ix = faiss.IndexIVFFlat(quantizer, self.dim, self.cells, faiss.METRIC_INNER_PRODUCT)
        self._parts = (quantizer,)  # kept alive beside the index (faiss holds a raw pointer)
        ix.cp.min_points_per_centroid = 1
        ix.cp.seed = 1234
        self._set_threads(self._nbuf)
        ix.train(np.ascontiguousarray(self._buf[: self._nbuf]))
        ix.nprobe = self.nprobe
        return ix


# ---- the vectors' file ---------------------------------------------------
_MAGIC = b"TSVEC16\0"
_VERSION = 1
_HEADER = struct.Struct("<8sII")  # magic, version, dim: 16 bytes


class VectorLog:
    """Append-only, crash-safe file of float16 unit vectors (layout in the module docstring)."""

    HEADER_BYTES = _HEADER.size

    def __init__(self, path: Path | str, dim: int) -> None:
        if dim <= 0:
            raise ValueError(f"dim must be positive, got {dim}")
        self.path = Path(path)
        self.dim = dim
        self.row_bytes = dim * 2
        header = _HEADER.pack(_MAGIC, _VERSION, dim)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size < len(header):
                head = os.pread(fd, size, 0)
                if head != header[:size]:
                    raise ValueError(f"{self.path} is not a treesynth vector log (bad header)")
                # new, or a crash while the header was written: (re)write it
                os.ftruncate(fd, 0)
                os.write(fd, header)
                size = len(header)
            else:
                magic, version, fdim = _HEADER.unpack(os.pread(fd, len(header), 0))
                if magic != _MAGIC:
                    raise ValueError(f"{self.path} is not a treesynth vector log (bad magic {magic!r})")
                if version != _VERSION:
                    raise ValueError(f"{self.path}: vector log format {version} is not supported (expected {_VERSION})")
                if fdim != dim:
                    raise ValueError(f"{self.path} holds vectors of dimension {fdim}, not {dim} (another embedder?)")
        except BaseException:
            os.close(fd)
            raise
        self._fd: int | None = fd
        self._count = (size - len(header)) // self.row_bytes
        self._torn = (size - len(header)) % self.row_bytes != 0

    @property
    def count(self) -> int:
        """Complete rows in the file."""
        return self._count

    def __len__(self) -> int:
        return self._count

    def _fileno(self) -> int:
        if self._fd is None:
            raise ValueError(f"{self.path}: the vector log is closed")
        return self._fd

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Rows ``start:stop`` (every complete row by default) as float32, shape (n, dim); a torn
        last row is left out."""
        fd = self._fileno()
        stop = self._count if stop is None else min(stop, self._count)
        start = max(0, min(start, stop))
        n = stop - start
        raw = os.pread(fd, n * self.row_bytes, self.HEADER_BYTES + start * self.row_bytes) if n else b""
        if len(raw) < n * self.row_bytes:  # short read: the file shrank underneath us
            n = len(raw) // self.row_bytes
            raw = raw[: n * self.row_bytes]
        return np.frombuffer(raw, dtype="<f2").reshape(n, self.dim).astype(np.float32)

    def chunks(self, rows: int = 65536) -> Iterator[np.ndarray]:
        """Every complete row, ``rows`` at a time (seeding an index without holding the whole file
        as float32)."""
        for a in range(0, self._count, rows):
            yield self.read(a, a + rows)

    def append(self, X: np.ndarray) -> None:
        """Append the rows of ``X`` (n, dim) as float16 in one write; a torn tail is cut first."""
        fd = self._fileno()
        A = np.asarray(X) if getattr(X, "dtype", None) == np.float16 else np.asarray(X, dtype=np.float32)
        if A.ndim == 1:
            A = A.reshape(1, -1)
        if A.ndim != 2 or A.shape[1] != self.dim:
            raise ValueError(f"expected vectors of dimension {self.dim}, got an array of shape {A.shape}")
        if not len(A):
            return
        if self._torn:
            os.ftruncate(fd, self.HEADER_BYTES + self._count * self.row_bytes)
            self._torn = False
        data = memoryview(np.ascontiguousarray(A, dtype="<f2").tobytes())
        written = 0
        try:
            while written < len(data):  # one write; the loop only for the kernel's ~2 GiB cap per call
                written += os.write(fd, data[written:])
        except BaseException:
            self._resync()  # e.g. a full disk mid-write: the file may now end in a torn row
            raise
        self._count += len(A)

    def _resync(self) -> None:
        body = os.fstat(self._fileno()).st_size - self.HEADER_BYTES
        self._count = max(0, body) // self.row_bytes
        self._torn = body % self.row_bytes != 0

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> VectorLog:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

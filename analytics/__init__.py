"""treesynth.analytics: diversity metrics, leaf coverage and UMAP/t-SNE maps of runs and datasets,
as one self-contained HTML report plus metrics.json (``treesynth report``, ``treesynth run --report``).

Modules: ``data`` (inputs), ``embed`` (offline sentence embeddings, cache, bf16 fast path),
``metrics`` (the formulas, numpy), ``project`` (UMAP, openTSNE), ``html`` (rendering, escaping),
``report`` (orchestration; ``build_report``, ``report_for_run``, ``cli_report``).
Nothing here is imported by ``treesynth.core``.
"""

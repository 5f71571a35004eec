"""treesynth.analytics: diversity metrics, leaf coverage and UMAP/t-SNE maps of runs and datasets, as
one self-contained HTML report plus metrics.json (``treesynth report``, ``treesynth run --report``,
the TUI's report key).

Imports: ``treesynth.core`` only (run directories through ``core.reader``, file names from
``core.rundir``, JSONL through ``core.jsonl``, the embedder from ``core.embeddings``), besides
numpy, polars, jinja2, plotly and the map libraries, all loaded when a report is built. Nothing here
is imported by ``treesynth.core``; the CLI and the TUI import it lazily.

Modules, in pipeline order (``report`` runs them):
  inputs     ``data`` picks a loader: ``run_data`` (a run directory), ``balance_data`` (a balance
             run: before and after), ``file_data`` (JSONL/JSON/Parquet/CSV); ``dataset`` holds the
             ``Dataset`` and ``TreeInfo`` they fill in.
  numbers    ``analysis`` (one dataset's metric records) and ``coverage`` (leaf and branch coverage),
             with the formulas in the ``metrics`` package (``embedding``, ``neighbours``, ``lexical``,
             ``leaves``); ``records`` is the metric record format, ``settings`` the fixed sizes;
             ``quality`` (a run's quality gates: judge verdicts and rejected rows, read by ``run_data``).
  maps       ``project`` (UMAP, openTSNE).
  page       ``html`` renders ``assets/templates/report.html.j2`` with ``figures`` (plotly specs),
             ``summary`` (the summary table) and ``markup`` (escaping, number formatting).
  outputs    ``outputs``: paths, the metrics document, atomic writes.
  shared     ``results`` (``Analysis``, ``Maps``), ``errors``, ``progress`` (the long stages' progress: a
             live bar on a terminal, else a line every few seconds); ``ray_embed`` embeds on a Ray cluster.
"""

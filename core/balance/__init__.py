"""Rebalance an existing dataset with its own tree (``treesynth balance``).

1. Grow a tree from the data (mode.py, the engine's ``BalanceMode``): the same partition protocol as
   ``run``, but each node's pivots are rows routed to that node (seeded sample); coverage still adds
   values the data lacks, which is where new rows are needed. When the model gives no split, the rows
   are split by embedding clusters (fallback.py).
2. Route every row to exactly one child at each split (route.py): by the LLM in batches, or by
   embedding similarity; checkpointed with the embeddings (rows.py).
3. Balance (plan.py): a target per leaf; crowded leaves keep their most mutually distant rows, sparse
   and empty leaves get synthesised rows conditioned on the leaf path and a few of its real rows; new
   rows that nearly duplicate real ones are dropped.
4. Write the balanced dataset, the dropped ids, the tree and a before/after table (outputs.py).

``data.py`` reads the dataset; ``task.py`` infers a task sentence when none is given; ``spec.py`` is
what the run was asked to do; ``run.py`` makes a balance run: a ``Run`` in ``BalanceMode``."""

from .data import Data, load_data, read_table
from .mode import BalanceMode
from .plan import NEAR_DUP_COSINE, balance_summary, farthest_point_keep, leaf_targets
from .route import route_schema, validate_route
from .run import BalanceSetup, create_balance_run, prepare_balance
from .spec import BalanceSpec
from .task import fallback_task, infer_task, repair_task

__all__ = [
    "NEAR_DUP_COSINE", "BalanceMode", "BalanceSetup", "prepare_balance", "BalanceSpec", "Data", "balance_summary", "create_balance_run", "fallback_task",
    "farthest_point_keep", "infer_task", "leaf_targets", "load_data", "read_table", "repair_task", "route_schema",
    "validate_route",
]

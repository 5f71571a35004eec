"""Runs a balance in-process with the scripted provider (for kill/resume tests): python -m tests.balance_worker DATA OUT [--resume]"""

import asyncio
import sys
from pathlib import Path

from tests.fakes import ScriptedTransport, hash_embedder
from treesynth.core.balance import create_balance_run, load_data
from treesynth.core.run import Run


def main() -> None:
    data_path, out = sys.argv[1], Path(sys.argv[2])
    t = ScriptedTransport(latency=0.01, fields=("question", "answer"))
    if "--resume" in sys.argv:
        run = Run.resume(out, transport=t, embed=hash_embedder)
    else:
        data = load_data(data_path, "question", ("question", "answer"))
        spec = {"data": data_path, "field": "question", "fields": ["question", "answer"], "route": "llm", "route_batch": 10,
                "target_per_leaf": 12, "size": None, "embedder": None}
        run = create_balance_run(data, spec, {"task": "math word problems", "depth": 2, "pivots": 6, "samples_per_call": 2, "concurrency": 2,
                                                   "dedup_threshold": 0},  # its rows are templates of each other: no semantic dedup
                                 out, transport=t, embed=hash_embedder)
    fin = asyncio.run(run.execute())
    print(fin.status)


if __name__ == "__main__":
    main()

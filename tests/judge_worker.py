"""Runs a judged run in-process with the scripted provider, its judge slow (for kill/resume tests):
python -m tests.judge_worker OUT [--resume]. Prints the status, then each row the judge saw."""

import asyncio
import sys
from pathlib import Path

from tests.fakes import ScriptedTransport, hash_embedder
from treesynth.core.config import build_config
from treesynth.core.run import Run


class SlowJudge(ScriptedTransport):
    async def __call__(self, req):
        if ":judge:" in req.slot:
            await asyncio.sleep(0.15)
        return await ScriptedTransport.__call__(self, req)


def main() -> None:
    out = Path(sys.argv[1])
    t = SlowJudge(judge_fails=("item 2",))
    if "--resume" in sys.argv:
        run = Run.resume(out, transport=t, embed=hash_embedder)
    else:
        cfg = build_config(flags={"task": "math word problems", "fields": "question,answer", "depth": 2, "size": 60, "pivots": 6,
                                  "samples_per_call": 3, "concurrency": 4, "judge": True, "judge_batch": 2})
        run = Run.create(cfg, out, transport=t, embed=hash_embedder)
    fin = asyncio.run(run.execute())
    print(fin.status)
    for text, n in t.judged.items():
        print(f"JUDGED\t{n}\t{text}")


if __name__ == "__main__":
    main()

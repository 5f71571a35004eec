"""The async form: the engine's typed events as they happen, and the live run's controls."""
import asyncio

import treesynth


async def main() -> None:
    cfg = treesynth.config("Short customer-support questions about a bike shop", size=6, depth=1)
    async with treesynth.Run(cfg) as run:  # into runs/<task>-<time>
        async for event in run.events():
            if isinstance(event, treesynth.events.NodeExpanded):
                print(f"split by {event.dimension!r}: {[c.value for c in event.children]}")
            elif isinstance(event, treesynth.events.RunFinished):
                print(event.status, event.rows, "rows")
    print(run.dataset.to_polars())


asyncio.run(main())

"""AdapterTurns (vLLM backend on CPU): an engine only ever holds requests of one adapter, in arrival order."""

import asyncio

import pytest

from vidjudge.server.scorer.vllm_backend import AdapterTurns


def test_one_adapter_at_a_time_fifo_and_cancellation_frees_the_line():
    async def main():
        turns, inside, log = AdapterTurns(), [], []

        async def request(name, adapter, hold):
            await turns.enter(adapter)
            inside.append(adapter)
            log.append((name, set(inside)))
            try:
                await asyncio.sleep(hold)
            finally:
                inside.remove(adapter)
                await turns.leave()

        base1 = asyncio.create_task(request("base1", None, 0.05))
        await asyncio.sleep(0)
        lora1 = asyncio.create_task(request("lora1", "sharp", 0.05))
        await asyncio.sleep(0)
        base2 = asyncio.create_task(request("base2", None, 0.01))  # behind lora1: must not overtake it
        doomed = asyncio.create_task(request("doomed", "other", 0.01))
        lora2 = asyncio.create_task(request("lora2", "sharp", 0.01))
        await asyncio.sleep(0.01)
        doomed.cancel()  # a cancelled waiter leaves the line without blocking anyone
        await asyncio.gather(base1, lora1, base2, lora2, doomed, return_exceptions=True)
        return log

    log = asyncio.run(main())
    assert all(len(seen) == 1 for _, seen in log), log  # never two adapters in the engine together
    order = [name for name, _ in log]
    assert order.index("base1") < order.index("lora1") < order.index("base2")
    assert "doomed" not in order and set(order) == {"base1", "lora1", "lora2", "base2"}

"""A prober run inside a test's network namespace (`ip netns exec NS python -m tests.integration.probe_client`).

Reads one JSON request on stdin and prints one JSON answer line:
- {"mode": "probes", "port": P, "probes": {name: hex bytes}, "wait_s": S}: opens one connection per
  probe at once, sends its bytes, and reports for each the bytes received and the seconds until the
  server closed (or S if it did not).
- {"mode": "flood", "port": P, "sources": [addr, ...], "per_source": N, "settle_s": S, "payload": hex}:
  opens N connections from each source address (one after another, oldest first), sends the payload
  on each, waits S seconds and reports per source which connections the server has closed (by age);
  then holds the rest open until a line arrives on stdin, and closes them.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time


async def _probe(port: int, data: bytes, wait_s: float) -> tuple[int, float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    t0 = time.monotonic()
    writer.write(data)
    await writer.drain()
    got = 0
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), max(0.01, t0 + wait_s - time.monotonic())):
            got += len(chunk)
    except (TimeoutError, ConnectionError):
        pass
    took = time.monotonic() - t0
    writer.close()
    return got, took


async def probes(req: dict) -> dict:
    names = list(req["probes"])
    results = await asyncio.gather(*(_probe(req["port"], bytes.fromhex(req["probes"][n]), req["wait_s"]) for n in names))
    return {n: {"received": r[0], "closed_after_s": r[1]} for n, r in zip(names, results, strict=True)}


async def flood(req: dict) -> None:
    conns = []
    payload = bytes.fromhex(req["payload"])
    for src in req["sources"]:
        for i in range(req["per_source"]):
            reader, writer = await asyncio.open_connection("127.0.0.1", req["port"], local_addr=(src, 0))
            writer.write(payload)
            await writer.drain()
            conns.append((src, i, reader, writer))
    await asyncio.sleep(req["settle_s"])
    closed: dict[str, list[int]] = {src: [] for src in req["sources"]}
    for src, i, reader, _ in conns:
        if reader.at_eof() or reader.exception() is not None:
            closed[src].append(i)
    print(json.dumps({"opened": len(conns), "closed": closed}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for *_, writer in conns:
        writer.close()


def main() -> None:
    req = json.loads(sys.stdin.readline())
    if req["mode"] == "probes":
        print(json.dumps(asyncio.run(probes(req))), flush=True)
    else:
        asyncio.run(flood(req))


if __name__ == "__main__":
    main()

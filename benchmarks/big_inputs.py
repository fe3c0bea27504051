"""(f) Memory for big inputs: ``tanpuhui validate`` on a 200 MB file, a maximum-size webhook batch, a large pull page.

- ``tanpuhui validate FILE`` runs in a child process on a generated file of transit-card trips (1% invalid), as
  JSON Lines and as one JSON array; its peak RSS is the child's VmHWM as it exits. Target: under 100 MB whatever
  the file's size (the file was read whole before: 678 MB for 200 MB of JSON Lines). ``--quick``: 20 MB files.
- A webhook batch of ``[server] max_body_bytes`` (8 MiB of YRD records, ~19k items), signed, through the sidecar's
  whole ASGI stack in a child process: its RSS before and its peak (VmHWM) after the answer. Reported, no target:
  the push driver parses, validates, normalizes and commits a batch whole (its answer lists every item).
- A pull of transit-card trips with pages of 5,000 (the adapter's largest ``page_size``) from the sandbox partner
  (in the same child process) through the hub: RSS before and peak. Reported, no target: the page size is the
  adapter's.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import orjson

from .common import Row, Sizes

__all__ = ["pull_page_figures", "run", "validate_peak_mib", "webhook_batch_figures", "write_trips"]

TRIP = {
    "txn_id": "HF20241105121500C3",
    "card_no": "3100987654321098",
    "deal_time": "2024-11-05T12:15:00+08:00",
    "deal_type": "bus",
    "line_id": "B126",
    "stop_id": "B126-07",
    "region": "340100",
}
VALIDATE_TARGET_MIB = 100.0


def write_trips(path: Path, size: int, *, array: bool = False) -> int:
    """Write about ``size`` bytes of transit-card trips (every 100th invalid) as JSON Lines or one JSON array;
    returns the number of documents."""
    template = orjson.dumps(TRIP).replace(b"HF20241105121500C3", b"HF%012d").replace(b"340100", b"%s")
    line_size = len(template % (0, b"340100")) + 1
    count = max(1, size // line_size)
    separator = b",\n" if array else b"\n"
    with path.open("wb") as f:
        f.write(b"[\n" if array else b"")
        for start in range(0, count, 10_000):
            block = [
                template % (n, b"34010" if n % 100 == 99 else b"340100")
                for n in range(start, min(count, start + 10_000))
            ]
            f.write(separator.join(block) + (separator if start + 10_000 < count else b""))
        f.write(b"\n]\n" if array else b"\n")
    return count


_PEAK_AT_EXIT = """
import atexit, sys

def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            sys.stderr.write("VmHWM " + line.split()[1] + "\\n")

atexit.register(peak)
from tanpuhui.hub.cli import main
sys.argv[0] = "tanpuhui"
main()
"""


def validate_peak_mib(path: Path, schema: str = "transit-card-trip") -> tuple[float, int]:
    """Run ``tanpuhui validate PATH --schema SCHEMA`` in a child process: (its peak RSS in MiB, its exit status).

    The peak is the child's own VmHWM, read as it exits: ``ru_maxrss`` would count the parent's pages the child
    shares between fork and exec."""
    proc = subprocess.run(
        [sys.executable, "-c", _PEAK_AT_EXIT, "validate", str(path), "--schema", schema],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    kib = next(int(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("VmHWM "))
    return kib / 1024, proc.returncode


def _child_peak(script: str, cwd: Path) -> dict[str, float]:
    """Run a Python script in a child process; it prints a JSON object of figures."""
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], cwd=cwd, capture_output=True, text=True, check=True
    )
    figures: dict[str, float] = orjson.loads(out.stdout.strip().splitlines()[-1])
    return figures


_WEBHOOK = """
    import asyncio, base64, gc, orjson
    from tanpuhui.adapters.yrd_scenarios.sandbox import Dataset, sandbox_recognition
    from tanpuhui.hub.config import HubConfig
    from tanpuhui.hub.server import Sidecar
    from tanpuhui.sdk import WebhookSigner

    def kib(field):
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1])

    secret = "whsec_" + base64.b64encode(b"big-inputs-benchmark-secret-32b!").decode()
    keys = "v1:" + base64.b64encode(bytes(range(32))).decode()
    limit = 8 * 1024 * 1024
    doc = {
        "hub": {"store": "hub.db", "pseudonym_keys": {"env": "K"}},
        "adapters": {"yrd_scenarios": {**sandbox_recognition(), "webhook_secrets": [{"env": "S"}]}},
        "server": {"max_body_bytes": limit, "forward": False, "access_log": False},
    }
    sidecar = Sidecar(HubConfig.from_dict(doc, source="bench", environ={"K": keys, "S": secret}))
    items, size, n = [], 2, 0
    dataset = Dataset(20000, 5)
    for item in dataset.items:
        encoded = orjson.dumps(item)
        if size + len(encoded) + 1 > limit:
            break
        items.append(item)
        size += len(encoded) + 1
    body = orjson.dumps(items)
    del items, dataset
    gc.collect()
    headers = WebhookSigner(secret).headers("msg_big_batch", body)
    headers["content-type"] = "application/json"
    raw = [(k.encode(), v.encode()) for k, v in headers.items()]

    async def main():
        await sidecar.startup()
        route = sidecar.app  # through the whole ASGI stack, as uvicorn calls it
        chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]
        sent = []

        async def receive():
            chunk = chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/v1/webhooks/yrd_scenarios/records_push", "raw_path": b"",
                 "query_string": b"", "root_path": "", "headers": raw, "client": ("127.0.0.1", 1),
                 "server": ("127.0.0.1", 2), "state": {}}
        before = kib("VmRSS:")
        base_peak = kib("VmHWM:")
        await route(scope, receive, send)
        status = sent[0]["status"]
        answer = orjson.loads(sent[1]["body"])
        await sidecar.shutdown()
        return before, base_peak, status, answer["items"]

    before, base_peak, status, items = asyncio.run(main())
    print(orjson.dumps({"body_mib": len(body) / 2**20, "items": items, "status": status, "before_mib": before / 1024,
                        "peak_mib": kib("VmHWM:") / 1024, "base_peak_mib": base_peak / 1024}).decode())
"""

_PULL_PAGE = """
    import asyncio, base64, orjson
    from tanpuhui.adapters.transit_card.sandbox import TransitSandbox
    from tanpuhui.hub.config import HubConfig
    from tanpuhui.hub.hub import Hub

    def kib(field):
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1])

    keys = "v1:" + base64.b64encode(bytes(range(32))).decode()
    with TransitSandbox(trips=PAGE, seed=3) as partner:
        settings = partner.settings(client_secret={"env": "T"}, page_size=PAGE)
        doc = {"hub": {"store": "pull.db", "pseudonym_keys": {"env": "K"}}, "adapters": {"transit_card": settings}}
        hub = Hub(HubConfig.from_dict(doc, source="bench", environ={"K": keys, "T": partner.client_secret}))

        async def main():
            try:
                return await hub.pull("transit_card", "transactions")
            finally:
                await hub.aclose()

        before = kib("VmRSS:")
        summaries = asyncio.run(main())
    print(orjson.dumps({"records": sum(s.pulled for s in summaries), "pages": sum(s.pages for s in summaries),
                        "before_mib": before / 1024, "peak_mib": kib("VmHWM:") / 1024}).decode())
"""


def webhook_batch_figures(work: Path) -> dict[str, float]:
    """A signed webhook batch of 8 MiB (``max_body_bytes``) through the sidecar in a child process run in ``work``:
    ``body_mib``, ``items``, ``status`` (the answer's), ``before_mib`` (RSS before the request), ``peak_mib``."""
    return _child_peak(_WEBHOOK, work)


def pull_page_figures(work: Path, page: int) -> dict[str, float]:
    """A pull of ``page`` transit-card trips in pages of ``page`` in a child process run in ``work``: ``records``,
    ``pages``, ``before_mib`` (RSS before the pull), ``peak_mib``."""
    return _child_peak(_PULL_PAGE.replace("PAGE", str(page)), work)


def run(sizes: Sizes, tmp: Path | None = None) -> list[Row]:
    rows: list[Row] = []
    size = 20 * 2**20 if sizes.quick else 200 * 2**20
    with tempfile.TemporaryDirectory(prefix="tph-bench-inputs-", dir=tmp) as d:
        work = Path(d)
        for kind, array in (("JSON Lines", False), ("JSON array", True)):
            path = work / ("trips.json" if array else "trips.jsonl")
            count = write_trips(path, size, array=array)
            peak, status = validate_peak_mib(path)
            path.unlink()
            rows.append(
                Row(
                    f"tanpuhui validate, {size / 2**20:.0f} MB {kind}: peak RSS",
                    peak,
                    "MB",
                    f"< {VALIDATE_TARGET_MIB:.0f} MB",
                    peak < VALIDATE_TARGET_MIB and status == 1,
                    notes=[f"{count:,} documents, every 100th invalid; exit status {status} (1: some invalid)"],
                )
            )
        hook = webhook_batch_figures(work)
        rows.append(
            Row(
                "webhook batch of max_body_bytes: peak RSS growth",
                hook["peak_mib"] - hook["before_mib"],
                "MB",
                "reported",
                None,
                notes=[
                    f"{hook['body_mib']:.1f} MiB body, {hook['items']:,.0f} items, answered {hook['status']:.0f}; "
                    f"RSS {hook['before_mib']:.0f} MB before, peak {hook['peak_mib']:.0f} MB"
                ],
            )
        )
        page = 1_000 if sizes.quick else 5_000  # the adapter's largest page
        pulled = pull_page_figures(work, page)
        rows.append(
            Row(
                f"pull page of {page:,} transit-card trips: peak RSS growth",
                pulled["peak_mib"] - pulled["before_mib"],
                "MB",
                "reported",
                None,
                notes=[
                    f"{pulled['records']:,.0f} records in {pulled['pages']:.0f} page(s); RSS {pulled['before_mib']:.0f} "
                    f"MB before, peak {pulled['peak_mib']:.0f} MB"
                ],
            )
        )
    return rows

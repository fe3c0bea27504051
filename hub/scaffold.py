"""``tanpuhui new-adapter NAME``: scaffold an installable adapter package that passes the conformance suite.

The package (``./NAME``) holds a pull stream for a partner API of the most common shape (OAuth2 client credentials,
cursor paging), its partner schema with examples, a methodology with a labelled default factor, a plugin module
registered under the ``tanpuhui`` entry-point group, an in-process sandbox of the partner, and tests that inherit
:class:`tanpuhui.testing.conformance.AdapterConformance`. The scenario cassettes are recorded from the sandbox
right after scaffolding (``pytest --tanpuhui-record``), so the package passes its suite as generated; an author then
replaces the partner interface, the schema and the methodology, and re-records against the real partner.

Templates are Python strings (``string.Template``: ``$name`` and friends) so they ship without package-data rules.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from string import Template

from tanpuhui.sdk import ConfigError

__all__ = ["Scaffold", "record_cassettes", "scaffold"]

NAME = re.compile(r"^[a-z][a-z0-9_]{1,63}$")
_KEYWORDS = frozenset({"import", "class", "def", "return", "from", "pass", "async", "await", "test", "tests"})


@dataclass(frozen=True, slots=True)
class Scaffold:
    """What :func:`scaffold` wrote: the package folder and its files (relative paths)."""

    root: Path
    files: tuple[str, ...]


def _names(name: str) -> dict[str, str]:
    title = "".join(part.capitalize() for part in name.split("_"))
    exported = [f"{title}Adapter", f"{title}Settings", "ReadingsStream"]
    return {
        "name": name,
        "dist": "tanpuhui-" + name.replace("_", "-"),
        "Title": title,
        "host": name.replace("_", "-") + ".sandbox.example",
        "methodology": name.replace("_", "-") + ".saving",
        "schema": name.replace("_", "-") + "-reading",
        # Sorted here as ruff's isort sorts them: the class names depend on NAME.
        "init_imports": ", ".join(sorted(exported)),
        "init_all": ", ".join(f'"{n}"' for n in sorted(exported)),
    }


def scaffold(name: str, directory: Path | str = ".", *, force: bool = False) -> Scaffold:
    """Write the package ``<directory>/<name>``; :class:`ConfigError` for a bad name or an existing folder."""
    if not NAME.match(name) or name in _KEYWORDS or not name.isidentifier():
        raise ConfigError(
            f"adapter name {name!r} must be 2-64 lower-case letters, digits and underscores, starting with a letter "
            "(it is the Python package, the entry point and the adapter's name in hub.toml), e.g. hefei_water"
        )
    root = Path(directory) / name
    if root.exists() and any(root.iterdir()) and not force:
        raise ConfigError(f"{root} already exists and is not empty; choose another NAME or --directory (or --force)")
    values = _names(name)
    written = []
    for template_path, text in TEMPLATES.items():
        rel = Template(template_path).substitute(values)
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(Template(text).substitute(values), encoding="utf-8")
        written.append(rel)
    return Scaffold(root, tuple(written))


def record_cassettes(root: Path) -> subprocess.CompletedProcess[str]:
    """Record the package's conformance cassettes from its sandbox: ``pytest --tanpuhui-record`` in ``root``.

    The package need not be installed: ``src`` goes on ``PYTHONPATH`` for the run.
    """
    env = dict(os.environ)
    src = str((root / "src").resolve())
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--tanpuhui-record"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "tanpuhui adapter: $name"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["tanpuhui"]

[project.optional-dependencies]
test = ["pytest>=8", "respx>=0.21"]

# The hub finds the adapter through this entry point, like every built-in one.
[project.entry-points.tanpuhui]
$name = "$name.plugin"

[tool.setuptools.packages.find]
where = ["src"]

[tool.setuptools.package-data]
$name = ["py.typed", "schemas/*.json"]

[tool.pytest.ini_options]
testpaths = ["tests"]
addopts = "-ra --strict-markers"
"""

README = """\
# $name: a tanpuhui adapter

Scaffolded by `tanpuhui new-adapter $name`. It passes the tanpuhui conformance suite as generated:

```sh
pip install -e '.[test]'
pytest                                  # replays tests/cassettes/readings/*.json
tanpuhui adapters                       # $name is listed, loaded through its entry point
```

Make it yours (docs/adapter-authors.md in tanpuhui walks through each step):

1. `src/$name/adapter.py`: the partner's interface (paths, paging, auth) and `normalize`.
2. `src/$name/schemas/$schema.schema.json`: the partner payload, with `x-personal-data` on every field
   that identifies a person, and real `examples`.
3. `src/$name/methodology.py`: the cited methodology (the factor here is a labelled default).
4. `src/$name/sandbox.py`: a simulator of the partner, or drop it and record against the real partner:
   `pytest --tanpuhui-record --tanpuhui-record-url https://partner.example` (secrets and personal identifiers are
   scrubbed before the cassettes are written).
"""

INIT = '''\
"""$name: a tanpuhui adapter (scaffolded by ``tanpuhui new-adapter``)."""

from .adapter import $init_imports
from .methodology import SAVING

__all__ = ["SAVING", $init_all]
'''

PLUGIN = '''\
"""Registers the $name adapter and its methodology (entry point ``$name`` in the ``tanpuhui`` group)."""

from __future__ import annotations

from collections.abc import Callable

from tanpuhui.sdk import Adapter, Methodology, hookimpl

from .adapter import ${Title}Adapter
from .methodology import SAVING

__all__ = ["register_adapters", "register_methodologies"]


@hookimpl
def register_adapters(register: Callable[[type[Adapter]], None]) -> None:
    register(${Title}Adapter)


@hookimpl
def register_methodologies(register: Callable[[Methodology], None]) -> None:
    register(SAVING)
'''

METHODOLOGY = '''\
"""The methodology this adapter's records are quantified with.

Replace the factor with a cited one: ``source`` is what auditors read, ``default=True`` labels a value that is not
an official figure (operators override it in hub.toml under ``[methodologies."$methodology".factors]``).
"""

from __future__ import annotations

from tanpuhui.sdk import Factor, Formula, Methodology

__all__ = ["SAVING"]

SAVING = Methodology(
    id="$methodology",
    version="0.1.0",
    scenario="$name",
    title="$name: activity saved, valued at the grid emission factor",
    formula=Formula("activity * ef_saving"),
    factors=(
        Factor(
            "ef_saving",
            0.6782,
            "kgCO2e/kWh",
            "placeholder: MEE/NBS 2022 Anhui grid factor; replace with the factor of your methodology",
            default=True,
        ),
    ),
    activity_unit="kWh",
)
'''

ADAPTER = '''\
"""$name adapter.

Partner interface (the scaffold's; replace it with your partner's):

``POST /oauth/token``
    OAuth2 client credentials (``client_secret_basic``).
``GET /v1/readings?limit=N[&cursor=C]``
    ``{"items": [reading, ...], "next_cursor": "...", "has_more": true|false}``, readings (schema
    ``$schema``) in order; the cursor is opaque and stored by the hub with each page's records.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from importlib import resources
from typing import Any, ClassVar

import orjson
from pydantic import Field, SecretStr, field_validator
from tanpuhui.sdk import (
    Adapter,
    AdapterSettings,
    ConfigError,
    HttpOptions,
    ItemRejected,
    OAuth2ClientCredentials,
    Page,
    PartnerClient,
    PartnerResponseError,
    PullStream,
    RecordLike,
    RetryPolicy,
    StreamContext,
)

from .methodology import SAVING

__all__ = [$init_all]


def _schema(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads((resources.files(__package__) / "schemas" / f"{name}.schema.json").read_bytes())
    return doc


class ${Title}Settings(AdapterSettings):
    """``[adapters.$name]`` in hub.toml (secrets as ``{ env = "NAME" }`` references there)."""

    base_url: str = Field(description="Partner API root")
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    page_size: int = Field(500, ge=1, le=5000)
    retry_attempts: int = Field(5, ge=1, le=20)
    retry_initial_backoff: float = Field(0.5, gt=0, le=60)
    retry_max_backoff: float = Field(30.0, gt=0, le=600)
    max_retry_after: float = Field(120.0, ge=0, le=3600)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        return value.rstrip("/")


class ReadingsStream(PullStream):
    """``GET /v1/readings``: one record per reading."""

    name = "readings"
    schema = "$schema"
    id_field = "reading_id"
    description = "Readings of the partner, one record each"

    adapter: ${Title}Adapter

    def __init__(self, adapter: ${Title}Adapter) -> None:
        super().__init__(adapter)
        self.adapter = adapter

    async def pages(self, ctx: StreamContext, cursor: Any) -> AsyncIterator[Page]:
        size = self.adapter.config.page_size
        while True:
            params: dict[str, Any] = {"limit": size}
            if cursor:
                params["cursor"] = cursor
            described = f"GET /v1/readings?limit={size}" + (f"&cursor={cursor}" if cursor else "")
            doc = await self.adapter.client.get_json("/v1/readings", params=params)
            if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
                raise PartnerResponseError(f'{self.adapter.name}: {described}: expected {{"items": [...]}}')
            has_more = doc.get("has_more") is True
            next_cursor = doc.get("next_cursor") or cursor
            if has_more and next_cursor == cursor:
                raise PartnerResponseError(f"{self.adapter.name}: {described}: has_more without a new next_cursor")
            items = [i if isinstance(i, dict) else {"_not_an_object": i} for i in doc["items"]]
            yield Page(items=items, cursor=next_cursor, request=described)
            if not has_more:
                return
            cursor = next_cursor

    def normalize(self, item: dict[str, Any], ctx: StreamContext) -> Iterable[RecordLike]:
        when = datetime.fromisoformat(item["read_at"])
        if when.tzinfo is None:
            raise ItemRejected("read_at has no UTC offset", "/read_at")
        return (
            ctx.record(
                raw=item,
                partner_record_id=item["reading_id"],
                subject=ctx.subject("account", item["account_no"]),
                scenario=SAVING.scenario,
                start=when,
                region=item["region"],
                activity=float(item["saved_kwh"]),
                unit="kWh",
                methodology=SAVING.id,
            ),
        )


class ${Title}Adapter(Adapter):
    """The $name partner: a readings pull stream."""

    name = "$name"
    version = "0.1.0"
    title = "$name (scaffolded)"
    Settings = ${Title}Settings
    stream_types = (ReadingsStream,)
    schemas: ClassVar[dict[str, dict[str, Any]]] = {"$schema": _schema("$schema")}

    def __init__(self, settings: AdapterSettings, http: HttpOptions | None = None) -> None:
        if not isinstance(settings, ${Title}Settings):
            raise ConfigError(f"adapter $name: settings must be ${Title}Settings, got {type(settings).__name__}")
        super().__init__(settings, http)
        self.config: ${Title}Settings = settings
        self._client: PartnerClient | None = None

    @property
    def client(self) -> PartnerClient:
        if self._client is None:
            c = self.config
            self._client = self.partner_client(
                c.base_url,
                oauth=OAuth2ClientCredentials(
                    f"{c.base_url}/oauth/token", c.client_id, c.client_secret.get_secret_value()
                ),
                retry=RetryPolicy(c.retry_attempts, c.retry_initial_backoff, c.retry_max_backoff, c.max_retry_after),
                headers={"Accept": "application/json"},
            )
        return self._client
'''

SCHEMA = """\
{
  "$$schema": "https://json-schema.org/draft/2020-12/schema",
  "$$id": "https://schemas.example.org/$name/reading/v1.json",
  "title": "$name reading (partner payload)",
  "description": "One reading as the partner's GET /v1/readings returns it in items[]. Properties marked x-personal-data identify a person: the hub pseudonymises them and never stores them in clear.",
  "type": "object",
  "required": ["reading_id", "account_no", "read_at", "saved_kwh", "region"],
  "properties": {
    "reading_id": {"type": "string", "pattern": "^[A-Za-z0-9_-]{4,64}$$"},
    "account_no": {"type": "string", "pattern": "^[0-9A-Za-z]{6,32}$$", "x-personal-data": "account"},
    "read_at": {"type": "string", "format": "date-time"},
    "saved_kwh": {"type": "number", "minimum": 0},
    "region": {"description": "GB/T 2260 code", "type": "string", "pattern": "^[1-8][0-9]{5}$$"}
  },
  "examples": [
    {"reading_id": "R2024110500001", "account_no": "AC3401000123", "read_at": "2024-11-05T08:00:00+08:00", "saved_kwh": 1.25, "region": "340104"}
  ]
}
"""

SANDBOX = '''\
"""An in-process simulator of the partner, to record the conformance cassettes from (no network, no ports).

    partner = SandboxPartner(readings=12, seed=7)
    transport = httpx.ASGITransport(app=partner.app)

Deterministic data (seeded); account numbers are synthetic (``AC99`` + digits).
"""

from __future__ import annotations

import base64
import random
import secrets
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["SandboxPartner"]

CST = timezone(timedelta(hours=8))


class SandboxPartner:
    """The partner API as an ASGI app (:attr:`app`)."""

    def __init__(self, readings: int = 12, seed: int = 7, *, client_id: str = "tanpuhui-sandbox") -> None:
        rng = random.Random(seed)
        start = datetime(2024, 11, 5, 6, 0, tzinfo=CST)
        self.items = [
            {
                "reading_id": f"R{seed:03d}{n:06d}",
                "account_no": f"AC99{rng.randrange(10**8):08d}",
                "read_at": (start + timedelta(minutes=17 * n)).isoformat(),
                "saved_kwh": round(rng.uniform(0.2, 3.0), 3),
                "region": rng.choice(("340102", "340103", "340104", "340111")),
            }
            for n in range(readings)
        ]
        self.client_id = client_id
        self.client_secret = secrets.token_urlsafe(18)
        self._tokens: set[str] = set()
        self.app = Starlette(
            routes=[
                Route("/oauth/token", self._token, methods=["POST"]),
                Route("/v1/readings", self._readings, methods=["GET"]),
            ]
        )

    async def _token(self, request: Request) -> Response:
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if request.headers.get("authorization", "") != f"Basic {expected}":
            return _json(401, {"error": "invalid_client"})
        token = secrets.token_urlsafe(18)
        self._tokens.add(token)
        return _json(200, {"access_token": token, "token_type": "Bearer", "expires_in": 1800})

    async def _readings(self, request: Request) -> Response:
        if request.headers.get("authorization", "").removeprefix("Bearer ") not in self._tokens:
            return _json(401, {"error": "invalid_token"})
        limit = int(request.query_params.get("limit", "100"))
        cursor = request.query_params.get("cursor")
        offset = int(base64.urlsafe_b64decode(cursor.encode()).decode()) if cursor else 0
        end = min(offset + limit, len(self.items))
        body: dict[str, Any] = {
            "items": self.items[offset:end],
            "next_cursor": base64.urlsafe_b64encode(str(end).encode()).decode(),
            "has_more": end < len(self.items),
        }
        return _json(200, body)


def _json(status: int, doc: Any) -> Response:
    return Response(orjson.dumps(doc), status_code=status, media_type="application/json")
'''

TEST_CONFORMANCE = '''\
"""$name passes the tanpuhui conformance suite.

Replays ``tests/cassettes/readings``; re-record them from the sandbox with ``pytest --tanpuhui-record``, or from the
real partner with ``pytest --tanpuhui-record --tanpuhui-record-url https://partner.example`` once
``settings()`` reads its credentials (e.g. from the environment).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from tanpuhui.testing.conformance import AdapterConformance, LivePartner

from $name import plugin
from $name.adapter import ${Title}Adapter
from $name.sandbox import SandboxPartner


class TestReadingsConformance(AdapterConformance):
    plugin = plugin
    adapter = ${Title}Adapter
    stream = "readings"
    page_path = "/v1/readings"
    base_url = "https://$host"
    cassette_dir = Path(__file__).parent / "cassettes" / "readings"

    def settings(self, base_url: str, partner: LivePartner | None) -> dict[str, Any]:
        return {
            "base_url": base_url,
            "client_id": "tanpuhui-sandbox",
            "client_secret": partner.handle.client_secret if partner else "replayed-secret",
            "page_size": 5,
            "retry_attempts": 3,
        }

    @contextmanager
    def sandbox(self) -> Iterator[LivePartner]:
        partner = SandboxPartner(readings=12, seed=7)
        yield LivePartner("http://sandbox.invalid", transport=httpx.ASGITransport(app=partner.app), handle=partner)
'''

TEMPLATES: dict[str, str] = {
    "pyproject.toml": PYPROJECT,
    "README.md": README,
    "src/$name/__init__.py": INIT,
    "src/$name/py.typed": "",
    "src/$name/adapter.py": ADAPTER,
    "src/$name/methodology.py": METHODOLOGY,
    "src/$name/plugin.py": PLUGIN,
    "src/$name/sandbox.py": SANDBOX,
    "src/$name/schemas/$schema.schema.json": SCHEMA,
    "tests/test_conformance.py": TEST_CONFORMANCE,
}
"""Relative path (a template) -> file text (a template)."""

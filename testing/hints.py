"""What to change when a conformance test fails: each failure message ends with a hint and a link to the guide.

    assert second.summary.pulled == 0, f"the empty-page run pulled {n} item(s)" + hint("null_cursor")

Every hint names the pattern behind the failure, the fix, and the section of docs/adapter-authors.md ("When a
conformance test fails") that explains it; tests/kit/test_conformance_hints.py checks every section exists.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["GUIDE", "HINTS", "Hint", "hint"]

GUIDE = "docs/adapter-authors.md"
"""The guide the hints link to (relative to tanpuhui's repository root)."""


class Hint(NamedTuple):
    """The fix for one failure pattern and the guide's section (its anchor) that explains it."""

    fix: str
    section: str


HINTS: dict[str, Hint] = {
    "schema_dialect": Hint(
        'start the schema with "$schema": "https://json-schema.org/draft/2020-12/schema" (the only dialect the hub '
        "validates with)",
        "schemas-and-examples",
    ),
    "schema_id": Hint(
        'give the schema a stable "$id" URL ending in its version (e.g. .../reading/v1.json)', "schemas-and-examples"
    ),
    "schema_unknown": Hint(
        "ship the schema in the adapter's `schemas` mapping under the name the stream's `schema` attribute gives",
        "schemas-and-examples",
    ),
    "schema_examples": Hint(
        'add "examples": [one real-looking, valid partner payload] to the schema; integrators validate against it',
        "schemas-and-examples",
    ),
    "example_invalid": Hint(
        "fix the example (or the schema, if the partner really sends that) at the JSON pointer shown",
        "schemas-and-examples",
    ),
    "not_pull": Hint(
        "point `stream` at a PullStream subclass; push streams are tested with WebhookSigner, not this suite",
        "schemas-and-examples",
    ),
    "plugin": Hint(
        "set the suite's `plugin` to the module (or object) whose register_adapters hook registers `adapter`, as "
        "the package's entry point names it",
        "the-run-and-its-records",
    ),
    "cassette_mismatch": Hint(
        "the adapter asked for other requests than the cassette recorded (a changed path, query or page size): "
        "re-record with pytest --tanpuhui-record if the change is intended (tanpuhui cassettes check shows which "
        "cassettes drifted), else restore the adapter's requests",
        "the-run-and-its-records",
    ),
    "run_stopped": Hint(
        "read the error: a PartnerResponseError names the request the partner answered unexpectedly; a cassette "
        "mismatch means the adapter asks for other URLs than when the cassettes were recorded (re-record them)",
        "the-run-and-its-records",
    ),
    "too_few_pages": Hint(
        "make the scenario span several pages: a smaller page_size in settings(), or more data in the sandbox, then "
        "re-record",
        "the-run-and-its-records",
    ),
    "too_few_records": Hint(
        "check that normalize yields ctx.record(...) for each item (quarantined items are listed in the store)",
        "the-run-and-its-records",
    ),
    "normalize_crashed": Hint(
        'raise ItemRejected("why", "/json/pointer") for an item that cannot become a record instead of letting '
        "KeyError/ValueError escape normalize",
        "the-run-and-its-records",
    ),
    "record_invalid": Hint(
        "build records with ctx.record(...) and pass the fields the reduction-record schema requires at the "
        "pointers shown (units, region code, times with a UTC offset)",
        "the-run-and-its-records",
    ),
    "not_deterministic": Hint(
        "derive every field from the raw item: no clock (datetime.now), uuid4 or random in normalize; record ids "
        "come from ctx.record(partner_record_id=...)",
        "deterministic-records",
    ),
    "repeated_ids": Hint(
        "give each record a distinct partner_record_id (suffix it when one item yields several records)",
        "deterministic-records",
    ),
    "personal_data": Hint(
        'identify people only with ctx.subject(kind, value) and keep raw identifiers (fields marked "x-personal-data" '
        "in the schema) out of activity details",
        "personal-data-in-records",
    ),
    "recompute": Hint(
        "quantify through the methodology (ctx.record(activity=..., methodology=...)) rather than writing "
        "reduction_kgco2e yourself; the record's formula over its factors must give its figure",
        "reductions-that-recompute",
    ),
    "resume": Hint(
        "start pages(ctx, cursor) from the cursor it is given (None only on the very first run) and yield each "
        "Page with the cursor that resumes after its items",
        "resuming-from-the-cursor",
    ),
    "fault_not_seen": Hint(
        "set page_path to the path of the stream's page requests (the suite injects its faults there) and "
        "re-record with --tanpuhui-record",
        "resuming-from-the-cursor",
    ),
    "retry_bounds": Hint(
        "build the client with self.oauth2_client(settings) or self.partner_client(..., retry=RetryPolicy(...)): it "
        "retries 5xx and timeouts with capped backoff; keep retry_attempts within the suite's max_attempts",
        "retries-and-rate-limits",
    ),
    "error_names_adapter": Hint(
        "let the SDK client's PartnerUnavailable/PartnerResponseError propagate (they name the adapter and URL), or "
        "put self.adapter.name in your own error messages",
        "retries-and-rate-limits",
    ),
    "retry_after": Hint(
        "wait what Retry-After says: the SDK client does (up to max_retry_after); a hand-rolled loop must call "
        "the HttpOptions sleep with that figure",
        "retries-and-rate-limits",
    ),
    "reauth": Hint(
        "after a 401 fetch one new token and repeat the refused request once: PartnerClient with OAuth2 settings "
        "does; set reauth = False on the suite for a partner without tokens",
        "re-authentication",
    ),
    "null_cursor": Hint(
        "the partner sends no cursor on its last page (e.g. next_page_token: null) and the stream yielded that "
        "None, so the next run started over from the beginning; resume at that page instead: yield "
        'cursor={"token": <the token that asked for the last page>, "seen": len(items)}, and on the next run ask '
        'for that token again and skip the first "seen" items',
        "the-last-page-and-its-cursor",
    ),
    "empty_page": Hint(
        "a run with nothing new must pull nothing: the cursor of the last page must resume *after* its items "
        "(re-asking the last page with the token that fetched it pulls them again: skip the ones already taken), "
        "and an empty page ends the run without error, keeping its cursor",
        "the-last-page-and-its-cursor",
    ),
}
"""Failure pattern -> its fix and guide section."""


def hint(key: str) -> str:
    """The text appended to a failure message: the fix for pattern ``key`` and the link to its guide section."""
    found = HINTS[key]
    return f"\n  fix: {found.fix}\n  see: {GUIDE}#{found.section}"

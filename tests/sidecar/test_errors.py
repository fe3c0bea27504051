"""Every refusal is a problem document (RFC 9457), also the ones no route makes: unknown paths, bad path
parameters, other methods; undocumented query parameters and malformed admin bodies are refused, not ignored."""

from __future__ import annotations

import httpx
import pytest

from .conftest import ADMIN_TOKEN, SidecarFactory

PROBLEM = "application/problem+json"
AUTH = {"authorization": f"Bearer {ADMIN_TOKEN}"}


def problem_of(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    doc = response.json()
    assert doc["status"] == status and doc["type"] == "about:blank" and doc["title"] and doc["detail"]
    assert response.headers["x-request-id"]
    return doc


@pytest.mark.parametrize(
    "path",
    ["/nope", "/v1/validate/", "/v1/admin/quarantine/null%2Cnull", "/v1/admin/quarantine/-1", "/v1/webhooks/x/y"],
)
def test_unknown_paths_and_bad_path_parameters_are_404_problems(start_sidecar: SidecarFactory, path: str) -> None:
    response = start_sidecar().http.get(path, headers=AUTH)
    assert "no such resource" in str(problem_of(response, 404)["detail"])


def test_another_method_is_a_405_problem_with_allow(start_sidecar: SidecarFactory) -> None:
    server = start_sidecar()
    response = server.http.delete("/healthz")
    problem_of(response, 405)
    assert set(response.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD"}
    response = server.http.get("/v1/webhooks/bike_share/rides")
    problem_of(response, 405)
    assert response.headers["allow"] == "POST"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/healthz?verbose=1"),
        ("GET", "/v1/admin/quarantine?limt=5"),
        ("POST", "/v1/validate/bike-ride?strict=true"),
        ("POST", "/v1/webhooks/bike_share/rides?token=abc"),
    ],
)
def test_undocumented_query_parameters_are_400(start_sidecar: SidecarFactory, method: str, path: str) -> None:
    response = start_sidecar().http.request(method, path, headers=AUTH, json={})
    assert "unknown query parameter" in str(problem_of(response, 400)["detail"])


@pytest.mark.parametrize("wait", ["maybe", "0.5", ""])
def test_wait_must_be_a_boolean(start_sidecar: SidecarFactory, wait: str) -> None:
    response = start_sidecar().http.post(f"/v1/admin/streams/bike_share/rides/pull?wait={wait}", headers=AUTH)
    assert "wait must be true or false" in str(problem_of(response, 400)["detail"])


@pytest.mark.parametrize(
    ("body", "said"),
    [
        ({"ids": [1], "adaptor": "bike_share"}, "unknown field(s) 'adaptor'"),
        ({"all": False}, 'send {"ids"'),
        ({"all": "yes"}, '"all" must be true or false'),
        ({"all": True, "adapter": ""}, '"adapter" must be a non-empty string'),
        ({"all": True, "ids": [-1]}, '"ids" must be 1 to 100000 integers'),
        ({"ids": [1.5]}, '"ids" must be'),
        ([1, 2], "body must be a JSON object"),
    ],
)
def test_a_malformed_replay_request_is_400_and_replays_nothing(
    start_sidecar: SidecarFactory, body: object, said: str
) -> None:
    response = start_sidecar().http.post("/v1/admin/quarantine/replay", headers=AUTH, json=body)
    assert said in str(problem_of(response, 400)["detail"])


def test_integral_numbers_are_ids(start_sidecar: SidecarFactory) -> None:
    response = start_sidecar().http.post("/v1/admin/dead-letters/replay", headers=AUTH, json={"ids": [1.0, 2]})
    assert response.status_code == 200
    assert response.json()["missing"] == [1, 2]


def test_every_operation_documents_the_400_and_the_overload_503(start_sidecar: SidecarFactory) -> None:
    doc = start_sidecar().sidecar.openapi_document()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            for status in ("400", "503"):
                answer = op["responses"][status]
                assert PROBLEM in answer["content"], (method, path, status)
            assert "Retry-After" in op["responses"]["503"]["headers"]

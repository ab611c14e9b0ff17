"""The conformance data and ``compare``, the suite's own comparison of answers (no process started)."""

from __future__ import annotations

import pytest
import yaml

from .conformance_cases import ADDED, CONFORMANCE, REFUSED_BY_DESIGN, ROUTES_FILE, Expected, compare

LISTS = Expected(valid={"access-control-allow-methods": ("GET, OPTIONS", "OPTIONS, GET")}, ignore_whitespace=True)


@pytest.mark.parametrize(
    ("expected", "status", "headers", "passes"),
    [
        pytest.param(LISTS, 204, [("Access-Control-Allow-Methods", "GET, OPTIONS")], True, id="name-any-case"),
        pytest.param(LISTS, 200, [("access-control-allow-methods", "OPTIONS,GET")], True, id="either-order-no-space"),
        pytest.param(LISTS, 204, [("access-control-allow-methods", " GET ,  OPTIONS")], True, id="spaces-ignored"),
        pytest.param(LISTS, 204, [("access-control-allow-methods", "GET"), ("access-control-allow-methods", "OPTIONS")],
                     True, id="repeated-header-joined-with-comma"),
        pytest.param(LISTS, 204, [("access-control-allow-methods", "GET, PUT")], False, id="other-value"),
        pytest.param(LISTS, 204, [("access-control-allow-methods", "get, options")], False, id="values-case-sensitive"),
        pytest.param(LISTS, 204, [], False, id="header-missing"),
        pytest.param(LISTS, 403, [], False, id="status-not-listed"),
        pytest.param(Expected(valid={"x": ("a, b",)}), 204, [("x", "a,b")], False, id="spaces-count-unless-ignored"),
        pytest.param(Expected(statuses=(204, 403), valid={"x": ("a",)}), 403, [], True,
                     id="headers-not-compared-on-403"),
        pytest.param(Expected(headers={"x": "a"}), 204, [("X", "a")], True, id="exact-header"),
        pytest.param(Expected(headers={"x": "a"}), 204, [("x", "a, b")], False, id="exact-header-differs"),
        pytest.param(Expected(absent=("Access-Control-Allow-Credentials",)), 204,
                     [("access-control-allow-credentials", "true")], False, id="absent-header-present"),
        pytest.param(Expected(absent=("Access-Control-Allow-Credentials",)), 204, [("vary", "Origin")], True,
                     id="absent-header-absent"),
    ],
)  # fmt: skip
def test_compare_as_the_suite_does(
    expected: Expected, status: int, headers: list[tuple[str, str]], passes: bool
) -> None:
    assert (compare(expected, status, headers) == []) is passes


def test_every_preflight_case_of_the_suite_is_listed_once() -> None:
    """httproute-cors.go makes 10 preflight (OPTIONS) cases; its 7 other cases are actual requests for the backend."""
    assert len(CONFORMANCE) == 10
    ids = [case.id for case in CONFORMANCE + ADDED]
    assert len(ids) == len(set(ids))
    assert set(REFUSED_BY_DESIGN) <= {case.id for case in CONFORMANCE}


def test_each_case_is_one_preflight_on_the_wire() -> None:
    case = CONFORMANCE[0]
    assert case.request() == (
        b"OPTIONS /cors-1 HTTP/1.1\r\nHost: gateway.conformance.test\r\nOrigin: https://www.foo.com\r\n"
        b"Access-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: x-header-1, x-header-2\r\n\r\n"
    )


def test_the_routes_file_holds_the_suites_routes() -> None:
    """The suite's four HTTPRoutes by namespace/name and path, with the added ones after them."""
    documents = list(yaml.safe_load_all(ROUTES_FILE.read_text()))
    paths = {
        f"{d['metadata']['namespace']}/{d['metadata']['name']}": [m["path"]["value"] for r in d["spec"]["rules"]
                                                                  for m in r["matches"]]
        for d in documents
    }  # fmt: skip
    assert list(paths.items())[:4] == [
        ("gateway-conformance-infra/cors-multiple-origins-methods-headers", ["/cors-1"]),
        ("gateway-conformance-infra/cors-wildcard-methods", ["/cors-2"]),
        ("gateway-conformance-infra/cors-wildcard-origin", ["/cors-wildcard-origin"]),
        ("gateway-conformance-infra/cors-wildcard-methods-headers",
         ["/cors-wildcard-methods-headers", "/cors-wildcard-methods-headers-unauth"]),
    ]  # fmt: skip

import pytest

from cors_handler.cors.headers import MAX_REQUEST_HEADER_NAMES, HeaderListError, is_token, parse_header_list


@pytest.mark.parametrize("value", ["GET", "x-request-id", "X_Custom", "a!#$%&'*+-.^_`|~9"])
def test_tokens(value: str) -> None:
    assert is_token(value)


@pytest.mark.parametrize("value", ["", "a b", "a,b", "a:b", "é", "a\r\nb", "(x)", "a/b", '"q"'])
def test_non_tokens(value: str) -> None:
    assert not is_token(value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("content-type,x-request-id", ("content-type", "x-request-id")),
        ("X-Request-Id, Content-Type", ("content-type", "x-request-id")),
        ("a,,b, ,\t c ,", ("a", "b", "c")),
        ("x-a, X-A, x-a", ("x-a",)),
        ("", ()),
        (",,,,", ()),
        ("  ", ()),
    ],
    ids=[
        "two-names",
        "lowercased-and-sorted",
        "empty-items-and-whitespace-dropped",
        "duplicates-once",
        "empty",
        "only-commas",
        "only-spaces",
    ],
)
def test_header_list_normalizes(raw: str, expected: tuple[str, ...]) -> None:
    assert parse_header_list(raw) == expected


@pytest.mark.parametrize("raw", ["x-a, x b", "x-a;y", "x-\u00e9", "a\nb"])
def test_header_list_rejects_non_tokens(raw: str) -> None:
    with pytest.raises(HeaderListError):
        parse_header_list(raw)


def test_header_list_caps_distinct_names_not_items() -> None:
    names = [f"x-{i}" for i in range(MAX_REQUEST_HEADER_NAMES)]
    assert len(parse_header_list(",".join(names * 3))) == MAX_REQUEST_HEADER_NAMES  # repeats are fine
    with pytest.raises(HeaderListError, match="more than 100"):
        parse_header_list(",".join([*names, "x-one-more"]))

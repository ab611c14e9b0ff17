"""The documentation is true: its links and anchors resolve, and its examples run as shown.

Pages: README.md, CONTRIBUTING.md, SECURITY.md, docs/*.md and the chart's README.
Anchors follow GitHub's rules: a heading's anchor is its text lower-cased, without
punctuation, each space turned into a hyphen, and a repeated heading gets -1, -2, ...

Examples: every ``console`` block is run and its output compared with the page
(``cors-handler`` through its real command line, ``curl`` against a real
``cors-handler serve`` on the default configuration); every ``yaml`` block is a policy
that ``cors-handler check`` accepts; the commands in ``sh`` blocks and inline code name
files, modules, extras, flags and chart values that exist; every ``CORS_NAME=value`` shown
names a setting and takes effect in ``cors-handler check``. What restates the code is
compared with the code: the settings and their defaults, the metrics and their labels,
the alerts, the dependencies, the cost of a table entry, the size limits, the Python and
Kubernetes versions.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import itertools
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import Server, run_cli

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "cors-handler"
PAGES = sorted(
    [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "SECURITY.md", CHART / "README.md", *ROOT.glob("docs/*.md")]
)


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


# --- a small Markdown model -------------------------------------------------------------

FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)
CODE_SPAN = re.compile(r"`[^`\n]+`")
LINK = re.compile(r"!?\[(?:[^\]\\\n]|\\.)*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(?P<text>.+?)[ \t]*#*[ \t]*$", re.M)
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"(?P<name>[^\"]+)\"")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    lang: str
    body: str

    @property
    def id(self) -> str:
        return f"{page_id(self.page)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    found = []
    for m in FENCE.finditer(text):
        indent = len(m["indent"])
        body = "\n".join(line[indent:] for line in m["body"].splitlines())
        found.append(Block(page, text.count("\n", 0, m.start()) + 1, m["lang"], body))
    return found


def without_fences(text: str) -> str:
    return FENCE.sub("", text)


def prose(text: str) -> str:
    """The text outside code blocks and code spans: where links are links."""
    return CODE_SPAN.sub("", without_fences(text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text, lower-cased, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link contributes its text
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    result = {m["name"] for m in HTML_ANCHOR.finditer(text)}
    for m in HEADING.finditer(without_fences(text)):
        base = slug(m["text"])
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def broken_links(page: Path) -> list[str]:
    """Every relative link of the page whose file or anchor does not exist."""
    problems = []
    for m in LINK.finditer(prose(page.read_text())):
        target = m["target"]
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ... are not checked here
            continue
        path, _, fragment = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if ROOT not in resolved.parents and resolved != ROOT:
            problems.append(f"{target}: outside the repository")
        elif not resolved.exists():
            problems.append(f"{target}: no such file")
        elif fragment and (resolved.suffix != ".md" or fragment not in anchors(resolved.read_text())):
            problems.append(f"{target}: no anchor #{fragment} in {resolved.relative_to(ROOT)}")
    return problems


def section(page: Path, heading: str) -> str:
    """The text under a heading, up to the next heading of the same or a higher level."""
    text = page.read_text()
    level = heading.split(" ", 1)[0]
    start = text.index(f"\n{heading}\n") + len(heading) + 2
    following = re.search(rf"^#{{1,{len(level)}}} ", text[start:], re.M)
    return text[start : start + following.start()] if following else text[start:]


def table_rows(text: str) -> list[list[str]]:
    """The cells of every Markdown table row in the text, header and separator rows left out."""
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not re.match(r"^\|[-| :]+\|$", line):
            rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]])
    return rows[1:] if rows else rows


def code_spans(cell: str) -> list[str]:
    return [span.strip("`") for span in CODE_SPAN.findall(cell)]


# --- the Markdown model itself ------------------------------------------------------------


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        pytest.param("Quick start", "quick-start", id="words"),
        pytest.param("Operating it: reload and drain", "operating-it-reload-and-drain", id="colon"),
        pytest.param("`GET /health`", "get-health", id="code-span"),
        pytest.param("What is where in `tests/`", "what-is-where-in-tests", id="code-span-slash"),
        pytest.param("CorsHandlerDown", "corshandlerdown", id="alert-name"),
        pytest.param("Rate limiting (per pod)", "rate-limiting-per-pod", id="parentheses"),
        pytest.param("rate_limit.depth", "rate_limitdepth", id="underscore-kept-dot-dropped"),
        pytest.param("Reload -- and drain", "reload----and-drain", id="hyphens-not-collapsed"),
        pytest.param("**Bold** words", "bold-words", id="emphasis"),
        pytest.param("[Linked](docs/x.md) text", "linked-text", id="link-text"),
        pytest.param("Überblick 2", "überblick-2", id="unicode-letters"),
    ],
)
def test_slug_follows_githubs_rules(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_repeated_headings_get_numbered_anchors_and_fences_are_not_headings() -> None:
    text = "# Usage\n\n## Usage\n\n```sh\n# not a heading\n```\n\n### Usage\n"
    assert anchors(text) == {"usage", "usage-1", "usage-2"}


def test_broken_links_are_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "other.md").write_text("# Other page\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n[ok](other.md#other-page) [self](#title) [gone](missing.md) [anchor](other.md#nope)"
        " [up](../x.md) [web](https://example.com/x) `[code](missing2.md)`\n"
    )
    assert broken_links(page) == [
        "missing.md: no such file",
        "other.md#nope: no anchor #nope in other.md",
        "../x.md: outside the repository",
    ]


# --- links and anchors --------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    assert broken_links(page) == []


def test_the_readme_reaches_every_page_in_one_click() -> None:
    readme = ROOT / "README.md"
    targets = {
        (readme.parent / m["target"].partition("#")[0]).resolve() for m in LINK.finditer(prose(readme.read_text()))
    }
    assert set(PAGES) - {readme} <= targets


def test_the_readme_stays_short() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_no_word_a_reader_cannot_know(page: Path) -> None:
    """Words from the project's own history ("the seed", the code it started from) mean nothing to a reader."""
    assert not re.search(r"\bthe seed\b|\bseed's\b|\bseed (CPU|values|figures)\b", page.read_text(), re.I)


# --- console examples: run them -------------------------------------------------------------


def console_blocks() -> list[Block]:
    return [block for page in PAGES for block in blocks(page) if block.lang == "console"]


def commands(block: Block) -> list[tuple[str, str]]:
    """(command, expected output) for each ``$`` line of a console block."""
    found: list[tuple[str, list[str]]] = []
    lines = block.body.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("$ "):
            command = line[2:]
            while command.endswith("\\"):
                i += 1
                command = command[:-1] + " " + lines[i].strip()
            found.append((command, []))
        else:
            assert found, f"{block.id}: output before any $ command"
            found[-1][1].append(line)
        i += 1
    return [(command, "\n".join(output)) for command, output in found]


@pytest.fixture(scope="module")
def default_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``cors-handler serve`` on its embedded default configuration, as the pages' curl examples use it."""
    server = Server(tmp_path_factory.mktemp("docs"), None, {}, [])
    yield server
    server.stop()
    assert "Traceback" not in server.logs()


def documented_exit(args: list[str], output: str) -> int:
    """The exit code the pages document for ``check``, ``explain`` and ``verify``."""
    if args[0] == "check":
        return 2 if output.startswith("invalid configuration") else 0
    if args[0] == "explain":
        return 0 if "\ndecision: allowed" in f"\n{output}" else 1
    if args[0] == "verify":
        return 0 if output.endswith(" 0 disagree, 0 unreachable") else 1
    raise AssertionError(f"no documented exit code for cors-handler {args[0]}")


def run_example(command: str, server: Server) -> str:
    tokens = shlex.split(command)
    env = {}
    while tokens and re.match(r"^[A-Z_][A-Z0-9_]*=", tokens[0]):
        name, _, value = tokens.pop(0).partition("=")
        env[name] = value
    if tokens[0] == "cors-handler":
        local = [t.replace("http://localhost:8080", f"http://127.0.0.1:{server.port}") for t in tokens[1:]]
        result = run_cli(*local, env=env)
        output = (result.stdout + result.stderr).rstrip("\n")
        assert "Traceback" not in output
        assert result.returncode == documented_exit(tokens[1:], output), output
        return output
    if tokens[0] == "curl":
        assert not env
        local = [t.replace("http://localhost:8080", f"http://127.0.0.1:{server.port}") for t in tokens]
        result = subprocess.run(local, capture_output=True, text=True, timeout=30, check=True)
        return result.stdout.replace("\r\n", "\n").rstrip("\n")
    raise AssertionError(f"no runner for the example command {tokens[0]!r}: run it here or show it in an sh block")


def comparable(output: str) -> str:
    """The output with the parts that change from run to run (the Date header) masked."""
    return re.sub(r"^date: .*$", "date: <now>", output.rstrip("\n"), flags=re.M | re.I)


@pytest.mark.skipif(not Path("/usr/bin/curl").exists(), reason="curl is not installed")
@pytest.mark.parametrize("block", console_blocks(), ids=lambda b: b.id)
@pytest.mark.e2e
def test_console_example_prints_what_the_page_shows(block: Block, default_server: Server) -> None:
    for command, expected in commands(block):
        assert comparable(run_example(command, default_server)) == comparable(expected), command


# --- yaml examples: policies the service accepts ------------------------------------------------


@pytest.mark.parametrize("block", [b for p in PAGES for b in blocks(p) if b.lang == "yaml"], ids=lambda b: b.id)
@pytest.mark.e2e
def test_yaml_example_is_a_valid_policy(block: Block, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    if "apiVersion: gateway.networking.k8s.io/" in block.body:  # an HTTPRoute: a file of the routes directory
        routes = tmp_path / "routes"
        routes.mkdir()
        (routes / "httproute.yaml").write_text(block.body)
        result = run_cli("check", "--routes-dir", str(routes))
        assert result.returncode == 0 and "route source httproute.yaml: applied" in result.stdout, result.stderr
        return
    policy.write_text(block.body)
    result = run_cli("check", "--policy", str(policy))
    assert result.returncode == 0, result.stdout + result.stderr


# --- commands shown, not run: what they name exists ------------------------------------------------


@functools.cache
def cli_flags(subcommand: str) -> frozenset[str]:
    help_text = run_cli(subcommand, "--help").stdout
    return frozenset(re.findall(r"--[a-z][a-z-]*", help_text))


@functools.cache
def chart_values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text())  # type: ignore[no-any-return]


def has_value(path: str) -> bool:
    """Whether ``--set``'s key (dots separate keys, ``\\.`` is a dot inside one) is a value of the chart."""
    node: Any = chart_values()
    for key in (k.replace("\\.", ".") for k in re.split(r"(?<!\\)\.", path)):
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


@functools.cache
def extras() -> frozenset[str]:
    return frozenset(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])


def problems_of(tokens: list[str], created: frozenset[str] = frozenset()) -> Iterator[str]:
    """What is wrong with one shown command: files, modules, extras, flags or values that do not exist.

    ``created``: files the page's commands make themselves (``cp SOURCE TARGET``), not the repository's."""
    while tokens and re.match(r"^[A-Z_][A-Z0-9_]*=", tokens[0]):
        tokens = tokens[1:]
    if not tokens:
        return
    program, args = Path(tokens[0]).name, tokens[1:]
    if program in ("python", "python3") and args[:1] == ["-m"]:
        module = args[1]
        if importlib.util.find_spec(module) is None:
            yield f"no module {module}"
        if module == "pytest":
            yield from (f"no test path {a}" for a in args[2:] if not a.startswith("-") and not (ROOT / a).exists())
    elif program in ("python", "python3", "bash"):
        if args and not args[0].startswith("-") and not (ROOT / args[0]).exists():
            yield f"no script {args[0]}"
    elif program == "cors-handler":
        subcommand = next((a for a in args if not a.startswith("-")), None)
        if subcommand is None and args and set(args) <= {"--version", "--help"}:
            pass  # the top-level flags
        elif subcommand not in ("serve", "check", "explain", "verify", "middleware", "gateway-routes"):
            yield f"no subcommand {subcommand}"
        else:
            for flag in re.findall(r"--[a-z][a-z-]*", " ".join(args)):
                if flag not in cli_flags(subcommand):
                    yield f"cors-handler {subcommand} has no {flag}"
    elif program == "helm":
        for flag, value in itertools.pairwise(args):
            if flag == "--set" and not has_value(value.partition("=")[0]):
                yield f"the chart has no value {value.partition('=')[0]}"
            if flag == "-f" and not (ROOT / value).exists() and value not in created:
                yield f"no values file {value}"
        yield from (f"no chart {a}" for a in args if a.startswith("./") and not (ROOT / a).exists())
    elif program == "pip":
        for arg in args:
            for extra in re.findall(r"^\.\[([\w,-]+)\]$", arg):
                yield from (f"no extra {e}" for e in extra.split(",") if e not in extras())
    elif program == "cp":
        if not (ROOT / args[0]).exists():
            yield f"no file {args[0]}"
    elif program == "locust":
        for flag, value in itertools.pairwise(args):
            if flag == "-f" and not (ROOT / value).exists():
                yield f"no locustfile {value}"


def simple_commands(line: str) -> Iterator[list[str]]:
    """The commands of one shell line, split on && || | ; (``\\.`` kept: it escapes a dot in helm's --set)."""
    tokens = [t.replace("\0", "\\.") for t in shlex.split(line.replace("\\.", "\0"), comments=True)]
    command: list[str] = []
    for token in tokens:
        if token in ("&&", "||", "|", ";"):
            yield command
            command = []
        else:
            command.append(token)
    if command:
        yield command


def shown_commands(page: Path) -> Iterator[str]:
    """The command lines of the page's sh blocks, and its inline code that is a command."""
    for block in blocks(page):
        if block.lang == "sh":
            yield from block.body.replace("\\\n", " ").splitlines()
    for span in CODE_SPAN.findall(without_fences(page.read_text())):
        text = span.strip("`")
        if re.match(r"^(cors-handler|helm|python3? -m|\.venv/bin/python -m|bash) ", text):
            yield text
        elif text.startswith("--set "):
            yield f"helm upgrade {text}"


@functools.cache
def page_commands(page: Path) -> list[tuple[str, list[str]]]:
    """(line, tokens) of each simple command the page shows."""
    commands = []
    for line in shown_commands(page):
        try:
            commands += [(line, tokens) for tokens in simple_commands(line.replace("[", " ").replace("]", " "))]
        except ValueError:  # an unbalanced quote: prose, not a command
            continue
    return commands


@pytest.mark.parametrize("page", PAGES, ids=page_id)
@pytest.mark.e2e
def test_shown_commands_name_what_exists(page: Path) -> None:
    """Files the pages tell the reader to make (``cp SOURCE my-values.yaml``) count as existing on every page."""
    created = frozenset(tokens[-1] for other in PAGES for _, tokens in page_commands(other) if tokens[0] == "cp")
    problems = [f"{line}: {p}" for line, tokens in page_commands(page) for p in problems_of(tokens, created)]
    assert problems == []


@pytest.mark.e2e
def test_a_wrong_command_is_caught() -> None:
    assert list(problems_of(["cors-handler", "serve", "--hots", "127.0.0.1"])) == ["cors-handler serve has no --hots"]
    assert list(problems_of(["helm", "upgrade", "x", "./helm/cors-handler", "--set", "traefik.nope=1"])) == [
        "the chart has no value traefik.nope"
    ]
    assert list(problems_of(["python", "-m", "loadtests.nothing"])) == ["no module loadtests.nothing"]
    assert has_value("networkPolicy.traefik.namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name")
    assert not has_value("networkPolicy.traefik.namespaceSelector.matchLabels.kubernetes.io/metadata.name")


# --- tables that restate the code ---------------------------------------------------------------


def documented_settings() -> dict[str, str]:
    """Setting name -> documented default, from docs/configuration.md's settings table."""
    documented = {}
    for name_cell, default_cell, _ in table_rows(section(ROOT / "docs" / "configuration.md", "## Settings")):
        names, defaults = code_spans(name_cell), code_spans(default_cell)
        prefix = names[0].rpartition(".")[0]
        names = [names[0]] + [f"{prefix}.{n}" if prefix else n for n in names[1:]]
        assert len(defaults) == len(names), name_cell
        documented.update(zip(names, defaults, strict=True))
    return documented


def code_defaults() -> dict[str, Any]:
    from cors_handler.config.settings import RateLimitSettings, Settings

    defaults: dict[str, Any] = {}
    for name, field in Settings.model_fields.items():
        if name.endswith("policy_file") or name == "routes_dir":  # where a policy comes from: "Sources and precedence"
            continue
        if name == "rate_limit":
            for sub, subfield in RateLimitSettings.model_fields.items():
                defaults[f"rate_limit.{sub}"] = subfield.get_default(call_default_factory=True)
        else:
            defaults[name] = field.get_default(call_default_factory=True)
    return defaults


def test_the_settings_table_lists_every_setting_with_its_default() -> None:
    documented = documented_settings()
    defaults = code_defaults()
    assert sorted(documented) == sorted(defaults)
    for name, value in defaults.items():
        assert yaml.safe_load(documented[name]) == value, name


def exposed_families(server: Server) -> dict[str, set[str]]:
    """cors_* metric families of a running service -> the label names of their samples."""
    text = server.request("GET", "/metrics").body.decode()
    families = {m[1]: set() for m in re.finditer(r"^# TYPE (cors_\w+) (\w+)$", text, re.M)}
    for name in families:
        base = re.escape(name)
        for labels in re.findall(rf"^{base}(?:_bucket|_sum|_count|_created)?\{{([^}}]*)\}}", text, re.M):
            families[name] |= {label.split("=")[0] for label in labels.split(",") if label} - {"le"}
    return families


NO_SAMPLES_WITHOUT_ROUTES_DIR = {"cors_policy_source_valid"}  # one series per file of the routes directory


@pytest.mark.e2e
def test_the_metrics_table_lists_every_metric_with_its_labels(default_server: Server) -> None:
    documented = {}
    for name_cell, _, labels_cell, *_ in table_rows(section(ROOT / "docs" / "monitoring.md", "## Metrics")):
        for name in code_spans(name_cell):
            documented[name] = set(code_spans(labels_cell))
    exposed = exposed_families(default_server)
    assert set(exposed) <= set(documented)
    for name, labels in exposed.items():
        # a family without samples here (cors_policy_source_valid: no routes directory) shows no label names
        assert labels == documented[name] or (not labels and name in NO_SAMPLES_WITHOUT_ROUTES_DIR), name
    source = "".join(p.read_text() for p in (ROOT / "cors_handler").rglob("*.py"))
    for name in documented:
        family = re.sub(r"_(total|info)$", "", name)  # prometheus-client adds the suffix to the family's name
        assert f'"{family}"' in source or f'"{name}"' in source, f"{name} is not in the code"


def test_the_alerts_table_lists_exactly_the_charts_alerts_and_runbook_urls_resolve() -> None:
    from .deploy.chart import environment_values, objects

    monitoring = ROOT / "docs" / "monitoring.md"
    rules = [
        rule
        for obj in objects(environment_values("production"))
        if obj["kind"] == "PrometheusRule"
        for group in obj["spec"]["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]
    documented = {code_spans(row[0])[0] for row in table_rows(section(monitoring, "## Alerts"))}
    assert documented == {rule["alert"] for rule in rules}
    runbooks = anchors(monitoring.read_text())
    for rule in rules:
        url = rule.get("annotations", {}).get("runbook_url")
        if url is not None:
            path, _, anchor = url.partition("#")
            assert path.endswith("docs/monitoring.md"), url
            assert anchor == slug(rule["alert"]) and anchor in runbooks, url


@pytest.mark.e2e
def test_every_dependency_is_named_in_contributing() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for group in project["optional-dependencies"].values() for r in group]
    names = {re.match(r"^[A-Za-z0-9_.-]+", r)[0].lower() for r in requirements}  # type: ignore[index]
    listed = section(ROOT / "CONTRIBUTING.md", "## Dependencies").lower()
    assert sorted(n for n in names - {"cors-handler"} if n not in listed) == []


def test_the_python_version_is_the_one_the_package_requires() -> None:
    required = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert required.startswith(">=")
    assert f"Python {required[2:]} or newer" in (ROOT / "README.md").read_text()


def test_table_costs_in_the_docs_are_what_the_code_costs() -> None:
    """The bytes per tracked client, per cached refusal and per allowed answer, as stated everywhere, against a
    measurement."""
    from loadtests.memory import table_costs

    texts = {page_id(p): p.read_text() for p in PAGES}
    texts["cors_handler/serve/ratelimit.py"] = (ROOT / "cors_handler" / "serve" / "ratelimit.py").read_text()
    measured = table_costs()
    for what in ("tracked client", "cached refusal", "cached allowed answer"):
        stated = {int(n) for text in texts.values() for n in re.findall(rf"(\d+) bytes per {what}", text)}
        assert len(stated) == 1, (what, stated)
        actual = int(re.search(rf"(\d+) bytes per {what}", measured)[1])  # type: ignore[index]
        assert abs(stated.pop() - actual) <= 0.2 * actual, measured


def test_the_kubernetes_version_is_the_one_the_chart_requires() -> None:
    required = yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"]
    minimum = re.match(r"^>=\s*(\d+\.\d+)", required)[1]  # type: ignore[index]
    stated = {v for p in PAGES for v in re.findall(r"Kubernetes (\d+\.\d+) or (?:newer|later)", p.read_text())}
    assert stated == {minimum}


def environment_examples() -> list[tuple[str, str]]:
    """``CORS_NAME=value`` shown in inline code (complete ones: an elided ``...`` is not an example to run)."""
    found = []
    for page in PAGES:
        for span in CODE_SPAN.findall(without_fences(page.read_text())):
            m = re.match(r"^`(CORS_[A-Z0-9_]+)=(.*)`$", span)
            if m and "..." not in m[2]:
                found.append((m[1], shlex.split(m[2])[0] if m[2] else ""))
    return found


@pytest.mark.parametrize(("name", "value"), environment_examples(), ids=lambda x: x if x.startswith("CORS_") else "")
@pytest.mark.e2e
def test_environment_example_names_a_setting_and_takes_effect(name: str, value: str) -> None:
    from cors_handler.config.settings import Settings

    field, _, sub = name.removeprefix("CORS_").lower().partition("__")
    assert field in Settings.model_fields, name
    if sub:
        annotation = Settings.model_fields[field].annotation
        assert sub in getattr(annotation, "model_fields", {}), name
    result = run_cli("check", env={name: value})
    assert result.returncode == 0, result.stdout + result.stderr
    for item in value.split(","):
        assert item in result.stdout, f"{item} not in the compiled policy:\n{result.stdout}"


NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


@pytest.mark.parametrize(
    ("page", "phrase", "constant"),
    [
        pytest.param("README.md", "Origin over {} bytes", "cors.limits.MAX_ORIGIN_BYTES", id="origin-bytes"),
        pytest.param("README.md", "method over {} bytes", "cors.limits.MAX_METHOD_BYTES", id="method-bytes"),
        pytest.param("README.md", "request headers over {} bytes", "cors.limits.MAX_REQUEST_HEADERS_BYTES", id="acrh"),
        pytest.param(
            "README.md", "more than {} distinct headers", "cors.limits.MAX_REQUEST_HEADER_NAMES", id="acrh-names"
        ),
        pytest.param("CONTRIBUTING.md", "at most {} headers", "cors.limits.MAX_HEADERS", id="head-headers"),
        pytest.param("CONTRIBUTING.md", "headers and {} KiB", "cors.limits.MAX_HEAD_BYTES/1024", id="head-bytes"),
        pytest.param(
            "docs/performance.md", "Keys over {} KiB", "cors.limits.MAX_CACHED_KEY_BYTES/1024", id="cache-key"
        ),
        pytest.param("docs/performance.md", "min(cache_size, {})", "cors.limits.HEAD_MEMO_SIZE", id="memo-size"),
        pytest.param("docs/performance.md", "of at most {} KiB", "cors.limits.MAX_MEMO_HEAD_BYTES/1024", id="memo"),
        pytest.param(
            "docs/configuration.md", "above {} accepted", "config.routes.MAX_AGE_BROWSER_CAP", id="max-age-cap"
        ),
        pytest.param("docs/operations.md", "allowance ({} s)", "http.server.GRACEFUL_SHUTDOWN_SECONDS", id="grace"),
        pytest.param("docs/operations.md", "bounded ({} keys)", "cors.limits.MAX_LOGGED_KEYS", id="candidate-log"),
        pytest.param(
            "SECURITY.md", "at most {} are parsed and queued", "cors.limits.MAX_PIPELINED_REQUESTS", id="pipelined"
        ),
        pytest.param("docs/operations.md", "after {} attempts", "config.policyfile.READ_ATTEMPTS", id="read-attempts"),
        pytest.param("docs/operations.md", "within {} ms after", "config.policyfile.SETTLE_SECONDS*1000", id="settle"),
        pytest.param(
            "docs/operations.md", "not been written for **{} seconds**", "config.policyfile.QUIET_SECONDS*1", id="quiet"
        ),
        pytest.param(
            "docs/configuration.md", "tracked clients, at most {} (", "cors.limits.MAX_RATE_LIMIT_CLIENTS", id="clients"
        ),
        pytest.param("docs/configuration.md", "responses, at most {} (", "cors.limits.MAX_CACHE_SIZE", id="cache-size"),
    ],
)
def test_limits_stated_are_the_codes(page: str, phrase: str, constant: str) -> None:
    module, _, expression = constant.rpartition(".")
    name, op, factor = re.fullmatch(r"(\w+)(?:([/*])(\d+))?", expression).groups()  # type: ignore[union-attr]
    value = getattr(importlib.import_module(f"cors_handler.{module}"), name)
    if op:  # the unit the page uses: KiB, ms
        value = round(value / int(factor) if op == "/" else value * int(factor))
    text = " ".join((ROOT / page).read_text().split())  # lines wrap anywhere
    spellings = {phrase.format(value)}
    if isinstance(value, int) and 0 <= value < len(NUMBER_WORDS):
        spellings.add(phrase.format(NUMBER_WORDS[value]))
    assert any(s in text for s in spellings), f"{page} should say {phrase.format(value)!r} ({constant})"


# One request per row of the README's answers table (case -> method, path, headers), sent to a
# service whose policy has a disabled route and a one-token bucket per client. Each row gets
# its own X-Forwarded-For client, but "rate limited", which sends the same client twice.
ANSWERS_POLICY = {
    "routes": [{"name": "legacy", "path_prefix": "/legacy", "enabled": False}],
    "rate_limit": {"average": 1, "period": 3600, "burst": 1, "depth": 1},
}
PREFLIGHT = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "PUT"}
ANSWERS: dict[str, list[tuple[str, str, dict[str, str]]]] = {
    "allowed preflight": [("OPTIONS", "/api/orders", PREFLIGHT)],
    "rejected preflight": [("OPTIONS", "/api/orders", {**PREFLIGHT, "Origin": "https://evil.example"})],
    "malformed preflight": [("OPTIONS", "/api/orders", {**PREFLIGHT, "Origin": "https://app.example.com/"})],
    "`OPTIONS` that is not a preflight": [("OPTIONS", "/api/orders", {"Origin": "https://app.example.com"})],
    "rate limited": [("OPTIONS", "/api/orders", PREFLIGHT)] * 2,
    "preflight on a disabled route": [("OPTIONS", "/legacy/x", PREFLIGHT)],
    "`GET /health`": [("GET", "/health", {})],
    "`GET /ready`": [("GET", "/ready", {})],
    "`GET /metrics`": [("GET", "/metrics", {})],
    "other methods": [("POST", "/api/orders", {}), ("DELETE", "/health", {})],
}
NOT_PROVOKED = {"unexpected error"}  # a bug, by definition: tests/test_app.py provokes one inside the app


@pytest.mark.e2e
def test_every_answer_in_the_readme_is_what_the_service_answers(tmp_path: Path) -> None:
    rows = table_rows(section(ROOT / "README.md", "## What it answers"))
    assert {case for case, *_ in rows} == set(ANSWERS) | NOT_PROVOKED
    server = Server(tmp_path, ANSWERS_POLICY, {}, [])
    try:
        for n, (case, status, _) in enumerate(rows):
            if case in NOT_PROVOKED:
                continue
            documented = {int(s) for s in re.findall(r"\d{3}", status)}
            for method, path, headers in ANSWERS[case]:
                answer = server.request(method, path, {**headers, "X-Forwarded-For": f"192.0.2.{n}"}, fresh=True)
            assert answer.status in documented, (case, answer.status, answer.body)
    finally:
        server.stop()
    assert "Traceback" not in server.logs()


def measured_runs() -> list[tuple[Block, str]]:
    """Each block of measurements in the pages (a table with requests/s), with the paragraph before it."""
    runs = []
    for page in PAGES:
        text = page.read_text()
        for block in blocks(page):
            if block.lang == "" and "requests/s" in block.body:
                before = "\n".join(text.splitlines()[: block.line - 1]).rsplit("\n\n", 2)
                runs.append((block, " ".join(" ".join(before[-2:]).split())))
    return runs


@pytest.mark.parametrize(("block", "context"), measured_runs(), ids=lambda x: x.id if isinstance(x, Block) else "")
@pytest.mark.e2e
def test_every_measurement_says_when_on_what_commit_and_machine(block: Block, context: str) -> None:
    assert re.search(r"\b20\d\d-\d\d-\d\d\b", context), f"{block.id}: no date before the table"
    commit = re.search(r"\bcommit ([0-9a-f]{7,40})\b", context)
    assert commit, f"{block.id}: no commit before the table"
    assert re.search(r"machine|vCPU|cores?\b", context), f"{block.id}: no machine before the table"
    git = ["git", "-C", str(ROOT)]
    shallow = subprocess.run([*git, "rev-parse", "--is-shallow-repository"], capture_output=True, text=True)
    if shallow.returncode == 0 and shallow.stdout.strip() == "false":
        known = subprocess.run([*git, "cat-file", "-e", f"{commit[1]}^{{commit}}"], capture_output=True)
        assert known.returncode == 0, f"{block.id}: commit {commit[1]} is not in this repository's history"


def test_contributing_names_every_debian_package_the_test_script_installs() -> None:
    script = (ROOT / "scripts" / "test.sh").read_text()
    packages = set(re.findall(r"need_apt\+=\(([\w-]+)\)", script))
    loop = re.search(r"for tool in ([\w\s-]+); do\n[^\n]*need_apt\+=\(\"\$tool\"\)", script)
    packages |= set(loop[1].split()) if loop else set()
    assert len(packages) >= 5, packages
    listed = section(ROOT / "CONTRIBUTING.md", "## Running the tests")
    assert sorted(p for p in packages if f"`{p}`" not in listed) == []


def test_contributing_names_every_module() -> None:
    package = ROOT / "cors_handler"
    modules = {".".join(p.relative_to(package).with_suffix("").parts) for p in package.rglob("*.py")}
    modules = {m for m in modules if m.rpartition(".")[2] not in ("__init__", "__main__")}
    layout = section(ROOT / "CONTRIBUTING.md", "## Code layout")
    assert sorted(m for m in modules if f"`{m}`" not in layout) == []


@pytest.mark.e2e
def test_the_latency_buckets_stated_are_the_histograms(default_server: Server) -> None:
    text = default_server.request("GET", "/metrics").body.decode()
    bounds = sorted(float(le) for le in re.findall(r'^cors_request_duration_seconds_bucket\{le="([^"+]+)"', text, re.M))
    stated = re.search(r"buckets from (\d+) µs to (\d+) s", (ROOT / "docs" / "monitoring.md").read_text())
    assert stated, "docs/monitoring.md should state the histogram's buckets"
    assert (round(bounds[0] * 1e6), bounds[-1]) == (int(stated[1]), float(stated[2]))


# --- what a new user meets first (issue 29) --------------------------------------------------


def test_every_page_runs_the_command_line_as_cors_handler() -> None:
    """The README's quick start activates the venv; no page then spells the command another way."""
    spellings = {
        (page_id(block.page), spelling)
        for page in PAGES
        for block in blocks(page)
        if block.lang in ("sh", "console")
        for spelling in re.findall(r"(?:^|[\s$])(\S*bin/cors-handler)\s", block.body)
    }
    assert spellings == set()
    quick_start = section(ROOT / "README.md", "## Quick start")
    assert ". .venv/bin/activate" in quick_start


def test_the_benchs_run_time_is_stated_the_same_everywhere() -> None:
    stated = {
        (where, minutes)
        for where in ("docs/performance.md", "loadtests/bench.py")
        for minutes in re.findall(
            r"--duration 5 --rounds 3`?[^\n]*?(?:\n[^\n]*?)?about\s+(\d+)\s+minutes", (ROOT / where).read_text()
        )
    }
    assert {where for where, _ in stated} == {"docs/performance.md", "loadtests/bench.py"}, stated
    assert len({minutes for _, minutes in stated}) == 1, stated


def test_private_network_access_is_never_presented_as_current() -> None:
    """Chrome replaced PNA with Local Network Access: every paragraph that names PNA says it is the older one."""
    texts = [(page_id(page), page.read_text()) for page in PAGES if page.name != "CONTRIBUTING.md"]  # its table: tested
    texts.append(("values.yaml", (CHART / "values.yaml").read_text()))
    stale = [
        (where, paragraph[:80])
        for where, text in texts
        for paragraph in re.split(r"\n\s*\n|\n(?=\s*# --)", text)
        if "Private Network Access" in paragraph and not re.search(r"older|Local Network Access", paragraph)
    ]
    assert stale == []
    assert "## Private Network Access and Local Network Access" in (ROOT / "docs" / "operations.md").read_text()


def test_no_page_says_the_chart_runs_check() -> None:
    """The chart validates values with its schema; `cors-handler check` is the user's, in CI."""
    claims = [
        (page_id(page), m[0])
        for page in PAGES
        for m in re.finditer(
            r"[^.]*\bchart (?:runs|calls|executes)\b[^.]*check[^.]*|[^.]*check[^.]*; the chart runs it",
            page.read_text(),
        )
    ]
    assert claims == []


def test_every_test_file_the_pages_name_exists() -> None:
    """A page that names a test as the proof of what it says names a file that is there (tests move with modules)."""
    named = {
        (page_id(page), path)
        for page in [*PAGES, ROOT / "CONTRIBUTING.md", ROOT / "SECURITY.md"]
        for path in re.findall(r"(?<![\w/])(tests/[\w/]+\.py)", page.read_text())
    }
    assert sorted((page, path) for page, path in named if not (ROOT / path).exists()) == []

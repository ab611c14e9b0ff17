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
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from .chart import RELEASE, environment_values, objects, one
from .pod import service_url
from .tools import ROOT, tool

pytestmark = pytest.mark.e2e  # renders with the Helm engine and starts processes

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


def security_flags(context: dict[str, Any]) -> list[str]:
    """podman's flags for a rendered container securityContext (what the kubelet would enforce)."""
    assert context["runAsNonRoot"] and context["capabilities"] == {"drop": ["ALL"]}
    flags = ["--user", f"{context['runAsUser']}:{context['runAsGroup']}", "--cap-drop=ALL"]
    if context["readOnlyRootFilesystem"]:
        flags += ["--read-only", "--read-only-tmpfs=false"]
    if not context["allowPrivilegeEscalation"]:
        flags.append("--security-opt=no-new-privileges")
    return flags


def test_the_helm_test_pod_runs_verify_in_the_image_against_the_release(
    podman: dict[str, str], image: str, tmp_path: Path
) -> None:
    """The rendered test pod's args in the image, as the pod runs them: its securityContext, the ConfigMap
    mounted read-only where it mounts it; next to a container running the Deployment's args, in one network
    namespace with nothing but loopback, where the Service's name resolves to 127.0.0.1."""
    docs = objects(environment_values("production"))
    [tester] = one(docs, "Pod")["spec"]["containers"]
    [server] = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    configmap = tmp_path / "configmap"
    configmap.mkdir()
    for key, text in one(docs, "ConfigMap", RELEASE)["data"].items():
        (configmap / key).write_text(text)
    [mount] = tester["volumeMounts"]
    assert mount["readOnly"] and server["volumeMounts"] == [mount]
    volume = ["-v", f"{configmap}:{mount['mountPath']}:ro"]
    hosts = tmp_path / "hosts"
    hosts.write_text(f"127.0.0.1 localhost {service_url(docs, RELEASE).split('//')[1].split(':')[0]}\n")
    pod = f"cors-handler-test-{os.getpid()}"
    podman_out(podman, "pod", "create", "--name", pod, "--network", "none")
    try:
        serving = podman_out(podman, "run", "-d", "--pod", pod, *security_flags(server["securityContext"]), *volume,
                             image, *server["args"])  # fmt: skip
        ready = "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/ready', timeout=1)"
        deadline = time.monotonic() + 30
        while subprocess.run(["podman", "exec", serving, "/opt/cors-handler/bin/python", "-c", ready], env=podman,
                             capture_output=True).returncode != 0:  # fmt: skip
            assert time.monotonic() < deadline, podman_out(podman, "logs", serving)
            time.sleep(0.3)
        done = subprocess.run(
            ["podman", "run", "--rm", "--pod", pod, *security_flags(tester["securityContext"]), *volume,
             "-v", f"{hosts}:/etc/hosts:ro", image, *tester["args"]],
            env=podman, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        summary = re.search(r"^verify: (\d+) cases, (\d+) agree, 0 disagree, 0 unreachable$", done.stdout, re.M)
        assert done.returncode == 0 and summary and summary[1] == summary[2] != "0", done.stdout + done.stderr
        policy = yaml.safe_load((configmap / "policy.yaml").read_text())
        assert int(summary[1]) > len(policy["allow_origins"])  # every origin and its lookalikes, not one curl
    finally:
        subprocess.run(["podman", "pod", "rm", "-f", pod], env=podman, capture_output=True)


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

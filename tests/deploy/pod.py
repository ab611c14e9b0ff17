"""Run a rendered Pod's container on loopback, as the kubelet would run it from the service's image.

What the container gets in a cluster, and what stands for it here:

- its command: the container's ``command``, else the image's ENTRYPOINT (read from the
  Dockerfile), then its ``args``; the image's ``/opt/cors-handler/bin/cors-handler`` is this
  checkout's ``python -m cors_handler``;
- its files: each ``configMap`` volume mounted at ``mountPath`` becomes a directory holding that
  rendered ConfigMap's keys, and every argument naming a file under ``mountPath`` is rewritten to
  it;
- its network: ``http://<Service>:<port>`` resolves to the Service's pods; ``service_urls`` (one
  per rendered Service URL) says where those pods listen on loopback. An argument that still
  names another host afterwards is refused, so nothing leaves 127.0.0.1;
- its environment: the container's ``env`` (literal values only) and nothing from this shell's
  ``CORS_*`` variables; its working directory an empty one (the pod's root file system is
  read-only: ``run`` reports anything written there).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .chart import one
from .tools import ROOT

IMAGE_PROGRAMS = {"/opt/cors-handler/bin/cors-handler": [sys.executable, "-m", "cors_handler"]}


def entrypoint() -> list[str]:
    """The image's ENTRYPOINT (exec form), from the Dockerfile the image is built from."""
    [line] = [line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("ENTRYPOINT ")]
    program: list[str] = json.loads(line.removeprefix("ENTRYPOINT "))
    return program


def service_url(docs: list[dict[str, Any]], name: str, port_name: str = "http") -> str:
    """``http://<name>:<port>``: how a pod in the namespace reaches the rendered Service ``name``."""
    [port] = [p for p in one(docs, "Service", name)["spec"]["ports"] if p["name"] == port_name]
    return f"http://{name}:{port['port']}"


@dataclass(frozen=True)
class LocalPod:
    """The container of one rendered Pod, made runnable here."""

    argv: list[str]
    env: dict[str, str]
    workdir: Path  # the container's working directory: empty, and it must stay so

    def run(self, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(self.argv, capture_output=True, text=True, env=self.env, cwd=self.workdir,
                              timeout=timeout)  # fmt: skip
        written = sorted(p.name for p in self.workdir.iterdir())
        assert written == [], f"the container wrote {written} (its root file system is read-only)"
        return done


def local_pod(pod: dict[str, Any], docs: list[dict[str, Any]], workdir: Path, service_urls: dict[str, str]) -> LocalPod:
    """``pod`` (a rendered Pod with one container) as a local process; its files under ``workdir``."""
    spec = pod["spec"]
    [container] = spec["containers"]
    program = container.get("command") or entrypoint()
    argv = [*IMAGE_PROGRAMS.get(program[0], program[:1]), *program[1:], *container.get("args", [])]

    mounts: dict[str, Path] = {}
    for mount in container.get("volumeMounts", []):
        [volume] = [v for v in spec["volumes"] if v["name"] == mount["name"]]
        directory = workdir / "volumes" / mount["name"]
        directory.mkdir(parents=True)
        for key, text in one(docs, "ConfigMap", volume["configMap"]["name"])["data"].items():
            (directory / key).write_text(text)
        mounts[mount["mountPath"].rstrip("/") + "/"] = directory

    def localize(arg: str) -> str:
        for path, directory in mounts.items():
            if arg.startswith(path):
                return str(directory / arg.removeprefix(path))
        for url, local in service_urls.items():
            if arg == url or arg.startswith(url + "/"):
                arg = local + arg.removeprefix(url)
        for host in re.findall(r"https?://([^/:]+)", arg):
            assert host == "127.0.0.1", f"{arg}: names no Service of the release ({sorted(service_urls)})"
        return arg

    env = {k: v for k, v in os.environ.items() if not k.startswith("CORS_")}
    for variable in container.get("env", []):
        env[variable["name"]] = variable["value"]  # valueFrom: not rendered by this chart
    cwd = workdir / "cwd"
    cwd.mkdir()
    return LocalPod([localize(arg) for arg in argv], env, cwd)

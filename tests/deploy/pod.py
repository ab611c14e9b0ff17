"""Run a rendered Pod's container on loopback, as the kubelet would run it from the service's image.

What the container gets in a cluster, and what stands for it here:

- its command: the container's ``command``, else the image's ENTRYPOINT (read from the
  Dockerfile), then its ``args``; the image's ``/opt/cors-handler/bin/cors-handler`` is this
  checkout's ``python -m cors_handler``;
- its files: each ``configMap`` volume mounted at ``mountPath`` becomes a directory holding that
  rendered ConfigMap's keys, each ``projected`` one the items of the ConfigMaps it names (``docs``
  holds them: a team's ConfigMap is not rendered by the chart) laid out as the kubelet writes them
  (``..data``), and every argument or environment value naming a path under ``mountPath`` is
  rewritten to it;
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
        write_volume(volume, docs, directory)
        mounts[mount["mountPath"].rstrip("/") + "/"] = directory

    def localize(arg: str) -> str:
        for path, directory in mounts.items():
            if arg.startswith(path) or arg == path.rstrip("/"):
                return str(directory / arg.removeprefix(path.rstrip("/")).lstrip("/"))
        for url, local in service_urls.items():
            if arg == url or arg.startswith(url + "/"):
                arg = local + arg.removeprefix(url)
        for host in re.findall(r"https?://([^/:]+)", arg):
            assert host == "127.0.0.1", f"{arg}: names no Service of the release ({sorted(service_urls)})"
        return arg

    env = {k: v for k, v in os.environ.items() if not k.startswith("CORS_")}
    for variable in container.get("env", []):
        env[variable["name"]] = localize(variable["value"])  # valueFrom: not rendered by this chart
    cwd = workdir / "cwd"
    cwd.mkdir()
    return LocalPod([localize(arg) for arg in argv], env, cwd)


def write_volume(volume: dict[str, Any], docs: list[dict[str, Any]], directory: Path) -> None:
    """A ``configMap`` volume as plain files of its keys; a ``projected`` one as the kubelet's atomic writer lays
    it out: the files in a timestamped directory, ``..data`` linking to it, one link per file to ``..data/<file>``.
    An ``optional`` ConfigMap that ``docs`` lacks (or a key it lacks) is no file, as in a cluster."""
    directory.mkdir(parents=True)
    if "configMap" in volume:
        for key, text in one(docs, "ConfigMap", volume["configMap"]["name"])["data"].items():
            (directory / key).write_text(text)
        return
    files: dict[str, str] = {}
    for source in volume["projected"]["sources"]:
        config_map = source["configMap"]
        found = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == config_map["name"]]
        assert found or config_map.get("optional"), f"ConfigMap {config_map['name']} is missing and not optional"
        data = found[0].get("data", {}) if found else {}
        for item in config_map.get("items") or [{"key": key, "path": key} for key in data]:
            if item["key"] in data:
                files[item["path"]] = data[item["key"]]
            else:
                assert config_map.get("optional"), f"{config_map['name']} has no key {item['key']}"
    swap_projection(directory, files)


def swap_projection(directory: Path, files: dict[str, str]) -> None:
    """Write ``files`` as a new timestamped generation and swap ``..data`` to it (a ConfigMap update)."""
    generations = sorted(directory.glob("..20*"))
    generation = directory / f"..2026_01_01_00_00_00.{len(generations):09d}"
    generation.mkdir()
    for name, text in files.items():
        (generation / name).write_text(text)
    staged = directory / "..data_tmp"
    staged.symlink_to(generation.name)
    staged.replace(directory / "..data")
    for name in files:
        link = directory / name
        if not link.is_symlink():
            link.symlink_to(f"..data/{name}")
    for link in directory.iterdir():
        if not link.name.startswith("..") and link.name not in files:
            link.unlink()  # a file the update removed
    for old in generations:
        for stale in old.iterdir():
            stale.unlink()
        old.rmdir()

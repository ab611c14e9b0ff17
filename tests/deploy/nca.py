"""Connectivity computed by network-config-analyzer (the ``nca`` tool, np-guard), not by our own code.

nca reads NetworkPolicies, Namespaces and Pods/Deployments as YAML and reports which
endpoints may connect to which, on which ports, as Kubernetes would enforce it. The cluster
here is a model: the rendered Deployment and helm-test Pod, plus the pods and namespaces a
test names (their labels are what the policies select on). scripts/test.sh installs nca in
its own venv (.venv-nca: its exact pins must not move the service's).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from .netpol import Pod
from .tools import tool

Endpoint = tuple[str, str]  # (namespace, workload name), or ("", address range) outside the cluster


def _pod(name: str, pod: Pod) -> dict[str, Any]:
    ports = [{"name": n, "containerPort": p} for n, p in pod.ports.items()]
    container = {"name": "main", "image": "example", **({"ports": ports} if ports else {})}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": pod.namespace,
            "labels": pod.labels}, "spec": {"containers": [container]}}  # fmt: skip


def connectivity(
    workdir: Path, docs: list[dict[str, Any]], namespace: str, pods: dict[str, Pod]
) -> set[tuple[Endpoint, Endpoint, str]]:
    """(source, destination, connection) for every connection the policies allow, as nca lists them."""
    workloads = [d for d in docs if d["kind"] in ("Deployment", "Pod")]
    for workload in workloads:
        workload["metadata"]["namespace"] = namespace
    namespaces: dict[str, dict[str, str]] = {namespace: {"kubernetes.io/metadata.name": namespace}}
    for pod in pods.values():
        namespaces[pod.namespace] = pod.namespace_labels
    (workdir / "policies.yaml").write_text(yaml.safe_dump_all([d for d in docs if d["kind"] == "NetworkPolicy"]))
    (workdir / "pods.yaml").write_text(yaml.safe_dump_all(workloads + [_pod(n, p) for n, p in pods.items()]))
    (workdir / "namespaces.yaml").write_text(yaml.safe_dump_all(
        [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n, "labels": labels}}
         for n, labels in namespaces.items()]))  # fmt: skip
    out = workdir / "connectivity.txt"
    done = subprocess.run(
        [tool("nca"), "--connectivity", str(workdir / "policies.yaml"), "--pod_list", str(workdir / "pods.yaml"),
         "--ns_list", str(workdir / "namespaces.yaml"), "--output_format", "txt_no_fw_rules", "--file_out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0 and out.exists(), done.stdout + done.stderr
    # one line per allowed pair: "api/x[Pod] => api/cors-handler[Deployment] : {protocols:TCP,dst_ports:8080}",
    # an address range instead of ns/name[Kind] for what is outside the cluster
    line = re.compile(r"(\S+) => (\S+) : (.+)")
    allowed = set()
    for text in out.read_text().splitlines():
        if (m := line.fullmatch(text.strip())) is not None:
            source, destination = (_endpoint(m[i]) for i in (1, 2))
            allowed.add((source, destination, m[3]))
    assert allowed, out.read_text()
    return allowed


def _endpoint(text: str) -> Endpoint:
    m = re.fullmatch(r"([^/\[]+)/([^\[]+)\[\w+\]", text)
    return (m[1], m[2]) if m else ("", text)


def reaches(allowed: set[tuple[Endpoint, Endpoint, str]], source: Endpoint, destination: Endpoint, port: int,
            protocol: str = "TCP") -> bool:  # fmt: skip
    """Whether nca lists ``source`` -> ``destination`` with ``port``/``protocol`` among its connections."""
    for s, d, connection in allowed:
        if (s, d) != (source, destination):
            continue
        if connection == "All connections":
            return True
        for protocols, ports in re.findall(r"\{protocols:([A-Z, ]+),dst_ports:([0-9,\- ]+)\}", connection):
            if protocol not in protocols.split(", "):
                continue
            for item in ports.split(","):
                low, _, high = item.strip().partition("-")
                if int(low) <= port <= int(high or low):
                    return True
    return False

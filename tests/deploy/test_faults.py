"""No single point of failure: replicas lost under load, rolling updates and policy skew, through real Traefik.

Three ``cors-handler serve`` processes are the endpoints of the chart's Service; real Traefik is
configured from the rendered IngressRoute, Middlewares and service entry (tests/deploy/traefik.py);
``faults.Cluster`` changes the endpoints when Kubernetes would. Under steady load every answer is
checked: a preflight fails when it gets no answer in time, a 5xx from Traefik, or any answer
other than the one a fresh replica on a policy in force gives.

The numbers (preflights, failures, the longest gap without a good answer, p99) are printed for
each phase; docs/operations.md records a long run. CORS_TEST_LONG=1 runs the long variant (more
load, longer steady periods, two rounds of faults, a kubelet-like stagger of the ConfigMap update).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from cors_handler.tools.verify import NO_MARKER

from ..conftest import Server, wait_for
from .chart import RELEASE, environment_values, objects, one
from .faults import ENDPOINT_DELAY, Cluster, Load, Phase, Preflight, Report, Sample, Signature, judge
from .test_verify_deploy import Run as VerifyRun
from .traefik import Backend, Traefik, dynamic_config, start_traefik

pytestmark = pytest.mark.e2e

LONG = os.environ.get("CORS_TEST_LONG") == "1"
RATE = 2500.0 if LONG else 1500.0  # preflights per second through Traefik
STEADY = 10.0 if LONG else 1.0  # seconds of steady load before, between and after faults
ROUNDS = 2 if LONG else 1
STAGGER = 20.0 if LONG else 1.5  # seconds between the ConfigMap update reaching one replica and the next
RESTART_AFTER = 2.0  # seconds from a SIGKILL to the container's restart (kubelet: the first restart is immediate)

APP, PARTNER, EVIL = "https://app.example.com", "https://partner.example.net", "https://evil.example.com"
PREFLIGHTS = [
    Preflight("app-put", "/api/items", (("Origin", APP), ("Access-Control-Request-Method", "PUT"),
                                        ("Access-Control-Request-Headers", "content-type,x-request-id"))),
    Preflight("partner-get", "/api/items", (("Origin", PARTNER), ("Access-Control-Request-Method", "GET"))),
    Preflight("evil-delete", "/api/orders", (("Origin", EVIL), ("Access-Control-Request-Method", "DELETE"))),
]  # fmt: skip

# The chart as production runs it, with a Host. All the load comes from one address: the edge rate limit stays
# in the chain with a bound it never reaches, the service's own limiter is off. The short variant drains and
# probes faster than the shipped values (preStop 3 s, shutdown_delay 5 s, readiness every 5 s): the same steps.
BASE: dict[str, Any] = {
    "policy": {"rate_limit": {"enabled": False}, **({} if LONG else {"shutdown_delay": 2})},
    **({} if LONG else {"drain": {"preStopSeconds": 1}, "probes": {"readiness": {"periodSeconds": 2}}}),
    "traefik": {"host": "127.0.0.1", "backendRoutes": {"enabled": True},
                "rateLimit": {"average": 1_000_000, "period": "1s", "burst": 1_000_000}},
}  # fmt: skip
# The policy change: one more origin, another max-age and one more header (every answer above changes).
CHANGE: dict[str, Any] = {
    "policy": {"allow_origins": [APP, "https://admin.example.com", PARTNER], "max_age": 600,
               "allow_headers": ["content-type", "authorization", "x-request-id", "x-trace-id"]},
}  # fmt: skip


def render(*overrides: dict[str, Any]) -> list[dict[str, Any]]:
    return objects(environment_values("production", BASE, *overrides))


def served_policy(docs: list[dict[str, Any]]) -> dict[str, Any]:
    policy: dict[str, Any] = yaml.safe_load(one(docs, "ConfigMap", RELEASE)["data"]["policy.yaml"])
    return policy


def references(workdir: Path, *policies: dict[str, Any]) -> list[dict[str, Signature]]:
    """For each policy, each preflight's answer from a fresh replica on it, asked directly."""

    def answers(policy: dict[str, Any]) -> dict[str, Signature]:
        server = Server(workdir, policy, {}, [])
        try:
            return {p.name: p.ask(server) for p in PREFLIGHTS}
        finally:
            server.stop()

    with ThreadPoolExecutor(len(policies)) as pool:
        return list(pool.map(answers, policies))


@dataclass
class Run:
    cluster: Cluster
    proxy: Traefik
    backend: Backend
    docs: list[dict[str, Any]]

    @property
    def pod_spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = one(self.docs, "Deployment")["spec"]["template"]["spec"]
        return spec

    def pre_stop(self) -> float:
        return float(self.pod_spec["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"])

    def grace(self) -> float:
        return float(self.pod_spec["terminationGracePeriodSeconds"])

    def load(self) -> Load:
        return Load(self.proxy.port, self.proxy.host, PREFLIGHTS, RATE)


@contextmanager
def running(workdir: Path, docs: list[dict[str, Any]]) -> Iterator[Run]:
    """The Deployment's replicas (the HPA's minimum) as the Service's endpoints, behind Traefik from ``docs``."""
    backend = Backend()
    cluster = Cluster(workdir, docs, {"api": backend.url})
    policy = served_policy(docs)
    proxy: Traefik | None = None
    try:
        cluster.ready += cluster.start_pods(policy, one(docs, "HorizontalPodAutoscaler")["spec"]["minReplicas"])
        proxy = start_traefik(workdir, docs, {RELEASE: [p.url for p in cluster.ready], "api": backend.url})
        proxy.wait_routing("/api/items")
        yield Run(cluster, proxy, backend, docs)
    finally:
        with ThreadPoolExecutor(2) as pool:  # Traefik takes about 2 s to stop: the pods stop meanwhile
            stopping = pool.submit(proxy.stop) if proxy is not None else None
            logs = cluster.stop()
            if stopping is not None:
                stopping.result()
        backend.stop()
    assert not [log for log in logs if "Traceback" in log]


def report(samples: list[Sample], accepted: Any, phases: list[Phase]) -> list[Report]:
    reports = [judge(samples, accepted, phase.name, phase.start, phase.end) for phase in phases]
    print()
    for line in reports:
        print(line.line())
    return reports


def judge_change(
    load: Load, old: dict[str, Signature], new: dict[str, Signature], change: Phase, after: Phase
) -> list[Signature | None]:
    """No failure before, during and after a policy change: the old policy's answers before it, either
    policy's during it, the new one's after it. The answers seen during the change."""

    def accepted(sample: Sample) -> set[Signature]:
        if sample.sent < change.start:
            return {old[sample.request]}
        if sample.sent < change.end:
            return {old[sample.request], new[sample.request]}
        return {new[sample.request]}

    reports = report(load.samples, accepted, [Phase("before", load.started, change.start), change, after])
    assert [r.failures for r in reports] == [0, 0, 0], [r.line() for r in reports]
    return [s.answer for s in load.samples if change.start <= s.sent < change.end]


def kill_and_restart(run: Run, phases: list[Phase]) -> None:
    """SIGKILL a replica (no drain): its endpoint goes after ENDPOINT_DELAY; kubelet restarts it in place."""
    pod = run.cluster.ready[0]
    phase = Phase(f"SIGKILL {pod.name}", time.monotonic())
    pod.kill()
    run.cluster.later(run.proxy, lambda ready: ready.remove(pod))
    time.sleep(RESTART_AFTER)
    pod.restart()
    run.cluster.later(run.proxy, lambda ready: ready.append(pod))
    run.cluster.settle()
    time.sleep(STEADY)
    phase.end = time.monotonic()
    phases.append(phase)


def freeze_and_thaw(run: Run, phases: list[Phase]) -> None:
    """SIGSTOP a replica: it accepts connections and answers nothing. Its readiness probe fails after
    periodSeconds + timeoutSeconds, the endpoint goes ENDPOINT_DELAY later; SIGCONT, ready, back."""
    pod = run.cluster.ready[1]
    probe = run.pod_spec["containers"][0]["readinessProbe"]
    unready = probe["periodSeconds"] * probe["failureThreshold"] + probe["timeoutSeconds"]
    phase = Phase(f"SIGSTOP {pod.name}", time.monotonic())
    pod.freeze()
    run.cluster.later(run.proxy, lambda ready: ready.remove(pod), unready + ENDPOINT_DELAY)
    run.cluster.settle()
    pod.thaw()
    run.cluster.later(run.proxy, lambda ready: ready.append(pod), probe["periodSeconds"] + ENDPOINT_DELAY)
    run.cluster.settle()
    time.sleep(STEADY)
    phase.end = time.monotonic()
    phases.append(phase)


def drain_and_replace(run: Run, phases: list[Phase]) -> None:
    """SIGTERM a replica at once (no preStop: the drain alone); a replacement pod takes its place."""
    old = run.cluster.ready[0]  # not the pod killed before it (restarted, now last)
    phase = Phase(f"SIGTERM {old.name}", time.monotonic())
    old.terminate()
    run.cluster.later(run.proxy, lambda ready: ready.remove(old))
    new = run.cluster.start_pod(served_policy(run.docs))
    run.cluster.later(run.proxy, lambda ready: ready.append(new))
    assert old.wait_exit(run.grace()) == 0
    run.cluster.settle()
    time.sleep(STEADY)
    phase.end = time.monotonic()
    phases.append(phase)


def test_a_replica_killed_frozen_or_drained_under_load_fails_no_preflight(tmp_path: Path) -> None:
    docs = render()
    [expected] = references(tmp_path, served_policy(docs))
    phases: list[Phase] = []
    with running(tmp_path, docs) as run, run.load() as load:
        time.sleep(STEADY)
        for _ in range(ROUNDS):
            kill_and_restart(run, phases)
            freeze_and_thaw(run, phases)
            drain_and_replace(run, phases)
    everything = Phase("whole run", load.started, phases[-1].end)
    reports = report(load.samples, lambda s: {expected[s.request]}, [*phases, everything])
    assert reports[-1].requests > RATE * (len(phases) * STEADY) / 2  # the load really ran
    assert [r.failures for r in reports] == [0] * len(reports), [r.line() for r in reports]


def test_without_the_charts_retry_a_kill_fails_preflights(tmp_path: Path) -> None:
    """What the chart's retry and passive health check are for: without them the same kill fails preflights
    (Traefik's 502 for every preflight sent to the dead replica until its endpoint is removed)."""
    docs = render({"traefik": {"retry": {"enabled": False}, "passiveHealthCheck": {"enabled": False}}})
    [expected] = references(tmp_path, served_policy(docs))
    with running(tmp_path, docs) as run, run.load() as load:
        time.sleep(0.5)
        start = time.monotonic()
        run.cluster.ready[0].kill()
        run.cluster.later(run.proxy, lambda ready: ready.pop(0))
        run.cluster.settle()
        time.sleep(1.0)
        end = time.monotonic()
    [result] = report(load.samples, lambda s: {expected[s.request]}, [Phase("SIGKILL", start, end)])
    assert result.failures > 0 and set(result.by_kind) == {"502 unexpected"}, result.line()


def test_a_rolling_update_with_a_policy_change_fails_no_preflight(tmp_path: Path) -> None:
    """policyReload: restart. The new ConfigMap rolls the Deployment (maxSurge 1, maxUnavailable 0): each
    new pod is added when ready, then one old pod leaves (endpoint removed, preStop, SIGTERM, drain)."""
    old_docs, new_docs = render({"policyReload": "restart"}), render({"policyReload": "restart"}, CHANGE)
    annotations = [one(d, "Deployment")["spec"]["template"]["metadata"]["annotations"] for d in (old_docs, new_docs)]
    assert annotations[0]["checksum/policy"] != annotations[1]["checksum/policy"]  # what starts the rollout
    strategy = one(old_docs, "Deployment")["spec"]["strategy"]["rollingUpdate"]
    assert strategy == {"maxSurge": 1, "maxUnavailable": 0}  # what the steps below do
    old, new = references(tmp_path, served_policy(old_docs), served_policy(new_docs))
    assert old["app-put"] != new["app-put"] and old["partner-get"] != new["partner-get"]
    with running(tmp_path, old_docs) as run, run.load() as load:
        time.sleep(STEADY)
        phase = Phase("rolling update", time.monotonic())
        leaving: list[threading.Thread] = []
        codes: list[int] = []

        def leave(pod: Any) -> None:
            run.cluster.later(run.proxy, lambda ready: ready.remove(pod))
            time.sleep(run.pre_stop())
            pod.terminate()
            t0 = time.monotonic()
            codes.append(pod.wait_exit(run.grace()))
            print(f"{pod.name} exited {time.monotonic() - t0:.2f}s after SIGTERM")

        for pod in list(run.cluster.ready):
            fresh = run.cluster.start_pod(served_policy(new_docs))  # returns once /ready answers 200
            run.cluster.later(run.proxy, lambda ready, fresh=fresh: ready.append(fresh))
            # the old ReplicaSet scales down as soon as the new pod is available, whatever Traefik knows yet
            leaving.append(threading.Thread(target=leave, args=(pod,)))
            leaving[-1].start()
        for thread in leaving:
            thread.join()
        run.cluster.settle()
        phase.end = time.monotonic()
        time.sleep(STEADY)
        stopped = time.monotonic()
    assert codes == [0, 0, 0]
    during = judge_change(load, old, new, phase, Phase("after the update", phase.end, stopped))
    assert {old["partner-get"], new["partner-get"]} <= set(during)  # both policies answered during the update


def test_a_staggered_hot_reload_answers_from_one_policy_or_the_other(tmp_path: Path) -> None:
    """policyReload: watch. The ConfigMap update reaches each replica at its own time (kubelet's sync),
    STAGGER seconds apart; each answer is the old policy's or the new one's, never a mix."""
    old_docs, new_docs = render({"policyReload": "watch"}), render({"policyReload": "watch"}, CHANGE)
    templates = [one(d, "Deployment")["spec"]["template"] for d in (old_docs, new_docs)]
    assert templates[0] == templates[1]  # no rollout: the running pods reload
    old, new = references(tmp_path, served_policy(old_docs), served_policy(new_docs))
    with running(tmp_path, old_docs) as run, run.load() as load:
        time.sleep(STEADY)
        phase = Phase("staggered hot reload", time.monotonic())
        for i, pod in enumerate(run.cluster.ready):
            if i:
                time.sleep(STAGGER)
            pod.update_configmap(served_policy(new_docs))
        for pod in run.cluster.ready:  # until every replica answers from the new policy
            wait_for(lambda pod=pod: PREFLIGHTS[1].ask(pod.server) == new["partner-get"], f"{pod.name} reloads", 10)
        phase.end = time.monotonic()
        time.sleep(STEADY)
        stopped = time.monotonic()
    during = judge_change(load, old, new, phase, Phase("after the reload", phase.end, stopped))
    assert {old["partner-get"], new["partner-get"]} <= set(during)  # the replicas disagreed for a while


@pytest.mark.parametrize("failover", [True, False], ids=["preflight-failover", "no-failover"])
def test_every_replica_down(tmp_path: Path, failover: bool) -> None:
    """What a browser gets when no replica is left. While the dead endpoints are listed: Traefik's 502, then
    503 (every replica out of the round robin). Once they are removed, Traefik (by default: no
    allowEmptyServices) drops the preflight route, and the API's route answers: its actual-response
    middleware answers preflights itself; with traefik.preflightFailover as the policy would (every case of
    `cors-handler verify` concludes the same in a browser, only the X-CORS-Preflight marker is missing)."""
    docs = render({"traefik": {"preflightFailover": failover}})
    preflight = dict(PREFLIGHTS[0].headers)
    with running(tmp_path, docs) as run:
        assert run.proxy.request("OPTIONS", "/api/items", preflight)[0] == 204
        for pod in run.cluster.ready:
            pod.kill()
        statuses = [run.proxy.request("OPTIONS", "/api/items", preflight)[0] for _ in range(5)]
        assert statuses == [502, 503, 503, 503, 503], statuses
        run.cluster.ready.clear()
        run.cluster.publish(run.proxy)
        wait_for(lambda: run.proxy.request("OPTIONS", "/api/items", preflight)[0] != 503, "the route dropped", 10)
        answer = run.proxy.request("OPTIONS", "/api/items", preflight)
        assert answer[0] == 200 and "x-cors-preflight" not in answer[1]  # Traefik's headers middleware answered
        assert "OPTIONS" not in {method for method, _, _ in run.backend.seen}
        policy_file = tmp_path / "served.yaml"
        policy_file.write_text(one(docs, "ConfigMap", RELEASE)["data"]["policy.yaml"])
        verify = VerifyRun(f"http://{run.proxy.host}:{run.proxy.port}", policy_file, fmt="json")
        assert verify.cases and all(NO_MARKER in case["reasons"] for case in verify.cases)
        reasons = {reason for case in verify.cases for reason in case["reasons"] if reason != NO_MARKER}
        refused = [case["id"] for case in verify.cases if any("a browser would refuse" in r for r in case["reasons"])]
        if failover:
            assert reasons == set(), reasons
        else:
            assert refused and len(refused) < len(verify.cases), refused  # allowed cases that need ACAM or ACAH
        if failover:  # Traefik with allowEmptyServices keeps the route and answers 503 itself
            empty = dynamic_config(docs, {RELEASE: [], "api": run.backend.url}, allow_empty_services=True)
            run.proxy.reconfigure(empty)
            wait_for(lambda: run.proxy.request("OPTIONS", "/api/items", preflight)[0] == 503, "Traefik's 503", 10)

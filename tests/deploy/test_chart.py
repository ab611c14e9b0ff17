"""The Helm chart, rendered by the real Helm engine, checked by real tools, per environment."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ..conftest import run_cli
from .chart import (
    CHART,
    ENVIRONMENTS,
    IMAGE,
    NAMESPACE,
    RELEASE,
    environment_values,
    helm,
    load_chart,
    merge,
    objects,
    one,
    render,
    shipped_values,
)
from .tools import ROOT, node_validator, tool

pytestmark = pytest.mark.e2e  # renders with the Helm engine and starts processes

KUBERNETES_VERSIONS = ("1.30.0", "1.32.0", "1.34.0")
CORE_API_GROUPS = ("v1", "apps/v1", "policy/v1", "autoscaling/v2", "networking.k8s.io/v1")
CUSTOM_API_GROUPS = ("traefik.io/v1alpha1", "monitoring.coreos.com/v1", "gateway.networking.k8s.io/v1")
EXAMPLE_OVERLAYS = {  # what the examples add to an environment file: route sources, then HTTPRoutes too
    "plain": [],
    "teams": ["teams.yaml"],
    "teams-gateway-api": ["teams.yaml", "gateway-api.yaml"],
}


@pytest.fixture(scope="module", params=ENVIRONMENTS)
def environment(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def rendered_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Each environment rendered into its own file, as `helm template` output."""
    out = tmp_path_factory.mktemp("rendered")
    examples = [yaml.safe_load((CHART / "examples" / name).read_text()) for name in ("teams.yaml", "gateway-api.yaml")]
    renders = {env: environment_values(env) for env in ENVIRONMENTS}
    renders["production-teams"] = environment_values("production", examples[0])  # route sources
    renders["production-gateway-api"] = environment_values("production", *examples)  # and HTTPRoutes
    for name, values in renders.items():
        texts = [text for path, text in sorted(render(values).items()) if path.endswith(".yaml")]
        (out / f"{name}.yaml").write_text("\n---\n".join(t.strip() for t in texts if t.strip()) + "\n")
    return out


def lint_findings(report: dict[str, Any]) -> list[Any]:
    """helm lint's errors and messages, but the INFO about a missing icon: the chart has no published one
    (an icon URL would be a placeholder)."""
    no_icon = {"severity": 1, "path": "Chart.yaml", "error": "icon is recommended"}
    return report["errors"] + [m for m in report["messages"] if m != no_icon]


@pytest.mark.parametrize("overlay", list(EXAMPLE_OVERLAYS))
def test_lint_is_clean(environment: str, overlay: str) -> None:
    extra = [yaml.safe_load((CHART / "examples" / name).read_text()) for name in EXAMPLE_OVERLAYS[overlay]]
    report = helm.lint(str(CHART), environment_values(environment, *extra), strict=True, namespace=NAMESPACE)
    assert lint_findings(report) == [], report


def test_values_files_satisfy_the_schema(environment: str) -> None:
    load_chart().validate_schema(environment_values(environment))


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"replicaCount": "3"}, "replicaCount"),
        ({"policy": {"max_agee": 10}}, "max_agee"),
        ({"traefik": {"ingressRoute": {"priorty": 150}}}, "priorty"),
        ({"policy": {"max_age": -1}}, "max_age"),
        ({"traefik": {"canary": {"weight": 120}}}, "weight"),
        ({"securityContext": {"readOnlyRootFilesystem": False}}, "readOnlyRootFilesystem"),
        ({"policy": {"dev_private_cidrs": ["10.1.2.0/20"]}}, "dev_private_cidrs"),
        ({"traefik": {"rateLimit": {"excludedIPs": ["10.0.0.0/8"]}}}, "excludedIPs"),  # production: none
        ({"policy": {"debug": True}}, "debug"),  # never in production
    ],
    ids=[
        "replica-count-string",
        "misspelled-max-age",
        "misspelled-priority",
        "negative-max-age",
        "canary-weight-over-100",
        "writable-root-filesystem",
        "dev-cidrs-in-production",
        "rate-limit-exclusions-in-production",
        "debug-in-production",
    ],
)
def test_schema_rejects_bad_values(override: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=message):
        load_chart().validate_schema(environment_values("production", override))


def test_yamllint_is_clean(rendered_dir: Path) -> None:
    files = [str(p) for p in sorted(rendered_dir.glob("*.yaml"))]
    files += [str(CHART / name) for name in ("Chart.yaml", "values.yaml")]
    files += [str(CHART / f"values-{env}.yaml") for env in ENVIRONMENTS]
    done = subprocess.run(
        [tool("yamllint"), "--strict", "-c", str(ROOT / ".yamllint.yaml"), *files], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("overlay", list(EXAMPLE_OVERLAYS))
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_core_objects_are_valid_kubernetes(environment: str, version: str, overlay: str) -> None:
    import kubernetes_validate

    extra = [yaml.safe_load((CHART / "examples" / name).read_text()) for name in EXAMPLE_OVERLAYS[overlay]]
    for doc in objects(environment_values(environment, *extra)):
        if doc["apiVersion"] in CUSTOM_API_GROUPS:
            continue
        assert doc["apiVersion"] in CORE_API_GROUPS, doc["apiVersion"]
        # Raises on any schema violation (strict: unknown fields too) and on a missing schema.
        kubernetes_validate.validate(doc, version, strict=True)


def test_custom_resources_match_their_crd_schemas(environment: str) -> None:
    custom = [d for d in objects(environment_values(environment, {"traefik": {"canary": {"enabled": True}}}))
              if d["apiVersion"] in CUSTOM_API_GROUPS]  # fmt: skip
    assert {d["kind"] for d in custom} >= {"IngressRoute", "Middleware", "TraefikService"}
    done = subprocess.run(node_validator(), input=json.dumps(custom), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert len(results) == len(custom)
    assert [r for r in results if r["error"] is not None] == []


def test_crd_validator_catches_a_broken_object() -> None:
    broken = one(objects(environment_values("production")), "IngressRoute")
    broken["spec"]["routes"][0]["priority"] = "high"
    done = subprocess.run(node_validator(), input=json.dumps([broken]), capture_output=True, text=True, timeout=60)
    assert "priority must be integer" in json.loads(done.stdout)[0]["error"]


def test_checkov_finds_nothing(rendered_dir: Path) -> None:
    done = subprocess.run(
        [tool("checkov"), "--skip-download", "--framework", "kubernetes", "-d", str(rendered_dir), "--compact",
         "--quiet", "-o", "json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    report = json.loads(done.stdout)
    summary = report["summary"] if isinstance(report, dict) else report[0]["summary"]
    assert summary["failed"] == 0, done.stdout[:5000]
    assert summary["passed"] > 100


# ---------------------------------------------------------------- what users rely on


def test_ingress_route_sends_preflights_to_cors_handler_at_priority_150() -> None:
    docs = objects(environment_values("production", {"traefik": {"host": "api.example.com"}}))
    route = one(docs, "IngressRoute", RELEASE)["spec"]["routes"][0]
    assert route["match"] == (
        "Method(`OPTIONS`) && HeaderRegexp(`Access-Control-Request-Method`, `.+`) && Host(`api.example.com`)"
    )
    assert route["priority"] == 150
    passive = {"maxFailedAttempts": 1, "failureWindow": "10s"}
    assert route["services"] == [
        {"name": RELEASE, "port": 8080, "passiveHealthCheck": passive, "serversTransport": RELEASE}
    ]
    assert [m["name"] for m in route["middlewares"]] == [
        f"{RELEASE}-ratelimit", f"{RELEASE}-strip-method-override", f"{RELEASE}-retry"
    ]  # fmt: skip


def test_preflights_lost_with_a_replica_are_retried_on_another_one() -> None:
    """The retry middleware, the passive health check and the transport's timeouts (tests/deploy/test_faults.py)."""
    docs = objects(environment_values("production", {"traefik": {"fallback": {"enabled": True}}}))
    retry = one(docs, "Middleware", f"{RELEASE}-retry")["spec"]["retry"]
    assert retry == {"attempts": 3, "status": ["502", "504"], "maxRequestBodyBytes": 0}
    for route in one(docs, "IngressRoute", RELEASE)["spec"]["routes"]:
        assert route["middlewares"][-1] == {"name": f"{RELEASE}-retry"}  # last: a retry re-runs only the service
        [service] = route["services"]
        assert service["passiveHealthCheck"] == {"maxFailedAttempts": 1, "failureWindow": "10s"}
        assert service["serversTransport"] == RELEASE
    timeouts = one(docs, "ServersTransport", RELEASE)["spec"]["forwardingTimeouts"]
    assert timeouts == {"dialTimeout": "1s", "responseHeaderTimeout": "1s"}  # Traefik's defaults: 30 s, none
    # Traefik refuses an active healthCheck on a Service that is not ExternalName (and drops the route).
    assert not [d for d in docs if "healthCheck" in str(d.get("spec", {}))]
    off = {
        "retry": {"enabled": False},
        "passiveHealthCheck": {"enabled": False},
        "serversTransport": {"enabled": False},
    }
    docs = objects(environment_values("production", {"traefik": {**off, "canary": {"enabled": True}}}))
    assert not [d for d in docs if d["metadata"]["name"] == f"{RELEASE}-retry" or d["kind"] == "ServersTransport"]
    assert one(docs, "TraefikService")["spec"]["weighted"]["services"][0] == {
        "name": RELEASE,
        "port": 8080,
        "weight": 10,
    }


def test_fallback_route_and_canary() -> None:
    values = environment_values("development", {"traefik": {"canary": {"enabled": True, "weight": 30}}})
    docs = objects(values)
    routes = one(docs, "IngressRoute", RELEASE)["spec"]["routes"]
    assert routes[1]["match"] == "Method(`OPTIONS`) && PathPrefix(`/api`)" and routes[1]["priority"] == 140
    assert routes[0]["services"] == [{"name": f"{RELEASE}-canary", "kind": "TraefikService"}]
    weights = one(docs, "TraefikService")["spec"]["weighted"]["services"]
    assert [(s["name"], s["weight"]) for s in weights] == [(RELEASE, 30), ("api", 70)]


def test_network_policy_admits_only_traefik_and_the_test_pod_on_8080_and_no_egress() -> None:
    policy = one(objects(environment_values("production")), "NetworkPolicy", RELEASE)["spec"]
    assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "cors-handler"
    assert policy["policyTypes"] == ["Ingress", "Egress"] and policy["egress"] == []
    [rule] = policy["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8080}]
    traefik, test_pod, prometheus = rule["from"]  # Prometheus: values-production enables the ServiceMonitor
    assert traefik["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "traefik"}
    assert traefik["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "traefik"}
    assert test_pod["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "helm-test"
    assert prometheus["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}


def test_replicas_pdb_and_hpa_per_environment() -> None:
    expected = {"development": (1, None, None), "staging": (2, 1, None), "production": (None, 2, (3, 10, 70))}
    for env, (replicas, min_available, hpa) in expected.items():
        docs = objects(environment_values(env))
        assert one(docs, "Deployment")["spec"].get("replicas") == replicas
        pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
        assert [p["spec"]["minAvailable"] for p in pdbs] == ([min_available] if min_available else [])
        hpas = [d["spec"] for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
        if hpa is None:
            assert hpas == []
        else:
            target = hpas[0]["metrics"][0]["resource"]["target"]["averageUtilization"]
            assert (hpas[0]["minReplicas"], hpas[0]["maxReplicas"], target) == hpa


@pytest.mark.parametrize("kind", ["Deployment", "Pod"], ids=["deployment", "helm-test-pod"])
def test_pods_are_locked_down(environment: str, kind: str) -> None:
    docs = objects(environment_values(environment))
    pod = one(docs, kind)["spec"]
    pod = pod["template"]["spec"] if kind == "Deployment" else pod
    [container] = pod["containers"]
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] and not context["allowPrivilegeEscalation"]
    assert context["capabilities"] == {"drop": ["ALL"]} and context["runAsNonRoot"]
    assert context["runAsUser"] >= 10000 and context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsNonRoot"]
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False
    assert container["resources"]["limits"]["memory"] and container["resources"]["limits"]["cpu"]
    assert pod["serviceAccountName"] == RELEASE and one(docs, "ServiceAccount")["automountServiceAccountToken"] is False
    if kind == "Pod":
        return  # a one-shot run: no probes, no drain
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    policy = yaml.safe_load(one(docs, "ConfigMap", RELEASE)["data"]["policy.yaml"])
    grace = 3 + policy["shutdown_delay"] + 10 + 5  # preStop + drain + in-flight + margin
    assert container["lifecycle"]["preStop"] == {"sleep": {"seconds": 3}}
    assert pod["terminationGracePeriodSeconds"] == grace


def test_policy_change_rolls_the_deployment_unless_hot_reload_is_chosen() -> None:
    def checksum(*overrides: dict[str, Any]) -> str | None:
        pod = one(objects(environment_values("production", *overrides)), "Deployment")["spec"]["template"]
        annotations: dict[str, str] = pod["metadata"].get("annotations") or {}
        return annotations.get("checksum/policy")

    assert checksum() is not None
    assert checksum() != checksum({"policy": {"max_age": 600}})
    assert checksum({"policyReload": "watch"}) is None


def test_policy_in_the_configmap_passes_cors_handler_check(environment: str, tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(one(objects(environment_values(environment)), "ConfigMap", RELEASE)["data"]["policy.yaml"])
    done = run_cli("check", "--policy", str(policy_file))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"mode: {yaml.safe_load(policy_file.read_text())['environment']}" in done.stdout.lower()


def test_actual_response_middleware_uses_the_policy_origins() -> None:
    docs = objects(environment_values("production"))
    policy = yaml.safe_load(one(docs, "ConfigMap", RELEASE)["data"]["policy.yaml"])
    headers = one(docs, "Middleware", f"{RELEASE}-cors-default")["spec"]["headers"]
    # one anchored regex per allowed origin (test_origin_agreement.py: the same answers as the service)
    assert "accessControlAllowOriginList" not in headers
    regexes = headers["accessControlAllowOriginListRegex"]
    assert len(regexes) == len(policy["allow_origins"])  # production: no development origins
    assert all(r.startswith("^") and r.endswith("$") for r in regexes)
    assert headers["accessControlAllowCredentials"] is False
    assert headers["accessControlExposeHeaders"] == policy["expose_headers"]
    rate = one(docs, "Middleware", f"{RELEASE}-ratelimit")["spec"]["rateLimit"]
    assert rate["sourceCriterion"]["ipStrategy"].get("excludedIPs") is None  # no trusted networks in production


def test_monitoring_objects_use_the_designs_metric_names() -> None:
    docs = objects(environment_values("production"))
    rules = one(docs, "PrometheusRule")["spec"]["groups"][0]["rules"]
    assert {r["alert"] for r in rules} == {
        "CorsHandlerHighLatency", "CorsHandlerRateLimitingHigh", "CorsHandlerDown", "CorsHandlerPolicyReloadFailed",
        "CorsHandlerRejectionRatioHigh", "CorsHandlerCandidateWouldRefuse", "CorsHandlerCandidateReloadFailed",
        "CorsHandlerPolicySkew", "CorsHandlerPolicySourceInvalid",
    }  # fmt: skip
    exprs = " ".join(r["expr"] for r in rules)
    for metric in (
        "cors_request_duration_seconds_bucket",
        "cors_preflight_requests_total",
        "cors_policy_reloads_total",
        "cors_candidate_decisions_total",
        "cors_candidate_reloads_total",
        "cors_policy_source_valid",
    ):
        assert metric in exprs
    dashboard = json.loads(one(docs, "ConfigMap", f"{RELEASE}-dashboard")["data"]["cors-handler.json"])
    queries = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    for metric in ("cors_preflight_rejections_total", "cors_response_cache_hits_total", "cors_rate_limiter_clients",
                   "cors_policy_info", "cors_response_cache_entries"):  # fmt: skip
        assert metric in queries


def test_helm_test_pod_runs_verify_against_the_service_with_the_releases_policy(environment: str) -> None:
    """The test pod: the Deployment's image, `verify --url http://<Service>:<port> --policy <the file the
    Deployment serves>`, read from the same ConfigMap, mounted where the Deployment mounts it."""
    docs = objects(environment_values(environment))
    pod = one(docs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    deployment = one(docs, "Deployment")["spec"]["template"]["spec"]
    [server] = deployment["containers"]
    [container] = pod["spec"]["containers"]
    assert container["image"] == server["image"] and "command" not in container  # the image's own entry point
    args = container["args"]
    assert args[0] == "verify" and "--actual" not in args  # the Service answers preflights only
    service = one(docs, "Service", RELEASE)
    labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    [port] = service["spec"]["ports"]
    assert args[args.index("--url") + 1] == f"http://{service['metadata']['name']}:{port['port']}"
    policy = args[args.index("--policy") + 1]
    assert policy == server["args"][server["args"].index("--policy") + 1]  # the file the pods serve

    def mounted(spec: dict[str, Any], container: dict[str, Any]) -> tuple[str, str]:
        """(ConfigMap name, key) that ``policy`` is in the container's file system."""
        [mount] = [m for m in container["volumeMounts"] if policy.startswith(m["mountPath"].rstrip("/") + "/")]
        [volume] = [v for v in spec["volumes"] if v["name"] == mount["name"]]
        return volume["configMap"]["name"], policy.removeprefix(mount["mountPath"].rstrip("/") + "/")

    name, key = mounted(pod["spec"], container)
    assert (name, key) == mounted(deployment, server) == (RELEASE, "policy.yaml")
    assert key in one(docs, "ConfigMap", name)["data"]


# ---------------------------------------------------------------- one truth in chart and docs

SLEEP_ACTION_ON_BY_DEFAULT = (1, 30)  # PodLifecycleSleepAction: alpha in 1.29, beta (on) in 1.30


def test_kube_version_admits_only_clusters_that_run_the_pods_as_rendered() -> None:
    constraint = yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"]
    match = re.fullmatch(r">=(\d+)\.(\d+)\.0-0", constraint)
    assert match, constraint
    minimum = (int(match[1]), int(match[2]))
    pod = one(objects(environment_values("production")), "Deployment")["spec"]["template"]["spec"]
    if any("sleep" in c.get("lifecycle", {}).get("preStop", {}) for c in pod["containers"]):
        assert minimum >= SLEEP_ACTION_ON_BY_DEFAULT, constraint
    # the oldest version the chart admits is the oldest one the tests validate against
    assert minimum == min(tuple(int(x) for x in v.split(".")[:2]) for v in KUBERNETES_VERSIONS)


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#{1,6} (.+?)\s*$", markdown, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_every_alert_links_its_runbook_where_the_runbooks_are_published() -> None:
    """runbook_url = runbookBaseUrl#<alert lower-cased>, a heading of docs/monitoring.md, on every alert the
    environment files render (their base URL is an example marked replace); none when the base URL is emptied
    (Chart.yaml has no home to derive one from: a made-up URL would send on-call nowhere)."""
    assert "home" not in yaml.safe_load((CHART / "Chart.yaml").read_text())
    anchors = github_anchors((ROOT / "docs" / "monitoring.md").read_text())
    for env in ("staging", "production"):
        base = shipped_values(env)["metrics"]["prometheusRule"]["runbookBaseUrl"]
        assert base.endswith("/docs/monitoring.md") and "# replace" in (CHART / f"values-{env}.yaml").read_text()
        rules = one(objects(environment_values(env)), "PrometheusRule")["spec"]["groups"][0]["rules"]
        for rule in rules:
            url = rule["annotations"]["runbook_url"]
            assert url == f"{base}#{rule['alert'].lower()}", url
            assert rule["alert"].lower() in anchors, f"no heading for {url} in docs/monitoring.md"
        none = {"metrics": {"prometheusRule": {"runbookBaseUrl": ""}}}
        rules = one(objects(environment_values(env, none)), "PrometheusRule")["spec"]["groups"][0]["rules"]
        assert all("runbook_url" not in rule["annotations"] for rule in rules), env


def documentation() -> dict[str, str]:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return {p.relative_to(ROOT).as_posix(): p.read_text() for p in pages if p.exists()}


def test_drain_timing_in_the_docs_is_what_the_template_computes() -> None:
    values = environment_values("production")
    docs = objects(values)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    pre_stop = pod["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    delay = yaml.safe_load(one(docs, "ConfigMap", RELEASE)["data"]["policy.yaml"])["shutdown_delay"]
    grace = pod["terminationGracePeriodSeconds"]
    margin = yaml.safe_load((CHART / "values.yaml").read_text())["drain"]["marginSeconds"]
    in_flight = grace - pre_stop - delay - margin
    truth = {pre_stop, delay, in_flight, margin, grace}
    stated: list[tuple[str, str]] = []
    for page, text in documentation().items():
        for paragraph in re.split(r"\n\s*\n", text):
            if "preStop" not in paragraph and "terminationGracePeriodSeconds" not in paragraph:
                continue
            assert "no preStop" not in paragraph, (page, paragraph)
            numbers = {int(n) for n in re.findall(r"(?<![\w.])(\d+)(?: s\b|\))", paragraph)}
            assert numbers <= truth, (page, sorted(numbers - truth), paragraph)
            stated += [(page, paragraph)] if str(grace) in paragraph else []
    assert stated, f"no page states the grace period the chart renders ({grace} s)"


# ---------------------------------------------------------------- day one in a real cluster

EXAMPLES = CHART / "examples" / "pvpipe"
RESERVED_DOMAINS = ("example.com", "example.net", "example.org")  # RFC 2606: never anyone's real site


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_without_an_image_repository_the_chart_says_how_to_build_and_push(environment: str) -> None:
    with pytest.raises(helm.HelmRenderError) as refused:
        render(shipped_values(environment))
    message = str(refused.value)
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    image = f"REGISTRY/cors-handler:{version}"
    for command in (f"podman build -t {image} .", f"podman push {image}", f"docker build -t {image} .",
                    f"docker push {image}", "--set image.repository=REGISTRY/cors-handler"):  # fmt: skip
        assert command in message, message
    image = one(objects(merge(shipped_values(environment), IMAGE)), "Deployment")["spec"]["template"]["spec"]
    assert image["containers"][0]["image"] == f"{IMAGE['image']['repository']}:{version}"


def hosts_in(values: dict[str, Any]) -> list[str]:
    """Every host name the values configure: origins (top level and routes) and traefik.host."""
    policy = values.get("policy", {})
    origins = [
        *policy.get("allow_origins", []),
        *(o for r in policy.get("routes", []) for o in r.get("allow_origins", [])),
    ]
    hosts = [o.split("://", 1)[1].split(":")[0].removeprefix("*.") for o in origins if "://" in o]
    return hosts + ([values["traefik"]["host"]] if values.get("traefik", {}).get("host") else [])


@pytest.mark.parametrize("name", ["values.yaml", *(f"values-{env}.yaml" for env in ENVIRONMENTS)])
def test_shipped_values_name_only_example_hosts_each_marked_replace(name: str) -> None:
    text = (CHART / name).read_text()
    for host in hosts_in(yaml.safe_load(text)):
        assert host.endswith(RESERVED_DOMAINS), f"{name}: {host} is somebody's real domain"
        lines = [line for line in text.splitlines() if host in line]
        if name != "values.yaml":  # values.yaml's defaults are documented as examples in their comments
            assert lines and all("# replace" in line for line in lines), f"{name}: {host} is not marked replace"


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_the_worked_example_renders_and_its_policy_passes_check(environment: str, tmp_path: Path) -> None:
    example: dict[str, Any] = yaml.safe_load((EXAMPLES / f"values-{environment}.yaml").read_text())
    assert not any(h.endswith(RESERVED_DOMAINS) for h in hosts_in(example))  # real-looking, unlike the defaults
    load_chart().validate_schema(environment_values(environment, example))
    report = helm.lint(str(CHART), environment_values(environment, example), strict=True, namespace=NAMESPACE)
    assert lint_findings(report) == [], report
    docs = objects(environment_values(environment, example))
    (tmp_path / "policy.yaml").write_text(one(docs, "ConfigMap", RELEASE)["data"]["policy.yaml"])
    done = run_cli("check", "--policy", str(tmp_path / "policy.yaml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Host(`{example['traefik']['host']}`)" in one(docs, "IngressRoute", RELEASE)["spec"]["routes"][0]["match"]


@pytest.mark.parametrize("host", ["", "api.example.com`) || PathPrefix(`/", "api example.com"])
def test_production_requires_a_plain_traefik_host(host: str) -> None:
    with pytest.raises(helm.HelmValuesError, match="host"):
        load_chart().validate_schema(environment_values("production", {"traefik": {"host": host}}))
    if host:  # any environment: a host name, nothing that would change the router rule
        with pytest.raises(helm.HelmValuesError, match="host"):
            load_chart().validate_schema(environment_values("development", {"traefik": {"host": host}}))


@pytest.mark.parametrize("environment", ["development", "staging"])
def test_notes_warn_when_an_environment_leaves_traefik_host_empty(environment: str) -> None:
    def notes(*overrides: dict[str, Any]) -> str:
        return render(environment_values(environment, *overrides))["cors-handler/templates/NOTES.txt"]

    warning = "WARNING: traefik.host is empty"
    assert warning in notes({"traefik": {"host": ""}})
    assert "EVERY site served by this Traefik" in notes({"traefik": {"host": ""}})
    assert warning not in notes({"traefik": {"host": "api.example.com"}})
    assert warning not in render(environment_values("production"))["cors-handler/templates/NOTES.txt"]


def documented_helm_commands() -> list[tuple[str, list[str]]]:
    """(page, argv) for every `helm upgrade`/`helm install`/`helm template` in the docs' shell blocks."""
    found = []
    for page, text in documentation().items():
        for block in re.findall(r"```sh\n(.*?)```", text, re.DOTALL):
            joined = re.sub(r"\\\n\s*", " ", block)
            for line in joined.splitlines():
                argv = shlex.split(line, comments=True)
                if argv[:2] in (["helm", "upgrade"], ["helm", "install"], ["helm", "template"]):
                    found.append((page, argv))
    return found


def test_every_documented_helm_install_renders(tmp_path: Path) -> None:
    """The docs' commands, run through the real Helm engine with their -f files and --set values."""
    commands = documented_helm_commands()
    assert any("image.repository" in " ".join(argv) for _, argv in commands)
    (tmp_path / "my-values.yaml").write_text((CHART / "values-production.yaml").read_text())  # the docs' copy
    registry = "registry.example.com/platform"
    for page, argv in commands:
        values: dict[str, Any] = {}
        flags = iter(arg.replace("$REGISTRY", registry) for arg in argv[2:])
        for arg in flags:
            if arg in ("-f", "--values"):
                path = next(flags)
                file = tmp_path / path if (tmp_path / path).exists() else ROOT / path
                values = merge(values, yaml.safe_load(file.read_text()))
            elif arg == "--set":
                values = merge(values, helm.parse_set_string(next(flags)))
        assert one(objects(values), "Deployment"), (page, argv)


def test_actual_response_middlewares_carry_each_routes_preflight_answer_for_the_failover() -> None:
    """traefik.preflightFailover: each route's methods, headers and max-age (inherited from the top level where
    the route sets none), for Traefik to answer preflights with when no cors-handler endpoint is left."""
    route = {"name": "v2", "path_prefix": "/api/v2", "allow_methods": ["GET", "PUT"], "max_age": 60}
    docs = objects(environment_values("production", {"policy": {"routes": [route]}}))
    top = yaml.safe_load(one(docs, "ConfigMap", RELEASE)["data"]["policy.yaml"])
    for name, methods, max_age in (("default", top["allow_methods"], top["max_age"]), ("v2", ["GET", "PUT"], 60)):
        headers = one(docs, "Middleware", f"{RELEASE}-cors-{name}")["spec"]["headers"]
        assert headers["accessControlAllowMethods"] == methods
        assert headers["accessControlAllowHeaders"] == top["allow_headers"]
        assert headers["accessControlMaxAge"] == max_age
    off = objects(environment_values("production", {"traefik": {"preflightFailover": False}}))
    headers = one(off, "Middleware", f"{RELEASE}-cors-default")["spec"]["headers"]
    assert not {"accessControlAllowMethods", "accessControlAllowHeaders", "accessControlMaxAge"} & set(headers)

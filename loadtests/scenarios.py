"""What the benchmark sends: the origins, the policy every server is configured with, wrk's Lua scripts."""

from __future__ import annotations

from typing import Any

ALLOWED_ORIGIN = "https://app.example.com"
ROTATING_ORIGINS = 1000
ROTATING_REGEX = r"https://t[0-9]+\.tenants\.example\.com"
REJECTED_ORIGIN = "https://evil.example.net"
PATH = "/api/items"

# cors-handler's policy for the benchmark: the same origins as the baselines; the limiter on
# and keyed on X-Forwarded-For (as behind Traefik), with limits no scenario reaches, so that
# every request pays for its bucket without being refused.
POLICY: dict[str, Any] = {
    "environment": "production",
    "allow_origins": [ALLOWED_ORIGIN, "https://*.tenants.example.com"],
    "allow_headers": ["content-type", "authorization", "x-request-id"],
    "max_age": 600,
    "log_level": "warning",
    "rate_limit": {"enabled": True, "average": 100_000_000, "period": 60, "burst": 10_000_000, "depth": 1},
}

_HEAD = 'wrk.method = "OPTIONS"\nwrk.headers["Access-Control-Request-Method"] = "PUT"\n'

# scenario -> (Lua script for wrk, the status a CORS server answers)
SCENARIOS: dict[str, tuple[str, int]] = {
    "allowed origin": (_HEAD + f'wrk.headers["Origin"] = "{ALLOWED_ORIGIN}"\n', 204),
    f"{ROTATING_ORIGINS} rotating origins": (
        _HEAD + "local n = 0\n"
        "request = function()\n"
        f"  n = (n + 1) % {ROTATING_ORIGINS}\n"
        '  wrk.headers["Origin"] = "https://t" .. n .. ".tenants.example.com"\n'
        "  return wrk.format()\nend\n",
        204,
    ),
    "rejected origin": (_HEAD + f'wrk.headers["Origin"] = "{REJECTED_ORIGIN}"\n', 403),
    "storm, random client IPs": (
        _HEAD + f'wrk.headers["Origin"] = "{ALLOWED_ORIGIN}"\n'
        "request = function()\n"
        '  wrk.headers["X-Forwarded-For"] = "10." .. math.random(0, 255) .. "." .. math.random(0, 255)'
        ' .. "." .. math.random(1, 254)\n'
        "  return wrk.format()\nend\n",
        204,
    ),
}

# Every request a new refused origin (a counter: never the same twice, so every one is a
# cache miss), from one client. The bench replaces RUNID by a value new for each wrk run,
# so no run repeats another's origins.
RANDOM_REFUSED = "random refused origins"
FLOOD_WITH_STEADY = "steady keys in a flood"
STEADY_KEYS = 100
FLOOD_PER_STEADY = 9  # of every 10 requests, 9 are new refused origins
SCENARIOS[RANDOM_REFUSED] = (
    _HEAD + "local n = 0\n"
    "request = function()\n"
    "  n = n + 1\n"
    '  wrk.headers["Origin"] = "https://f" .. n .. ".RUNID.example.org"\n'
    "  return wrk.format()\nend\n",
    403,
)
# Real traffic (STEADY_KEYS allowed origins in turn) inside a flood of new refused origins:
# the bench reads the hit ratio of the steady keys from /metrics (every hit is theirs).
SCENARIOS[FLOOD_WITH_STEADY] = (
    _HEAD + "local n = 0\n"
    "request = function()\n"
    "  n = n + 1\n"
    f"  if n % {FLOOD_PER_STEADY + 1} == 0 then\n"
    f"    local k = (n / {FLOOD_PER_STEADY + 1}) % {STEADY_KEYS}\n"
    '    wrk.headers["Origin"] = "https://t" .. k .. ".tenants.example.com"\n'
    "  else\n"
    '    wrk.headers["Origin"] = "https://f" .. n .. ".RUNID.example.org"\n'
    "  end\n"
    "  return wrk.format()\nend\n",
    0,  # mixed: 204 for the steady keys, 403 for the flood
)

# Traefik's headers middleware answering preflights itself (it never forwards one), with
# the bench's origins; the router's service is Traefik's internal no-op.
TRAEFIK_DYNAMIC: dict[str, Any] = {
    "http": {
        "routers": {
            "cors": {"rule": "PathPrefix(`/`)", "entryPoints": ["web"], "middlewares": ["cors"],
                     "service": "noop@internal"},
        },
        "middlewares": {
            "cors": {
                "headers": {
                    "accessControlAllowOriginList": [ALLOWED_ORIGIN],
                    "accessControlAllowOriginListRegex": [ROTATING_REGEX],
                    "accessControlAllowMethods": ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
                    "accessControlAllowHeaders": ["content-type", "authorization", "x-request-id"],
                    "accessControlMaxAge": 600,
                    "addVaryHeader": True,
                }
            }
        },
    }
}  # fmt: skip

# The memory scenario: every request a new random origin (refused: the cache churns) from a
# new random client (the limiter's table churns), about a million of them.
MEMORY_SCRIPT = (
    _HEAD + "request = function()\n"
    '  wrk.headers["Origin"] = "https://r" .. math.random(1, 1000000000) .. ".example.org"\n'
    '  wrk.headers["X-Forwarded-For"] = math.random(1, 223) .. "." .. math.random(0, 255) .. "."'
    ' .. math.random(0, 255) .. "." .. math.random(1, 254)\n'
    "  return wrk.format()\nend\n"
)

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
  map $http_origin $cors_origin {{
    default "";
    "{allowed}" $http_origin;
    "~^{regex}$" $http_origin;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      add_header Access-Control-Allow-Origin $cors_origin always;
      add_header Access-Control-Allow-Methods "GET, HEAD, POST, PUT, PATCH, DELETE" always;
      add_header Access-Control-Allow-Headers "content-type, authorization, x-request-id" always;
      add_header Access-Control-Max-Age 600 always;
      add_header Vary "Origin, Access-Control-Request-Method, Access-Control-Request-Headers" always;
      if ($cors_origin = "") {{ return 403; }}
      return 204;
    }}
  }}
}}
"""


def large_policy(exact: int = 10_000, wildcards: int = 10_000, regexes: int = 1_000) -> dict[str, Any]:
    """POLICY with a big origin list (by default 21,000 entries: exact, wildcard and regex).

    The bench's allowed origin stays first, so the allowed scenarios are unchanged; the
    random refused origins (``https://r<n>.example.org``) match none of the entries.
    """
    origins = [ALLOWED_ORIGIN, "https://*.tenants.example.com"]
    origins += [f"https://app{i}.customer{i % 997}.example.com" for i in range(exact)]
    origins += [f"https://*.tenant{i}.example.net" for i in range(wildcards)]
    patterns = [rf"https://[a-z0-9-]+\.preview{i}\.example\.io(:[0-9]+)?" for i in range(regexes)]
    return {**POLICY, "allow_origins": origins, "allow_origin_regex": patterns}


# Many hosts, many teams: HOST_COUNT hosts, one route file each (a team), ROUTES_PER_HOST routes per host, half
# the hosts exact names, half wildcards. The routes inherit the main policy's origins, so the allowed origin is
# allowed everywhere and every answer is a 204 from a host's own route (or the default for HOST_PATHS[-1]).
HOST_COUNT = 1000
ROUTES_PER_HOST = 3
HOST_PATHS = ["/api/items", "/api/v2/items", "/admin/users", "/other"]
RANDOM_HOSTS = "random hosts and paths"
RANDOM_HOSTS_REFUSED = "random hosts, refused origins"


def host_name(i: int) -> str:
    """The Host a request for host ``i`` sends: the exact name, or a name under the wildcard."""
    return f"api{i}.hosts.example.com" if i % 2 == 0 else f"x{i}.t{i}.hosts.example.com"


def hosts_sources(count: int = HOST_COUNT) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(the main policy, {file name: route source}) for ``count`` hosts, one team file per host."""
    sources: dict[str, dict[str, Any]] = {}
    owners: dict[str, dict[str, list[str]]] = {}
    for i in range(count):
        pattern = f"api{i}.hosts.example.com" if i % 2 == 0 else f"*.t{i}.hosts.example.com"
        name = f"team-{i:04}.yaml"
        owners[name] = {"hosts": [pattern]}
        sources[name] = {"routes": [{"name": f"t{i}-{prefix.strip('/').replace('/', '-')}", "path_prefix": prefix}
                                    for prefix in ("/api", "/api/v2", "/admin")][:ROUTES_PER_HOST]}  # fmt: skip
    return {**POLICY, "route_sources": owners}, sources


_RANDOM_HOST = (
    "local paths = {" + ", ".join(f'"{p}"' for p in HOST_PATHS) + "}\n"
    "local function host()\n"
    f"  local i = math.random(0, {HOST_COUNT - 1})\n"
    '  if i % 2 == 0 then return "api" .. i .. ".hosts.example.com" end\n'
    '  return "x" .. i .. ".t" .. i .. ".hosts.example.com"\n'
    "end\n"
)
SCENARIOS[RANDOM_HOSTS] = (
    _HEAD + _RANDOM_HOST + f'wrk.headers["Origin"] = "{ALLOWED_ORIGIN}"\n'
    "request = function()\n"
    '  wrk.headers["Host"] = host()\n'
    "  return wrk.format(nil, paths[math.random(1, #paths)])\nend\n",
    204,
)
SCENARIOS[RANDOM_HOSTS_REFUSED] = (
    _HEAD + _RANDOM_HOST + "local n = 0\n"
    "request = function()\n"
    "  n = n + 1\n"
    '  wrk.headers["Host"] = host()\n'
    '  wrk.headers["Origin"] = "https://f" .. n .. ".RUNID.example.org"\n'
    "  return wrk.format(nil, paths[math.random(1, #paths)])\nend\n",
    403,
)

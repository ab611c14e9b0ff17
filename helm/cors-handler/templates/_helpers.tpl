{{/* Chart name, truncated for label limits. */}}
{{- define "cors-handler.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: <release>-<chart>, or the release name when it already contains the chart name. */}}
{{- define "cors-handler.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "cors-handler.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cors-handler.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: cors-handler
{{- end }}

{{/* Labels shared by every object; the component label is added by the callers. */}}
{{- define "cors-handler.baseLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "cors-handler.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cors-handler
cors-handler/environment: {{ .Values.policy.environment | quote }}
{{- end }}

{{- define "cors-handler.labels" -}}
{{ include "cors-handler.baseLabels" . }}
app.kubernetes.io/component: cors-handler
{{- end }}

{{- define "cors-handler.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cors-handler.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "cors-handler.image" -}}
{{- $howto := printf `image.repository is required: build the image from this repository's Dockerfile and push it to a registry your cluster pulls from, then set image.repository to it:
  podman build -t REGISTRY/cors-handler:%[1]s .    (or: docker build -t REGISTRY/cors-handler:%[1]s .)
  podman push REGISTRY/cors-handler:%[1]s          (or: docker push REGISTRY/cors-handler:%[1]s)
  helm upgrade --install ... --set image.repository=REGISTRY/cors-handler
(docs/deployment.md has every step)` (default .Chart.AppVersion .Values.image.tag) }}
{{- $_ := required $howto .Values.image.repository }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* SIGTERM handling end to end: preStop, the service's drain, in-flight requests (10 s), margin. */}}
{{- define "cors-handler.terminationGrace" -}}
{{- add .Values.drain.preStopSeconds (ceil .Values.policy.shutdown_delay) 10 .Values.drain.marginSeconds }}
{{- end }}

{{/*
Route sources: the teams' ConfigMaps, mounted together as the routes directory. As JSON, a list of
{name, file, configMap, key, hosts}: file is the source's name with its key's extension, the name the
service reads it by (route_sources, cors_policy_source_valid{source}). Names that would give two sources
one file (or one metric label) are refused here, whatever the schema let through (--skip-schema-validation).
*/}}
{{- define "cors-handler.routeSources" -}}
{{- $out := list }}
{{- $seen := dict }}
{{- range $i, $source := .Values.routeSources }}
{{- $name := toString $source.name }}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$" $name) }}
{{- fail (printf "routeSources[%d].name %q: a source's name is its file in the routes directory and its cors_policy_source_valid label, so it must be a DNS label (lower-case letters, digits and hyphens, at most 63)" $i $name) }}
{{- end }}
{{- $key := default "routes.yaml" $source.key }}
{{- $extension := regexFind "[.](yaml|yml|json)$" $key }}
{{- if or (not $extension) (not (regexMatch "^[-._a-zA-Z0-9]+$" $key)) }}
{{- fail (printf "routeSources[%d].key %q: the service reads *.yaml, *.yml and *.json files; name the ConfigMap key so" $i $key) }}
{{- end }}
{{- if hasKey $seen $name }}
{{- fail (printf "routeSources[%d] and routeSources[%d] are both named %q: each source is one file of the routes directory (%s%s) and one cors_policy_source_valid{source} label, so two sources cannot share a name" (get $seen $name) $i $name $name $extension) }}
{{- end }}
{{- $_ := set $seen $name $i }}
{{- if not $source.hosts }}
{{- fail (printf "routeSources[%d] (%s): hosts is required: the host names the source may serve (the main policy's route_sources, and the preflight route's Host rule)" $i $name) }}
{{- end }}
{{- $hosts := list }}
{{- range $source.hosts }}{{ $hosts = append $hosts (include "cors-handler.checkHost" (dict "host" . "setting" (printf "routeSources[%d].hosts" $i))) }}{{ end }}
{{- $out = append $out (dict "name" $name "file" (printf "%s%s" $name $extension) "configMap" (default $name $source.configMap) "key" $key "hosts" $hosts) }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/* A host name or "*." wildcard, lower-cased; fails on anything else (a backtick would end Traefik's rule). */}}
{{- define "cors-handler.checkHost" -}}
{{- $host := lower (toString .host) }}
{{- if not (regexMatch "^([*][.])?[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?([.][a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$" $host) }}
{{- fail (printf "%s: %q is not a host name or a *. wildcard (*.example.com)" .setting (toString .host)) }}
{{- end }}
{{- $host }}
{{- end }}

{{/* The API hosts of the main policy: traefik.host and traefik.hosts, lower-cased, as a JSON list. */}}
{{- define "cors-handler.mainHosts" -}}
{{- $hosts := list }}
{{- with .Values.traefik.host }}{{ $hosts = append $hosts (include "cors-handler.checkHost" (dict "host" . "setting" "traefik.host")) }}{{ end }}
{{- range .Values.traefik.hosts }}{{ $hosts = append $hosts (include "cors-handler.checkHost" (dict "host" . "setting" "traefik.hosts")) }}{{ end }}
{{- toJson (uniq $hosts) }}
{{- end }}

{{/*
Every host whose preflights go to cors-handler, as a JSON list: the main hosts, the hosts the policy's
routes name, and every route source's hosts. One list for the IngressRoute's Host rule, the HTTPRoutes'
hostnames and `helm test`: adding a team's source adds its hosts everywhere. Empty: any host.
*/}}
{{- define "cors-handler.hosts" -}}
{{- $hosts := include "cors-handler.mainHosts" . | fromJsonArray }}
{{- range $i, $route := .Values.policy.routes }}
{{- range $route.hosts }}{{ $hosts = append $hosts (include "cors-handler.checkHost" (dict "host" . "setting" (printf "policy.routes[%d].hosts" $i))) }}{{ end }}
{{- end }}
{{- range include "cors-handler.routeSources" . | fromJsonArray }}{{ $hosts = concat $hosts .hosts }}{{ end }}
{{- toJson (uniq $hosts) }}
{{- end }}

{{/* Traefik's host match for a JSON list of hosts: Host(`a`) per name, HostRegexp per "*." wildcard (one or
     more labels, never the apex; Traefik lower-cases the host and drops the port first), "" for none. */}}
{{- define "cors-handler.hostRule" -}}
{{- $matchers := list }}
{{- range $host := fromJsonArray . }}
{{- $host = lower $host }}
{{- if hasPrefix "*." $host }}
{{- $matchers = append $matchers (printf "HostRegexp(`^(?:[a-z0-9_-]+\\.)+%s$`)" (regexQuoteMeta (trimPrefix "*." $host))) }}
{{- else }}
{{- $matchers = append $matchers (printf "Host(`%s`)" $host) }}
{{- end }}
{{- end }}
{{- if gt (len $matchers) 1 }}({{ join " || " $matchers }}){{ else }}{{ join "" $matchers }}{{ end }}
{{- end }}

{{/* A policy as the ConfigMap holds it (argument: dict with root, the chart's context, and policy, the live or
     candidate policy's values): plus route_sources (each source's file -> the hosts it may serve) from
     routeSources, so that the platform team's values decide which team serves which host. The candidate gets
     them too: it reads the same routes directory, and without them every file could serve any host. */}}
{{- define "cors-handler.policy" -}}
{{- $policy := deepCopy .policy }}
{{- with include "cors-handler.routeSources" .root | fromJsonArray }}
{{- $owned := dict }}
{{- range . }}{{ $_ := set $owned .file (dict "hosts" .hosts) }}{{ end }}
{{- $_ := set $policy "route_sources" $owned }}
{{- end }}
{{- toYaml $policy }}
{{- end }}

{{/* Where the route sources are mounted (the routes directory, CORS_ROUTES_DIR). */}}
{{- define "cors-handler.routesDir" -}}
/etc/cors-handler-routes
{{- end }}

{{/* The routes directory as a projected volume: one file per source, each ConfigMap optional (a team's missing
     ConfigMap never keeps a pod from starting: the service fails that source closed and says so). */}}
{{- define "cors-handler.routesVolume" -}}
- name: routes
  projected:
    sources:
      {{- range include "cors-handler.routeSources" . | fromJsonArray }}
      - configMap:
          name: {{ .configMap }}
          optional: true
          items:
            - key: {{ .key }}
              path: {{ .file }}
      {{- end }}
{{- end }}

{{/* The preflight rule Traefik routes to cors-handler. */}}
{{- define "cors-handler.preflightMatch" -}}
{{- $rule := "Method(`OPTIONS`) && HeaderRegexp(`Access-Control-Request-Method`, `.+`)" }}
{{- with include "cors-handler.hostRule" (include "cors-handler.hosts" .) }}{{ $rule = printf "%s && %s" $rule . }}{{ end }}
{{- with .Values.traefik.pathPrefix }}{{ $rule = printf "%s && PathPrefix(`%s`)" $rule . }}{{ end }}
{{- $rule }}
{{- end }}

{{/* The preflight route's services: cors-handler's Service, or the canary split. */}}
{{- define "cors-handler.preflightServices" -}}
{{- if .Values.traefik.canary.enabled }}
- name: {{ include "cors-handler.fullname" . }}-canary
  kind: TraefikService
{{- else }}
- name: {{ include "cors-handler.fullname" . }}
  port: {{ .Values.service.port }}
  {{- with include "cors-handler.balancerOptions" . }}{{ . | nindent 2 }}{{ end }}
{{- end }}
{{- end }}

{{/* ClientIP(`a`) || ClientIP(`b`) ... for a list of CIDRs (Traefik v3 takes one per matcher). */}}
{{- define "cors-handler.clientIPs" -}}
{{- $out := list }}
{{- range . }}{{ $out = append $out (printf "ClientIP(`%s`)" .) }}{{ end }}
{{- join " || " $out }}
{{- end }}

{{/*
The two rate limits must pick the same client: Traefik appends its TCP peer to X-Forwarded-For,
so the service's depth is the edge's plus one; clients exempt at the edge are exempt in the service.
*/}}
{{- define "cors-handler.checkRateLimits" -}}
{{- $edge := .Values.traefik.rateLimit }}
{{- $service := .Values.policy.rate_limit }}
{{- if and $edge.enabled $service.enabled (ne (int $service.depth) (add1 (int $edge.depth))) }}
{{- fail (printf "policy.rate_limit.depth is %d and traefik.rateLimit.depth %d: behind Traefik the service must read the address one further to the right of X-Forwarded-For than the edge (Traefik appends its peer), so set policy.rate_limit.depth to %d (docs/deployment.md: behind a load balancer)" (int $service.depth) (int $edge.depth) (add1 (int $edge.depth))) }}
{{- end }}
{{- if and $edge.enabled $edge.exemptClients (gt (int $edge.depth) 0) }}
{{- fail "traefik.rateLimit.exemptClients needs traefik.rateLimit.depth 0: Traefik's ClientIP matcher sees the TCP peer, which behind a load balancer is the load balancer (every client would be exempt)" }}
{{- end }}
{{- if $service.enabled }}
{{- range $i, $cidr := $edge.exemptClients }}
{{- if not (has $cidr $service.excluded_ips) }}
{{- fail (printf "traefik.rateLimit.exemptClients[%d] %s is not in policy.rate_limit.excluded_ips: the service would still limit it; list it in both" $i $cidr) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* A route's effective value: the route's own key when set, else the top-level policy's (the service's inheritance). */}}
{{- define "cors-handler.pick" -}}
{{- if hasKey .route .key }}{{ toJson (get .route .key) }}{{ else }}{{ toJson (get .top .key) }}{{ end }}
{{- end }}

{{/*
Origin matching for Traefik's headers middleware, with the service's answers.

Traefik (pkg/middlewares/headers) allows an actual response's Origin when it equals an
accessControlAllowOriginList entry byte for byte, or when an accessControlAllowOriginListRegex
(Go RE2) matches anywhere in it. cors-handler reads an Origin as Fetch's grammar has it
(whatwg/fetch 301650c: lower-case scheme://host[:port], no percent-encoding, host labels of
a-z 0-9 _ - not starting with "-", port at most 65535 with leading zeros allowed, IPv6 in
lower-case hextets without leading zeros or a dotted quad, "::" for two or more hextets) and
compares a normalized form (the default port dropped). So every allowed origin becomes one
anchored regex that accepts exactly the spellings the service would normalize to it: the
lower-case text, the default port optional, up to five port digits with leading zeros.
Only "null" stays in the list (listed, or covered by "*"; the service also compares it byte
for byte). What the middleware cannot express, the chart refuses to render.
*/}}

{{/* RE2 for ":port" as the service parses it (1-5 digits, leading zeros allowed); argument: the port as an int. */}}
{{- define "cors-handler.portRegex" -}}
{{- $digits := toString . }}
{{- $zeros := sub 5 (len $digits) }}
{{- if gt $zeros 0 }}:0{0,{{ $zeros }}}{{ $digits }}{{ else }}:{{ $digits }}{{ end }}
{{- end }}

{{/* RE2 for any port the service accepts: 1 to 5 digits, at most 65535. */}}
{{- define "cors-handler.anyPort" -}}
:(?:[0-9]{1,4}|[0-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])
{{- end }}

{{- define "cors-handler.octet" -}}
(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])
{{- end }}

{{- define "cors-handler.label" -}}
[a-z0-9_][a-z0-9_-]*
{{- end }}

{{/*
RE2 for Fetch's serialized-ipv6: eight hextets, or "::" standing for two or more with at most
six written beside it. Argument: dict with zero (any hextet but the last), last (the final
hextet), tail (whether "x::", eliding the final hextet, is allowed). With zero = 0, last = 1 it
is every spelling of ::1; with any hextet, every address.
*/}}
{{- define "cors-handler.ipv6" -}}
{{- $z := .zero }}
{{- $alts := list (printf "(?:%s:){7}%s" $z .last) (printf "::(?:%s:){5}%s" $z .last) }}
{{- range $left := list 1 2 3 4 5 }}
{{- $alts = append $alts (printf "(?:(?:%s:){0,%d}%s)?::(?:%s:){%d}%s" $z (sub $left 1) $z $z (sub 5 $left) $.last) }}
{{- end }}
{{- if .tail }}{{ $alts = append $alts (printf "(?:(?:%s:){0,5}%s)?::" $z $z) }}{{ end }}
{{- printf "(?:%s)" (join "|" $alts) }}
{{- end }}

{{/* One allow_origins entry (exact or wildcard) as an anchored RE2; fails on what cannot be expressed. */}}
{{- define "cors-handler.originRegex" -}}
{{- $text := trim .origin }}
{{- $grammar := `^([A-Za-z][A-Za-z0-9+.-]*)://(\*\.)?([A-Za-z0-9_.-]+)(:([0-9]{1,5}))?$` }}
{{- if not (regexMatch $grammar $text) }}
{{- /* values.schema.json has refused every malformed origin already: what is left here is an IPv6 host */}}
{{- fail (printf "%s: %q is a valid origin, but the chart does not translate IPv6 origins into Traefik's headers middleware for actual responses: set traefik.actualResponseHeaders=false and let the backend add the CORS headers to its actual responses" .setting $text) }}
{{- end }}
{{- $scheme := regexReplaceAll $grammar $text "${1}" | lower }}
{{- $wildcard := ne (regexReplaceAll $grammar $text "${2}") "" }}
{{- $host := regexReplaceAll $grammar $text "${3}" | lower }}
{{- $port := regexReplaceAll $grammar $text "${5}" }}
{{- if not (regexMatch (printf "^%s(\\.%s)*$" (include "cors-handler.label" .) (include "cors-handler.label" .)) $host) }}
{{- fail (printf "%s: %q is not a valid origin (scheme://host[:port]); cors-handler check says why" .setting $text) }}
{{- end }}
{{- $default := get (dict "http" "80" "https" "443" "ws" "80" "wss" "443") $scheme }}
{{- $portRegex := "" }}
{{- if $port }}
{{- $number := atoi $port }}
{{- if gt $number 65535 }}{{ fail (printf "%s: %q: the port is above 65535" .setting $text) }}{{ end }}
{{- $portRegex = include "cors-handler.portRegex" $number }}
{{- if eq (toString $number) $default }}{{ $portRegex = printf "(?:%s)?" $portRegex }}{{ end }}
{{- else if $default }}
{{- $portRegex = printf "(?:%s)?" (include "cors-handler.portRegex" (atoi $default)) }}
{{- end }}
{{- $labels := ternary (printf "(?:%s\\.)+" (include "cors-handler.label" .)) "" $wildcard }}
{{- printf "^%s://%s%s%s$" (regexQuoteMeta $scheme) $labels (regexQuoteMeta $host) $portRegex }}
{{- end }}

{{/*
The headers middleware's origin settings for one route: dict with list (accessControlAllowOriginList)
and regexes (accessControlAllowOriginListRegex), as JSON. Argument: dict with setting (for messages),
origins, regexes, environment, cidrs.
*/}}
{{- define "cors-handler.originMatch" -}}
{{- $list := list }}
{{- $out := list }}
{{- if .regexes }}
{{- fail (printf "%sallow_origin_regex: Traefik's headers middleware matches its regexes against the Origin header as sent, cors-handler against the normalized origin (scheme and host lower-cased, default port dropped), so the chart cannot give actual responses the same answer as preflights. List the origins or wildcards instead, or set traefik.actualResponseHeaders=false and let the backend add the CORS headers to its actual responses" .setting) }}
{{- end }}
{{- $octet := include "cors-handler.octet" . }}
{{- $label := include "cors-handler.label" . }}
{{- range $i, $origin := .origins }}
{{- $origin = trim $origin }}
{{- if eq $origin "null" }}
{{- $list = append $list "null" }}
{{- else if eq $origin "*" }}
{{- /* every origin the service parses, and null (a "*" policy covers it too) */}}
{{- $list = append $list "null" }}
{{- $h16 := "(?:0|[1-9a-f][0-9a-f]{0,3})" }}
{{- $v6 := include "cors-handler.ipv6" (dict "zero" $h16 "last" $h16 "tail" true) }}
{{- $out = append $out (printf "^[a-z][a-z0-9+.-]*://(?:%s(?:\\.%s)*|\\[%s\\])(?:%s)?$" $label $label $v6 (include "cors-handler.anyPort" $)) }}
{{- else }}
{{- $out = append $out (include "cors-handler.originRegex" (dict "origin" $origin "setting" (printf "%sallow_origins[%d]" $.setting $i))) }}
{{- end }}
{{- end }}
{{- if has (lower (trim (toString .environment))) (list "staging" "uat" "development" "dev") }}
{{- /* development and staging: loopback and the private networks, http or https, any port */}}
{{- $hosts := list "localhost" (printf "127(?:\\.%s){3}" $octet) }}
{{- $hosts = append $hosts (printf "\\[%s\\]" (include "cors-handler.ipv6" (dict "zero" "0" "last" "1" "tail" false))) }}
{{- range .cidrs }}
{{- $parts := splitList "/" . }}
{{- $kept := div (atoi (index $parts 1)) 8 | int }}
{{- $octets := slice (splitList "." (index $parts 0)) 0 $kept }}
{{- $host := join "\\." $octets }}
{{- range until (sub 4 $kept | int) }}{{ $host = printf "%s%s%s" $host (ternary "" "\\." (eq $host "")) $octet }}{{ end }}
{{- $hosts = append $hosts $host }}
{{- end }}
{{- $out = append $out (printf "^https?://(?:%s)(?:%s)?$" (join "|" $hosts) (include "cors-handler.anyPort" $)) }}
{{- end }}
{{- toJson (dict "list" (uniq $list) "regexes" $out) }}
{{- end }}

{{/* Traefik Path rule with the service's segment-boundary semantics: /api/v2 covers /api/v2 and /api/v2/x, not /api/v20. */}}
{{- define "cors-handler.pathRule" -}}
{{- $prefix := trimSuffix "/" . }}
{{- if eq $prefix "" }}PathPrefix(`/`){{ else }}(Path(`{{ $prefix }}`) || PathPrefix(`{{ $prefix }}/`)){{ end }}
{{- end }}

{{/* The origin the helm test and NOTES use: tests.origin, else the first exact allowed origin. */}}
{{- define "cors-handler.testOrigin" -}}
{{- $origin := .Values.tests.origin }}
{{- if not $origin }}
{{- range .Values.policy.allow_origins }}
{{- if and (not $origin) (not (contains "*" .)) (ne . "null") }}{{ $origin = . }}{{ end }}
{{- end }}
{{- end }}
{{- $origin }}
{{- end }}

{{/* A ratio (0.05) as the percentage an alert summary shows (5): sprig's `mul` is integer
     (0.05 -> 0); `mulf` multiplies in decimal, so 0.05 gives 5, not 5.000000000000001. */}}
{{- define "cors-handler.percent" -}}
{{- mulf . 100 }}
{{- end }}

{{/* A service entry's options when it load-balances over cors-handler's pods: the passive health check and the
     ServersTransport, each when enabled. */}}
{{- define "cors-handler.balancerOptions" -}}
{{- $options := dict }}
{{- with .Values.traefik.passiveHealthCheck }}{{ if .enabled }}{{ $_ := set $options "passiveHealthCheck" (dict "maxFailedAttempts" .maxFailedAttempts "failureWindow" .failureWindow) }}{{ end }}{{ end }}
{{- if .Values.traefik.serversTransport.enabled }}{{ $_ := set $options "serversTransport" (include "cors-handler.fullname" .) }}{{ end }}
{{- if $options }}{{ toYaml $options }}{{ end }}
{{- end }}

{{/*
The Gateway API preflight rules' scopes, as a JSON list of {name, hostnames, paths: [{type, value}]}. The Gateway
API has no router priority: among the rules a request matches, the most specific hostname wins, then an Exact
path, the longest PathPrefix, a method match, the most header matches (HTTPRouteRule in httproute_types.go). So
the preflight rules repeat the hostnames and paths of the CORS rules they serve (the default route on every host,
each policy route on its own hosts, or on every host), adding the OPTIONS method match and the
Access-Control-Request-Method header match: on the same host and path as an API route, they are more specific.
*/}}
{{- define "cors-handler.preflightScopes" -}}
{{- $all := include "cors-handler.hosts" . | fromJsonArray }}
{{- $root := dict "type" "PathPrefix" "value" (default "/" (trimSuffix "/" .Values.traefik.pathPrefix)) }}
{{- $scopes := list }}
{{- $shared := list $root }}
{{- range $i, $route := .Values.policy.routes }}
{{- $exactPath := eq (toString $route.path_exact) "true" }}
{{- /* an exact path is the service's as written (a trailing "/" included); a prefix is normalized as the service does */}}
{{- $path := dict "type" (ternary "Exact" "PathPrefix" $exactPath) "value" (ternary (trim $route.path_prefix) (default "/" (regexReplaceAll "/+$" (trim $route.path_prefix) "")) $exactPath) }}
{{- include "cors-handler.checkGatewayPath" (dict "value" $path.value "setting" (printf "policy.routes[%d].path_prefix" $i)) }}
{{- if $route.hosts }}
{{- $hosts := list }}
{{- range $route.hosts }}{{ $hosts = append $hosts (include "cors-handler.checkHost" (dict "host" . "setting" (printf "policy.routes[%d].hosts" $i))) }}{{ end }}
{{- $scopes = append $scopes (dict "name" (printf "preflight-%s" $route.name) "hostnames" (uniq $hosts) "paths" (list $path)) }}
{{- else if not (has $path $shared) }}
{{- $shared = append $shared $path }}
{{- end }}
{{- end }}
{{- toJson (prepend $scopes (dict "name" "preflight" "hostnames" $all "paths" $shared)) }}
{{- end }}

{{/* A path the Gateway API accepts in an Exact or PathPrefix match (the CEL rules of HTTPPathMatch, which
     a CRD schema check does not run): fails naming the setting otherwise. */}}
{{- define "cors-handler.checkGatewayPath" -}}
{{- $v := .value }}
{{- $bad := or (contains "//" $v) (contains "/./" $v) (contains "/../" $v) (contains "%2f" $v) (contains "%2F" $v) (contains "#" $v) (hasSuffix "/.." $v) (hasSuffix "/." $v) }}
{{- if or $bad (not (regexMatch "^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$" $v)) }}
{{- fail (printf "gatewayAPI: %s %q is not a path an HTTPRoute may match (no //, /./, /../, %%2F or #, no trailing /. or /.., only URL path characters): the preflight rule could not repeat it; write it as the requests spell it" .setting $v) }}
{{- end }}
{{- end }}

{{/* The methods the Exact header matches name: gatewayAPI.methods and every method the policy allows. */}}
{{- define "cors-handler.preflightMethods" -}}
{{- $methods := .Values.gatewayAPI.methods }}
{{- $methods = concat $methods (.Values.policy.allow_methods | default list) }}
{{- range .Values.policy.routes }}{{ $methods = concat $methods (.allow_methods | default list) }}{{ end }}
{{- toJson (without (uniq $methods) "*") }}
{{- end }}

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

{{/* The preflight rule Traefik routes to cors-handler. */}}
{{- define "cors-handler.preflightMatch" -}}
{{- $rule := "Method(`OPTIONS`) && HeaderRegexp(`Access-Control-Request-Method`, `.+`)" }}
{{- with .Values.traefik.host }}{{ $rule = printf "%s && Host(`%s`)" $rule . }}{{ end }}
{{- with .Values.traefik.pathPrefix }}{{ $rule = printf "%s && PathPrefix(`%s`)" $rule . }}{{ end }}
{{- $rule }}
{{- end }}

{{/* A route's effective value: the route's own key when set, else the top-level policy's. */}}
{{- define "cors-handler.pick" -}}
{{- if hasKey .route .key }}{{ toJson (get .route .key) }}{{ else }}{{ toJson (get .top .key) }}{{ end }}
{{- end }}

{{/*
Origin regexes (Go RE2, matched by Traefik against the Origin header) for the
actual-response headers middleware: wildcard subdomains, the policy's regexes
and, outside production, the development origins (loopback and the private
CIDRs, octet-aligned). Argument: dict with origins, regexes, environment, cidrs.
*/}}
{{- define "cors-handler.originRegexes" -}}
{{- $out := list }}
{{- range .origins }}
{{- if contains "://*." . }}
{{- $scheme := index (splitList "://*." .) 0 }}
{{- $rest := index (splitList "://*." .) 1 }}
{{- $out = append $out (printf "^%s://([A-Za-z0-9_-]+\\.)+%s$" $scheme (replace "." "\\." $rest)) }}
{{- end }}
{{- end }}
{{- range .regexes }}{{ $out = append $out . }}{{ end }}
{{- if ne .environment "production" }}
{{- $out = append $out "^https?://(localhost|127(\\.[0-9]{1,3}){3}|\\[::1\\])(:[0-9]{1,5})?$" }}
{{- range .cidrs }}
{{- $parts := splitList "/" . }}
{{- $octets := splitList "." (index $parts 0) }}
{{- $kept := div (atoi (index $parts 1)) 8 }}
{{- $host := join "\\." (slice $octets 0 (int $kept)) }}
{{- range until (sub 4 (int $kept) | int) }}{{ $host = printf "%s%s[0-9]{1,3}" $host (ternary "" "\\." (eq $host "")) }}{{ end }}
{{- $out = append $out (printf "^https?://%s(:[0-9]{1,5})?$" $host) }}
{{- end }}
{{- end }}
{{- toJson $out }}
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

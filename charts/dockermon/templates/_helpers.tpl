{{/*
Names, labels and the values several templates share.
*/}}

{{- define "dockermon.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 42 | trimSuffix "-" -}}
{{- end -}}

{{/*
The prefix of every resource name. 42 characters at most: the longest suffix the chart adds
("-metrics-token", "-dashboard-container") and the StatefulSet's pod and revision names must
still fit the 63-character limit of DNS labels and label values.
*/}}
{{- define "dockermon.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 42 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 42 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 42 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "dockermon.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Kubernetes' recommended labels; call with (dict "root" $ "component" "collector"). */}}
{{- define "dockermon.labels" -}}
helm.sh/chart: {{ include "dockermon.chart" .root }}
{{ include "dockermon.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: dockermon
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The labels selectors use: stable across upgrades (no version). */}}
{{- define "dockermon.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dockermon.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end -}}

{{/* An image reference; call with (dict "root" $ "image" .Values.collector.image). */}}
{{- define "dockermon.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{- define "dockermon.collectorServiceAccount" -}}
{{- printf "%s-collector" (include "dockermon.fullname" .) -}}
{{- end -}}

{{- define "dockermon.agentServiceAccount" -}}
{{- printf "%s-agent" (include "dockermon.fullname" .) -}}
{{- end -}}

{{/* The Service agents dial, and the name the collector's certificate must carry. */}}
{{- define "dockermon.agentServiceName" -}}
{{- printf "%s-agents" (include "dockermon.fullname" .) -}}
{{- end -}}

{{- define "dockermon.agentServiceHost" -}}
{{- printf "%s.%s.svc" (include "dockermon.agentServiceName" .) .Release.Namespace -}}
{{- end -}}

{{- define "dockermon.authSecretName" -}}
{{- default (printf "%s-auth" (include "dockermon.fullname" .)) .Values.auth.existingSecret -}}
{{- end -}}

{{- define "dockermon.metricsTokenSecretName" -}}
{{- default (printf "%s-metrics-token" (include "dockermon.fullname" .)) .Values.metrics.token.existingSecret -}}
{{- end -}}

{{/* The Secret and key of the database URL (external and mariadb modes). */}}
{{- define "dockermon.databaseUrlSecret" -}}
{{- if eq .Values.database.mode "external" -}}
{{- .Values.database.external.existingSecret -}}
{{- else -}}
{{- printf "%s-mariadb" (include "dockermon.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "dockermon.databaseUrlKey" -}}
{{- if eq .Values.database.mode "external" -}}
{{- .Values.database.external.key -}}
{{- else -}}
database-url
{{- end -}}
{{- end -}}

{{/*
The names agents reach the collector by inside the cluster: the agents' Service, short and
qualified (cluster.local is Kubernetes' default cluster domain; a cluster with another one
resolves the shorter names all the same). The collector's server certificate must carry them;
one per line.
*/}}
{{- define "dockermon.agentServiceDnsNames" -}}
{{- $svc := include "dockermon.agentServiceName" . -}}
{{- $ns := .Release.Namespace -}}
{{ $svc }}
{{ printf "%s.%s" $svc $ns }}
{{ printf "%s.%s.svc" $svc $ns }}
{{ printf "%s.%s.svc.cluster.local" $svc $ns }}
{{- end -}}

{{/* The Secret the collector keeps its built-in CA in (tls.mode builtin). */}}
{{- define "dockermon.pkiSecretName" -}}
{{- default (printf "%s-pki" (include "dockermon.fullname" .)) .Values.tls.builtin.secretName -}}
{{- end -}}

{{/*
The ConfigMap the collector publishes its CA certificate in (ca.crt alone, in every TLS
mode), which agents mount: no Secret reaches the nodes.
*/}}
{{- define "dockermon.caConfigMapName" -}}
{{- printf "%s-ca" (include "dockermon.fullname" .) -}}
{{- end -}}

{{/*
The built-in CA's files in the certManager and existingSecret modes, as projected-volume
sources mapping them to the names <data dir>/pki/ holds (collector/src/pki.rs): ca.crt,
ca.key, server.crt, server.key; cert-manager and kubernetes.io/tls Secrets name them tls.crt
and tls.key. In builtin mode there is none: the collector writes the files from its Secret.
*/}}
{{- define "dockermon.pkiSources" -}}
{{- $ca := .Values.tls.existingSecret.caSecret }}
{{- $server := .Values.tls.existingSecret.serverSecret }}
{{- if eq .Values.tls.mode "certManager" }}
{{- $ca = printf "%s-ca" (include "dockermon.fullname" .) }}
{{- $server = printf "%s-collector-tls" (include "dockermon.fullname" .) }}
{{- end }}
- secret:
    name: {{ $ca }}
    items:
      - {key: tls.crt, path: ca.crt}
      - {key: tls.key, path: ca.key}
- secret:
    name: {{ $server }}
    items:
      - {key: tls.crt, path: server.crt}
      - {key: tls.key, path: server.key}
{{- end -}}

{{/*
Settings as DOCKERMON_* variables: the key upper-cased, lists joined with commas, as the
binaries read them from the environment.
*/}}
{{- define "dockermon.settingsEnv" -}}
{{- range $key, $value := . }}
{{- if not (kindIs "invalid" $value) }}
- name: {{ printf "DOCKERMON_%s" (upper $key) }}
  value: {{ if kindIs "slice" $value }}{{ join "," $value | quote }}{{ else }}{{ toString $value | quote }}{{ end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Restricted-profile container settings shared by the Dockermon containers. */}}
{{- define "dockermon.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/*
The schema's cross-value rules, again with a sentence a person can act on: they still hold
when schema validation is skipped (--skip-schema-validation).
*/}}
{{- define "dockermon.validate" -}}
{{- if and (eq .Values.database.mode "sqlite") (gt (int .Values.collector.replicas) 1) }}
{{- fail "collector.replicas > 1 needs a shared database: SQLite is one file on one volume (set database.mode to external or mariadb)" }}
{{- end }}
{{- if and (eq .Values.database.mode "external") (or (not .Values.database.external.existingSecret) (not .Values.database.external.key)) }}
{{- fail "database.mode external needs database.external.existingSecret and database.external.key: the Secret holding the mysql:// URL" }}
{{- end }}
{{- if and (eq .Values.tls.mode "existingSecret") (or (not .Values.tls.existingSecret.caSecret) (not .Values.tls.existingSecret.serverSecret)) }}
{{- fail "tls.mode existingSecret needs tls.existingSecret.caSecret and serverSecret: the CA's and the collector's kubernetes.io/tls Secrets" }}
{{- end }}
{{- end -}}

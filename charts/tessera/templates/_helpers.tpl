{{/* The release's full name, at most 63 characters (a DNS label). */}}
{{- define "tessera.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tessera.selectorLabels" -}}
app.kubernetes.io/name: tessera-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tessera.labels" -}}
{{ include "tessera.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: tessera
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "tessera.serviceAccountName" -}}
{{- default (include "tessera.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* The operator's image, which is also the sidecar and adapter image. */}}
{{- define "tessera.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The leader Lease, in the release namespace. */}}
{{- define "tessera.leaseName" -}}
{{- include "tessera.fullname" . -}}
{{- end -}}

{{/*
The operator's RBAC rules, from files/operator-rbac.yaml: the one file the
end-to-end tests run the operator under, so a verb the operator needs and
the chart lacks fails the tests. Lease rules are left out: the chart grants
them in the release namespace only (lease-role.yaml).
*/}}
{{- define "tessera.rules" -}}
{{- $rules := list -}}
{{- range regexSplit "(?m)^---\\s*$" (.Files.Get "files/operator-rbac.yaml") -1 -}}
{{- $doc := fromYaml . -}}
{{- if and (eq (get $doc "kind") "ClusterRole") (eq (get (get $doc "metadata") "name") "tessera-operator") -}}
{{- range $doc.rules -}}
{{- if not (has "coordination.k8s.io" .apiGroups) -}}
{{- $rules = append $rules . -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if not $rules -}}
{{- fail "files/operator-rbac.yaml holds no rules in the ClusterRole tessera-operator" -}}
{{- end -}}
{{- toYaml $rules -}}
{{- end -}}

{{/*
Fails when a Prometheus-operator object is asked for and the cluster lacks
its API: offline `helm template` would otherwise drop it without a word.
Arguments: (list $ "PodMonitor" "monitoring.podMonitor").
*/}}
{{- define "tessera.requireMonitoringApi" -}}
{{- $ctx := index . 0 -}}
{{- $kind := index . 1 -}}
{{- if not ($ctx.Capabilities.APIVersions.Has (printf "monitoring.coreos.com/v1/%s" $kind)) -}}
{{- fail (printf "%s.enabled is true, but the cluster has no monitoring.coreos.com/v1 %s: install the Prometheus operator's CRDs first (with helm template, pass --api-versions monitoring.coreos.com/v1/%s)" (index . 2) $kind $kind) -}}
{{- end -}}
{{- end -}}

{{/* engineImages as the operator's TESSERA_ENGINE_IMAGES: engine=image,... */}}
{{- define "tessera.engineImages" -}}
{{- $pairs := list -}}
{{- range $engine, $image := . -}}
{{- $pairs = append $pairs (printf "%s=%s" $engine $image) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end -}}

{{/*
The rules of one RBAC object of files/operator-rbac.yaml, by kind and name.
Arguments: (list $ "ClusterRole" "tessera-operator-injection").
*/}}
{{- define "tessera.rulesOf" -}}
{{- $ctx := index . 0 -}}
{{- $rules := list -}}
{{- range regexSplit "(?m)^---\\s*$" ($ctx.Files.Get "files/operator-rbac.yaml") -1 -}}
{{- $doc := fromYaml . -}}
{{- if and (eq (get $doc "kind") (index $ 1)) (eq (get (get $doc "metadata") "name") (index $ 2)) -}}
{{- $rules = $doc.rules -}}
{{- end -}}
{{- end -}}
{{- if not $rules -}}
{{- fail (printf "files/operator-rbac.yaml holds no rules in the %s %s" (index . 1) (index . 2)) -}}
{{- end -}}
{{- toYaml $rules -}}
{{- end -}}

{{/*
The injection webhook's cluster rules: those of the file, less what the
chart makes unnecessary: `create` on the webhook configuration (the chart
creates it) and `get` on every Secret when checkSecrets is false.
*/}}
{{- define "tessera.injectionRules" -}}
{{- $rules := list -}}
{{- range fromYamlArray (include "tessera.rulesOf" (list . "ClusterRole" "tessera-operator-injection")) -}}
{{- if and (has "mutatingwebhookconfigurations" .resources) (has "create" .verbs) -}}
{{- else if and (has "secrets" .resources) (not $.Values.injection.checkSecrets) -}}
{{- else -}}
{{- $rules = append $rules . -}}
{{- end -}}
{{- end -}}
{{- toYaml $rules -}}
{{- end -}}

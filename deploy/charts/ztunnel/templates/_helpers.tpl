{{/* Name of the DaemonSet and ServiceAccount. */}}
{{- define "ztunnel.name" -}}
{{ .Values.resourceName | default "ztunnel" }}
{{- end }}

{{/* Labels of every top-level object (and of the pod). */}}
{{- define "ztunnel.labels" -}}
app.kubernetes.io/name: ztunnel
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
app.kubernetes.io/part-of: "istio"
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The operator's labels for top-level objects, as YAML lines (may be empty). */}}
{{- define "ztunnel.extraLabels" -}}
{{- with .Values.labels }}{{ toYaml . }}{{ end }}
{{- end }}

{{/* Annotations of every top-level object: the operator's, plus istio.io/rev for a revision. */}}
{{- define "ztunnel.annotations" -}}
{{- $a := deepCopy (.Values.annotations | default dict) }}
{{- if .Values.revision }}{{ $_ := set $a "istio.io/rev" .Values.revision }}{{ end }}
{{- if $a }}{{ toYaml $a }}{{ else }}{}{{ end }}
{{- end }}

{{/* Whether namespaced (NAMESPACE) or cluster-scoped (CLUSTER) objects are rendered. */}}
{{- define "ztunnel.scope" -}}
{{- $s := upper (toString (.Values.resourceScope | default "ALL")) }}
{{- if not (has $s (list "ALL" "CLUSTER" "NAMESPACE")) }}
{{- fail (printf "resourceScope %q: want ALL, CLUSTER or NAMESPACE" .Values.resourceScope) }}
{{- end }}
{{- $s }}
{{- end }}

{{/* The container image reference. */}}
{{- define "ztunnel.image" -}}
{{- if contains "/" (toString .Values.image) -}}
{{ .Values.image }}
{{- else -}}
{{ .Values.hub }}/{{ .Values.image | default "ztunnel" }}:{{ .Values.tag | default .Chart.AppVersion }}{{ with .Values.variant }}-{{ . }}{{ end }}
{{- end }}
{{- end }}

{{/* Default address of istiod (XDS and CA), host:port. */}}
{{- define "ztunnel.istiod" -}}
istiod{{ with .Values.revision }}-{{ . }}{{ end }}.{{ .Values.istioNamespace | default "istio-system" }}.svc:15012
{{- end }}

{{/* SPDX-License-Identifier: Apache-2.0 */}}
{{- define "kmm.ns" -}}{{ .Values.namespace.name }}{{- end -}}

{{/* <registry>/<name>:<tag> */}}
{{- define "kmm.image" -}}
{{- $i := index . 0 -}}{{- $name := index . 1 -}}
{{- if $i.registry -}}{{ trimSuffix "/" $i.registry }}/{{- end -}}{{ $name }}:{{ $i.tag }}
{{- end -}}

{{- define "kmm.labels" -}}
app.kubernetes.io/name: kmm
app.kubernetes.io/part-of: kmm
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "kmm.operatorLabels" -}}
{{ include "kmm.labels" . }}
app.kubernetes.io/component: kmm
control-plane: controller
{{- end -}}

{{- define "kmm.webhookLabels" -}}
{{ include "kmm.labels" . }}
app.kubernetes.io/component: webhook-server
{{- end -}}

{{/* The port of a HOST:PORT address. */}}
{{- define "kmm.port" -}}{{ regexReplaceAll "^.*:" (toString .) "" }}{{- end -}}

{{/* controller_config.yaml: the config values without the null ones. */}}
{{- define "kmm.config" -}}
{{- $out := dict -}}
{{- range $k, $v := .Values.config -}}
{{- if kindIs "map" $v -}}
{{- $sub := dict -}}
{{- range $k2, $v2 := $v -}}{{- if not (kindIs "invalid" $v2) -}}{{- $_ := set $sub $k2 $v2 -}}{{- end -}}{{- end -}}
{{- if $sub -}}{{- $_ := set $out $k $sub -}}{{- end -}}
{{- else if not (kindIs "invalid" $v) -}}
{{- $_ := set $out $k $v -}}
{{- end -}}
{{- end -}}
{{- if and .Values.hub.enabled $out.leaderElection -}}
{{- if eq (toString $out.leaderElection.resourceID) "kmm.sigs.x-k8s.io" -}}
{{- $_ := set $out.leaderElection "resourceID" "kmm-hub.sigs.x-k8s.io" -}}
{{- end -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{- define "kmm.certManagerAnnotation" -}}
cert-manager.io/inject-ca-from: {{ include "kmm.ns" . }}/kmm-operator-serving-cert
{{- end -}}

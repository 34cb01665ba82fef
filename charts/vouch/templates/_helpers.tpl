{{/*
Common labels of every object of the chart.
*/}}
{{- define "vouch.labels" -}}
app.kubernetes.io/name: vouch
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{/*
Labels that select vouch's pods (Deployment, Service, PodDisruptionBudget, anti-affinity).
*/}}
{{- define "vouch.selectorLabels" -}}
app.kubernetes.io/name: vouch
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The container image: image.repository, and image.tag or the chart's appVersion.
*/}}
{{- define "vouch.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/*
With cert-manager: the Providers' caBundle. The value caBundle if given, otherwise ca.crt
of Secret vouch-tls as the cluster has it now (cert-manager's CA issuer writes it there;
empty on a first install and under `helm template`). Empty when neither is known.
*/}}
{{- define "vouch.certManagerCABundle" -}}
{{- $data := (lookup "v1" "Secret" .Release.Namespace "vouch-tls").data | default dict -}}
{{- .Values.caBundle | default (index $data "ca.crt") | default "" -}}
{{- end }}

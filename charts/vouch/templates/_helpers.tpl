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
Labels of the `helm test` Pod (templates/helm-test.yaml). Not vouch's selector labels, so
the Service never sends it traffic; vouch's NetworkPolicy admits pods with these labels.
*/}}
{{- define "vouch.testSelectorLabels" -}}
app.kubernetes.io/name: vouch-test
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: test
{{- end }}

{{/*
The image reference the `helm test` Pod asks /v1/verify about: test.verifyImage, or else a
made-up repository under the first scope of the first cluster-wide policy (no
`namespaces`) with `action: allow`, which vouch admits without contacting a registry
(`docker.io/library/*` gives docker.io/library/vouch-helm-test:latest, an exact scope
`r.example/app` gives r.example/app:latest). Empty when neither exists.
*/}}
{{- define "vouch.testVerifyImage" -}}
{{- $image := .Values.test.verifyImage | default "" -}}
{{- if not $image -}}
{{- range .Values.policies -}}
{{- if and (not $image) (eq (toString .action) "allow") (not .namespaces) .scopes -}}
{{- $scope := first .scopes | toString -}}
{{- if hasSuffix "/*" $scope -}}
{{- $image = printf "%s/vouch-helm-test:latest" (trimSuffix "/*" $scope) -}}
{{- else -}}
{{- $image = printf "%s:latest" $scope -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $image -}}
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

{{/*
Labels of the chart's Redis objects; its pods must not carry vouch's selector labels.
*/}}
{{- define "vouch.redisLabels" -}}
app.kubernetes.io/name: vouch-redis
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
app.kubernetes.io/version: {{ .Values.redis.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end }}

{{- define "vouch.redisSelectorLabels" -}}
app.kubernetes.io/name: vouch-redis
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
"true" when the chart runs its own Redis: redis.enabled and no redisUrl.
*/}}
{{- define "vouch.chartRedis" -}}
{{- if and .Values.redis.enabled (not .Values.redisUrl) }}true{{ end -}}
{{- end }}

{{/*
The Redis URL vouch's config gets: redisUrl, else the chart's Redis, else empty.
*/}}
{{- define "vouch.redisUrl" -}}
{{- if .Values.redisUrl -}}
{{ .Values.redisUrl }}
{{- else if .Values.redis.enabled -}}
redis://vouch-redis.{{ .Release.Namespace }}.svc:6379/0
{{- end -}}
{{- end }}

{{/*
The Secret whose key `password` vouch reads as redis.passwordFile: the chart's vouch-redis,
or redisPasswordSecret with redisUrl; empty for none.
*/}}
{{- define "vouch.redisPasswordSecret" -}}
{{- if .Values.redisUrl -}}
{{ .Values.redisPasswordSecret }}
{{- else if .Values.redis.enabled -}}
vouch-redis
{{- end -}}
{{- end }}

{{/*
A Go-template reading of a vouch duration (humantime: "2500ms", "2s", "1s 500ms"), in
nanoseconds. Argument: (list FIELD VALUE); fails naming FIELD when VALUE is not one.
*/}}
{{- define "vouch.nanoseconds" -}}
{{- $field := index . 0 -}}
{{- $text := index . 1 | toString | trim -}}
{{- $units := dict "ns" 1 "nsec" 1 "us" 1000 "usec" 1000 "ms" 1000000 "msec" 1000000 "s" 1000000000 "sec" 1000000000 "second" 1000000000 "seconds" 1000000000 "m" 60000000000 "min" 60000000000 "minute" 60000000000 "minutes" 60000000000 "h" 3600000000000 "hr" 3600000000000 "hour" 3600000000000 "hours" 3600000000000 -}}
{{- if not (regexMatch "^([0-9]+ *[a-z]+ *)+$" $text) -}}
{{- fail (printf "%s: %q is not a duration such as 2500ms or 2s" $field $text) -}}
{{- end -}}
{{- $total := 0 -}}
{{- range $part := regexFindAll "[0-9]+ *[a-z]+" $text -1 -}}
{{- $unit := regexFind "[a-z]+" $part -}}
{{- if not (hasKey $units $unit) -}}
{{- fail (printf "%s: unknown unit %q in %q" $field $unit $text) -}}
{{- end -}}
{{- $total = add $total (mul (regexFind "[0-9]+" $part | int64) (get $units $unit)) -}}
{{- end -}}
{{- $total -}}
{{- end }}

{{/*
Gatekeeper's webhook timeouts (gatekeeper.webhookTimeoutSeconds,
gatekeeper.mutationWebhookTimeoutSeconds) and the Providers' timeouts derived from them, as
JSON {"validating", "mutating", "verify", "mutate", "claims"} (whole seconds), by the rule of
`vouch manifests --webhook-timeout --mutation-webhook-timeout` (provider_timeouts in
src/manifests.rs; tests/chart.rs compares the two). Open: the Providers wait as long as the
webhooks. Closed: every call one review makes to a vouch that never answers must time out,
so that Gatekeeper reports the system error the closed Constraints deny, with a second left
before the API server gives up on the webhook and applies the webhook's own failure
policy. A Pod review calls vouch-verify twice in turn (the two vouch templates; Gatekeeper
does not cache a failed call), so vouch-verify gets (validating - 1) / 2; vouch-mutate and
vouch-claims are called once: mutating - 1 and validating - 1. Fails on values that cannot
work.
*/}}
{{- define "vouch.timeouts" -}}
{{- $out := dict -}}
{{- range $field, $key := dict "gatekeeper.webhookTimeoutSeconds" "validating" "gatekeeper.mutationWebhookTimeoutSeconds" "mutating" -}}
{{- $value := ternary $.Values.gatekeeper.webhookTimeoutSeconds $.Values.gatekeeper.mutationWebhookTimeoutSeconds (eq $key "validating") -}}
{{- if or (ne (toString $value) (toString (int $value))) (lt (int $value) 1) (gt (int $value) 30) -}}
{{- fail (printf "%s must be a whole number of seconds from 1 to 30, not %v" $field $value) -}}
{{- end -}}
{{- $_ := set $out $key (int $value) -}}
{{- end -}}
{{- if eq (toString .Values.failurePolicy) "closed" -}}
{{- $verifyCalls := 2 -}}
{{- $verify := div (sub $out.validating 1) $verifyCalls -}}
{{- if lt $verify 1 -}}
{{- fail (printf "failurePolicy closed needs gatekeeper.webhookTimeoutSeconds of at least %d (it is %d): both vouch templates call the vouch-verify Provider in turn, and both calls (whole seconds) must time out a second before Gatekeeper's validating webhook; raise Gatekeeper's validatingWebhookTimeoutSeconds and this value to match" (add $verifyCalls 1) $out.validating) -}}
{{- end -}}
{{- if lt $out.mutating 2 -}}
{{- fail (printf "failurePolicy closed needs gatekeeper.mutationWebhookTimeoutSeconds of at least 2 (it is %d): the vouch-mutate Provider (whole seconds) must time out a second before Gatekeeper's mutating webhook; set Gatekeeper's mutatingWebhookTimeoutSeconds to 2 or more and this value to match" $out.mutating) -}}
{{- end -}}
{{- $_ := set $out "verify" $verify -}}
{{- $_ := set $out "mutate" (sub $out.mutating 1) -}}
{{- $_ := set $out "claims" (sub $out.validating 1) -}}
{{- else -}}
{{- $_ := set $out "verify" $out.validating -}}
{{- $_ := set $out "mutate" $out.mutating -}}
{{- $_ := set $out "claims" $out.validating -}}
{{- end -}}
{{- toJson $out -}}
{{- end }}

{{/*
Checks the values the chart cannot render for, each with a one-line reason. Included by
configmap.yaml, which every install renders.
*/}}
{{- define "vouch.validate" -}}
{{- if not (has .Values.failurePolicy (list "open" "closed")) -}}
{{- fail (printf "failurePolicy must be open or closed, not %v" .Values.failurePolicy) -}}
{{- end -}}
{{- $_ := include "vouch.timeouts" . -}}
{{- $extra := .Values.extraConfig | default dict -}}
{{- range $key := list "listen" "opsListen" "tls" "registries" "policies" -}}
{{- if hasKey $extra $key -}}
{{- fail (printf "extraConfig.%s is set by the chart; use the chart's values instead" $key) -}}
{{- end -}}
{{- end -}}
{{- if hasKey ($extra.cache | default dict) "redisUrl" -}}
{{- fail "extraConfig.cache.redisUrl is set by the chart; use the value redisUrl" -}}
{{- end -}}
{{- if hasKey ($extra.redis | default dict) "url" -}}
{{- fail "extraConfig.redis.url is set by the chart; use the value redisUrl" -}}
{{- end -}}
{{- if and (hasKey ($extra.redis | default dict) "passwordFile") (include "vouch.redisPasswordSecret" .) -}}
{{- fail "extraConfig.redis.passwordFile is set by the chart; use the value redisPasswordSecret (with redisUrl)" -}}
{{- end -}}
{{- if and .Values.redisPasswordSecret (not .Values.redisUrl) -}}
{{- fail "redisPasswordSecret is only used with redisUrl (the chart's Redis has its own Secret vouch-redis)" -}}
{{- end -}}
{{- if .Values.uniqueServiceSelector.enabled -}}
{{- if hasKey ($extra.claims | default dict) "store" -}}
{{- fail "extraConfig.claims.store is set by the chart when uniqueServiceSelector.enabled (redis when vouch has a Redis)" -}}
{{- end -}}
{{- if and (gt (int .Values.replicas) 1) (not (include "vouch.sharedRedis" .)) -}}
{{- fail (printf "uniqueServiceSelector.enabled with %d replicas needs a Redis shared by them, or two replicas can grant the same selector to two Services: set redis.enabled or redisUrl, or replicas: 1" (int .Values.replicas)) -}}
{{- end -}}
{{- end -}}
{{- end }}

{{/*
"true" when vouch's replicas share a Redis: the chart's, redisUrl, or sentinels given in
extraConfig.redis.
*/}}
{{- define "vouch.sharedRedis" -}}
{{- $sentinel := (.Values.extraConfig | default dict).redis | default dict -}}
{{- $sentinel = $sentinel.sentinel | default dict -}}
{{- if or (include "vouch.redisUrl" .) $sentinel.addresses }}true{{ end -}}
{{- end }}

{{/*
The config fields the chart derives, as JSON: redis (url, passwordFile, merged with
extraConfig.redis), claims (store: redis when the uniqueness policy has a Redis, merged with
extraConfig.claims), deadline and mutateDeadline: as extraConfig sets them, and in closed
mode 500ms below the Providers' timeouts unless extraConfig sets them (what extraConfig
sets must fit then).
*/}}
{{- define "vouch.derivedConfig" -}}
{{- $extra := .Values.extraConfig | default dict -}}
{{- $out := dict -}}
{{- $redis := dict -}}
{{- with include "vouch.redisUrl" . }}{{ $_ := set $redis "url" . }}{{ end -}}
{{- if include "vouch.redisPasswordSecret" . }}{{ $_ := set $redis "passwordFile" "/etc/vouch/redis/password" }}{{ end -}}
{{- $redis = merge $redis (deepCopy ($extra.redis | default dict)) -}}
{{- if $redis }}{{ $_ := set $out "redis" $redis }}{{ end -}}
{{- $claims := deepCopy ($extra.claims | default dict) -}}
{{- if and .Values.uniqueServiceSelector.enabled (include "vouch.sharedRedis" .) -}}
{{- $_ := set $claims "store" "redis" -}}
{{- end -}}
{{- if $claims }}{{ $_ := set $out "claims" $claims }}{{ end -}}
{{- $closed := eq (toString .Values.failurePolicy) "closed" -}}
{{- $t := include "vouch.timeouts" . | fromJson -}}
{{- range $field, $provider := dict "deadline" "vouch-verify" "mutateDeadline" "vouch-mutate" -}}
{{- $timeout := int (ternary $t.verify $t.mutate (eq $field "deadline")) -}}
{{- $max := sub (mul $timeout 1000) 500 -}}
{{- if hasKey $extra $field -}}
{{- if $closed -}}
{{- $got := include "vouch.nanoseconds" (list (printf "extraConfig.%s" $field) (get $extra $field)) | int64 -}}
{{- if gt $got (mul $max 1000000) -}}
{{- fail (printf "extraConfig.%s (%v) must be at least 500ms below the %s Provider's timeout of %ds (failurePolicy closed): at most %dms" $field (get $extra $field) $provider $timeout $max) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $out $field (get $extra $field) -}}
{{- else if $closed -}}
{{- $_ := set $out $field (printf "%dms" $max) -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end }}

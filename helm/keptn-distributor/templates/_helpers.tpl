{{/*
Names. Kubernetes names are limited to 63 characters; "-relay" and
"-metrics" are appended to the full name for the Services, so it is cut at 55.
*/}}
{{- define "keptn-distributor.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "keptn-distributor.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 55 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 55 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 55 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "keptn-distributor.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "keptn-distributor.selectorLabels" -}}
app.kubernetes.io/name: {{ include "keptn-distributor.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "keptn-distributor.labels" -}}
helm.sh/chart: {{ include "keptn-distributor.chart" . }}
{{ include "keptn-distributor.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: keptn
{{- end }}

{{- define "keptn-distributor.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "keptn-distributor.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "keptn-distributor.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion | toString }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The Secret holding the API token: an existing one, or the one this chart creates. */}}
{{- define "keptn-distributor.secretName" -}}
{{- default (include "keptn-distributor.fullname" .) .Values.keptn.existingSecret }}
{{- end }}

{{/* The Secret holding the OAuth client secret: oauth.existingSecret, or the one the chart creates. */}}
{{- define "keptn-distributor.oauthSecretName" -}}
{{- default (include "keptn-distributor.fullname" .) .Values.oauth.existingSecret }}
{{- end }}

{{/* Whether the chart creates its Secret: for a token or a client secret given as a value. */}}
{{- define "keptn-distributor.createsSecret" -}}
{{- if or (and .Values.keptn.apiToken (not .Values.keptn.existingSecret)) (and .Values.oauth.clientSecret (not .Values.oauth.existingSecret)) }}true{{ end }}
{{- end }}

{{/* API_PROXY_BIND_ADDRESS: all interfaces when a Service leads to the relay port. */}}
{{- define "keptn-distributor.bindAddress" -}}
{{- if .Values.relay.bindAddress }}
{{- .Values.relay.bindAddress }}
{{- else if .Values.relay.service.enabled }}
{{- "0.0.0.0" }}
{{- else }}
{{- "127.0.0.1" }}
{{- end }}
{{- end }}

{{/* K8S_DEPLOYMENT_NAME: the registration name shown in Keptn's Uniform. */}}
{{- define "keptn-distributor.registrationName" -}}
{{- default (include "keptn-distributor.fullname" .) .Values.registration.name }}
{{- end }}

{{- define "keptn-distributor.metricsServiceEnabled" -}}
{{- if or .Values.metrics.service.enabled .Values.metrics.serviceMonitor.enabled }}true{{ end }}
{{- end }}

{{- define "keptn-distributor.claimName" -}}
{{- default (printf "%s-state" (include "keptn-distributor.fullname" .)) .Values.state.persistence.existingClaim }}
{{- end }}

{{/*
The agent's settings as plain environment variables, one per value. A value
left empty is left out, so the agent's own default applies. Lists are joined
with commas; numbers read from values files (floats in Helm) print as integers.
The token and the downward-API variables are set in the Deployment itself.
*/}}
{{- define "keptn-distributor.settingsEnv" -}}
{{- $v := .Values }}
{{- $name := include "keptn-distributor.registrationName" . }}
{{- $settings := list
  (list "KEPTN_API_ENDPOINT" $v.keptn.apiEndpoint)
  (list "HTTP_SSL_VERIFY" $v.keptn.sslVerify)
  (list "KEPTN_API_VERSION" $v.keptn.apiVersion)
  (list "HEARTBEAT_INTERVAL" $v.keptn.heartbeatInterval)
  (list "CONNECTION_TYPE" $v.keptn.connectionType)
  (list "HTTP_EVENT_POLLING_ENDPOINT" $v.keptn.pollingEndpoint)
  (list "HTTP_EVENT_FORWARDING_ENDPOINT" $v.keptn.forwardingEndpoint)
  (list "PUBSUB_URL" $v.keptn.natsUrl)
  (list "PUBSUB_GROUP" $v.keptn.natsGroup)
  (list "API_PROXY_HTTP_TIMEOUT" $v.keptn.apiTimeout)
  (list "OAUTH_CLIENT_ID" $v.oauth.clientId)
  (list "OAUTH_SCOPES" $v.oauth.scopes)
  (list "OAUTH_TOKEN_URL" $v.oauth.tokenUrl)
  (list "OAUTH_DISCOVERY" $v.oauth.discovery)
  (list "HTTPS_PROXY" $v.egressProxy.https)
  (list "HTTP_PROXY" $v.egressProxy.http)
  (list "NO_PROXY" $v.egressProxy.noProxy)
  (list "PUBSUB_TOPIC" $v.subscription.topics)
  (list "HTTP_POLLING_INTERVAL" $v.subscription.pollingInterval)
  (list "PROJECT_FILTER" $v.filters.projects)
  (list "STAGE_FILTER" $v.filters.stages)
  (list "SERVICE_FILTER" $v.filters.services)
  (list "PUBSUB_RECIPIENT" $v.recipient.host)
  (list "PUBSUB_RECIPIENT_PORT" $v.recipient.port)
  (list "PUBSUB_RECIPIENT_PATH" $v.recipient.path)
  (list "API_PROXY_PORT" $v.relay.port)
  (list "API_PROXY_BIND_ADDRESS" (include "keptn-distributor.bindAddress" .))
  (list "EVENT_FORWARDING_PATH" $v.relay.eventPath)
  (list "API_PROXY_PATH" $v.relay.proxyPath)
  (list "OUTBOX_MAX_AGE" $v.relay.outboxMaxAge)
  (list "API_PROXY_MAX_PAYLOAD_BYTES_KB" $v.relay.maxPayloadKb)
  (list "HEALTH_ENDPOINT_PORT" $v.health.port)
  (list "DISABLE_REGISTRATION" (not $v.registration.enabled))
  (list "REGISTRATION_INTERVAL" $v.registration.interval)
  (list "UNREGISTER_ON_SHUTDOWN" $v.registration.unregisterOnShutdown)
  (list "LOCATION" $v.registration.location)
  (list "VERSION" $v.registration.integrationVersion)
  (list "DISTRIBUTOR_VERSION" $v.registration.distributorVersion)
  (list "K8S_DEPLOYMENT_NAME" $name)
  (list "INTEGRATION_NAME" $name)
  (list "MAX_CONCURRENT_DISPATCHES" $v.dispatch.maxConcurrent)
  (list "DISPATCH_TIMEOUT" $v.dispatch.timeout)
  (list "SHUTDOWN_TIMEOUT" $v.shutdown.timeout)
  (list "STATE_DIR" $v.state.dir)
  (list "LOG_LEVEL" $v.logLevel)
}}
{{- range $settings }}
{{- $value := index . 1 }}
{{- if kindIs "slice" $value }}
{{- $value = join "," $value }}
{{- else if kindIs "float64" $value }}
{{- $value = int64 $value }}
{{- else if kindIs "invalid" $value }}
{{- $value = "" }}
{{- end }}
{{- if ne (toString $value) "" }}
- name: {{ index . 0 }}
  value: {{ toString $value | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Values the agent cannot start without, and combinations that cannot work.
Helm runs values.schema.json first (types, patterns, ranges); this catches
what needs several values at once, with one message naming every problem.
*/}}
{{- define "keptn-distributor.validate" -}}
{{- $problems := list }}
{{- if eq .Values.keptn.connectionType "nats" }}
{{- /* In the cluster: Keptn's services are reached directly, without a token; no topics means relay and proxy only. */}}
{{- if .Values.keptn.apiEndpoint }}
{{- $problems = append $problems "keptn.apiEndpoint must be empty with keptn.connectionType nats: in NATS mode the agent reaches Keptn's services in the cluster directly" }}
{{- end }}
{{- else }}
{{- if not .Values.keptn.apiEndpoint }}
{{- $problems = append $problems "keptn.apiEndpoint is required: the Keptn API URL, e.g. --set keptn.apiEndpoint=https://keptn.example.com/api (or keptn.connectionType nats inside the Keptn cluster)" }}
{{- end }}
{{- if and (not .Values.keptn.apiToken) (not .Values.keptn.existingSecret) }}
{{- $problems = append $problems "keptn.existingSecret (a Secret holding the API token under keptn.existingSecretKey) or keptn.apiToken is required" }}
{{- end }}
{{- if and (not .Values.subscription.topics) (eq (toString .Values.keptn.apiVersion) "0.8") }}
{{- $problems = append $problems "subscription.topics is required with keptn.apiVersion 0.8: the event types to poll, e.g. --set 'subscription.topics={sh.keptn.event.deployment.triggered}'" }}
{{- end }}
{{- end }}
{{- if and .Values.keptn.apiToken .Values.keptn.existingSecret }}
{{- $problems = append $problems "set keptn.apiToken or keptn.existingSecret, not both" }}
{{- end }}
{{- if not .Values.recipient.host }}
{{- $problems = append $problems "recipient.host is required: the Service name of the Keptn-service, e.g. --set recipient.host=my-service" }}
{{- end }}
{{- if and .Values.relay.service.enabled (eq (include "keptn-distributor.bindAddress" .) "127.0.0.1") }}
{{- $problems = append $problems "relay.service.enabled needs relay.bindAddress 0.0.0.0 (or empty): a relay bound to 127.0.0.1 cannot be reached through a Service" }}
{{- end }}
{{- if and .Values.state.persistence.enabled (not .Values.state.dir) }}
{{- $problems = append $problems "state.persistence.enabled needs state.dir: the directory the volume is mounted at" }}
{{- end }}
{{- if eq .Values.relay.eventPath .Values.relay.proxyPath }}
{{- $problems = append $problems "relay.eventPath and relay.proxyPath must differ" }}
{{- end }}
{{- if $problems }}
{{- fail (printf "\n\nkeptn-distributor: cannot install with these values:\n  - %s\nSee the chart's README for every value." (join "\n  - " $problems)) }}
{{- end }}
{{- end }}

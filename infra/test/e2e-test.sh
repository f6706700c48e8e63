#!/usr/bin/env bash
# End-to-end check of a running ACP Checkout Manager: a deployed stack or acp-local.
#
#   ACP_API_KEY=<merchant key> infra/test/e2e-test.sh API_ENDPOINT
#
# Exercises every checkout endpoint (create, update, complete, get, cancel), the error rules
# (auth, idempotency, bad input) and the webhook endpoint API: it registers E2E_WEBHOOK_URL
# (default https://example.com/acp-e2e-hook; it need not accept anything), then checks through
# the attempt log that the dispatcher attempted a delivery of each of the session's events
# (created, updated, completed) to it — delivered (a 2xx answer), when E2E_WEBHOOK_URL names a
# receiver of yours — replays, rotates the secret and deletes it (also when the script stops
# early). It takes nothing off any queue, so it can run against a live deployment.
#
# Against a deployment: API_ENDPOINT is the stack's ApiEndpoint output (with its stage), the key
# one from `acp-admin merchant create`. Against acp-local:
#   ACP_DEMO_API_KEY=sk_demo_local cargo run --release --bin acp-local &
#   ACP_API_KEY=sk_demo_local infra/test/e2e-test.sh http://127.0.0.1:8080
set -euo pipefail

api=${1:?usage: ACP_API_KEY=... $0 API_ENDPOINT}
api=${api%/}
key=${ACP_API_KEY:?set ACP_API_KEY to a merchant API key}
failures=0
run_id=$(date +%s)-$$

pass() { printf '  ok    %s\n' "$1"; }
fail() { printf '  FAIL  %s\n' "$1"; failures=$((failures + 1)); }

# call METHOD PATH [BODY] [IDEMPOTENCY_KEY]: sets $status and $body.
call() {
  local method=$1 path=$2 data=${3:-} idem=${4:-}
  local args=(-s -o /tmp/e2e-body.$$ -w '%{http_code}' -X "$method" "$api$path"
    -H "Authorization: Bearer $key" -H "API-Version: 2026-04-17" -H "Content-Type: application/json")
  [ -n "$idem" ] && args+=(-H "Idempotency-Key: $idem")
  [ -n "$data" ] && args+=(-d "$data")
  status=$(curl "${args[@]}" -D /tmp/e2e-headers.$$)
  body=$(cat /tmp/e2e-body.$$)
}
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)" <<< "$body"; }
expect_status() { if [ "$status" = "$1" ]; then pass "$2 ($status)"; else fail "$2: expected $1, got $status: $body"; fi; }
endpoint_id=""
deleted=""
# An endpoint left behind would be retried for days and set off the dead-letter alarms.
cleanup() {
  if [ -n "$endpoint_id" ] && [ -z "$deleted" ]; then
    curl -s -o /dev/null -X DELETE "$api/webhook_endpoints/$endpoint_id" \
      -H "Authorization: Bearer $key" -H "API-Version: 2026-04-17" || true
  fi
  rm -f /tmp/e2e-body.$$ /tmp/e2e-headers.$$
}
trap cleanup EXIT

echo "Checkout API at $api"
hook_url=${E2E_WEBHOOK_URL:-https://example.com/acp-e2e-hook}
# A receiver of the caller's must have answered 2xx; the default one only has to be attempted.
must_succeed=${E2E_WEBHOOK_URL:+yes}
call POST /webhook_endpoints "{\"url\":\"$hook_url\",\"description\":\"e2e $run_id\"}"
expect_status 201 "register a webhook endpoint"
endpoint_id=$(field 'd.get("id", "")')
[[ "$(field 'd.get("secret", "")')" == whsec_* ]] && pass "the endpoint has a signing secret" || fail "secret: $body"
call POST /webhook_endpoints '{"url":"http://169.254.169.254/latest/meta-data"}'
expect_status 400 "a webhook URL inside the cloud network is refused"

create='{"currency":"usd","line_items":[{"id":"test_1","quantity":2}]}'
call POST /checkout_sessions "$create" "e2e-create-$run_id"
expect_status 201 "create a session"
session=$(field 'd["id"]')
[ "$(field 'd["status"]')" = not_ready_for_payment ] && pass "new session needs address and shipping" || fail "status after create: $body"

call POST /checkout_sessions "$create" "e2e-create-$run_id"
grep -qi '^idempotent-replayed: true' /tmp/e2e-headers.$$ && [ "$(field 'd["id"]')" = "$session" ] \
  && pass "same Idempotency-Key replays the stored reply" || fail "replay: $status $body"
call POST /checkout_sessions '{"currency":"usd","line_items":[{"id":"test_1","quantity":3}]}' "e2e-create-$run_id"
expect_status 422 "same key with another body is refused"

call GET "/checkout_sessions/$session"
expect_status 200 "get the session"

update='{"fulfillment_details":{"name":"E2E","email":"e2e@example.com","address":{"name":"E2E","line_one":"1 Main St","city":"Springfield","state":"IL","country":"US","postal_code":"62701"}},"selected_fulfillment_options":[{"type":"shipping","option_id":"fulfillment_option_123","item_ids":["test_1"]}]}'
call POST "/checkout_sessions/$session" "$update" "e2e-update-$run_id"
expect_status 200 "update address and shipping"
[ "$(field 'd["status"]')" = ready_for_payment ] && pass "session is ready for payment" || fail "status after update: $body"

pay='{"payment_data":{"handler_id":"card_tokenized","instrument":{"type":"card","credential":{"type":"spt","token":"spt_test_approve"}}}}'
call POST "/checkout_sessions/$session/complete" "$pay" "e2e-complete-$run_id"
expect_status 200 "complete with a test token"
[ "$(field 'd["status"]')" = completed ] && [ -n "$(field 'd["order"]["id"]')" ] && pass "completed with an order" || fail "complete: $body"

call POST "/checkout_sessions/$session/cancel" '{}' "e2e-cancel-done-$run_id"
expect_status 405 "a completed session cannot be canceled"

call POST /checkout_sessions "$create" "e2e-create2-$run_id"
other=$(field 'd["id"]')
call POST "/checkout_sessions/$other/cancel" '{"intent_trace":{"reason_code":"other"}}' "e2e-cancel-$run_id"
expect_status 200 "cancel an open session"

call POST /checkout_sessions '{"currency":"usd","line_items":[{"id":"no_such_item"}]}' "e2e-bad-$run_id"
expect_status 400 "unknown item is refused"
call POST /checkout_sessions "$create"
expect_status 400 "missing Idempotency-Key is refused"
status=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$api/checkout_sessions" -H "Idempotency-Key: e2e-anon-$run_id" -d "$create")
expect_status 401 "no API key is refused"

if [ -n "$endpoint_id" ]; then
echo "Webhook endpoint $endpoint_id"
call GET /webhook_endpoints
[ "$status" = 200 ] && grep -q "$endpoint_id" <<< "$body" && pass "the endpoint is listed" || fail "list: $status $body"
call PATCH "/webhook_endpoints/$endpoint_id" '{"description":"e2e renamed"}'
expect_status 200 "update the endpoint"
# Every event of the completed session, attempted to the endpoint (delivered, with
# E2E_WEBHOOK_URL; else the URL need not answer). Up to 60 s: the projector and the dispatcher
# run behind the API.
wanted="created updated completed"
missing=$wanted
for _ in $(seq 1 60); do
  call GET "/webhook_endpoints/$endpoint_id/attempts?limit=100"
  seen=$(field '" ".join(sorted({r["type"].rsplit(".", 1)[-1] for r in d.get("data", []) if r.get("session_id") == "'"$session"'" and ("'"$must_succeed"'" == "" or r.get("status") == "succeeded")}))' 2>/dev/null || true)
  missing=""
  for w in $wanted; do [[ " $seen " == *" $w "* ]] || missing="$missing $w"; done
  [ -z "$missing" ] && break
  sleep 1
done
for w in $wanted; do
  [[ " $missing " == *" $w "* ]] && fail "no ${must_succeed:+successful }delivery attempt of checkout.session.$w in the attempt log after 60 s" \
    || pass "checkout.session.$w was ${must_succeed:+delivered}${must_succeed:-attempted} to the endpoint (attempt log)"
done
if [ -z "$missing" ]; then
  event_id=$(field '[r["event_id"] for r in d["data"] if r.get("session_id") == "'"$session"'"][0]')
  call GET "/events/$event_id/attempts"
  expect_status 200 "attempts of one event"
fi
since=$(python3 -c 'import datetime; print((datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"))')
call POST "/webhook_endpoints/$endpoint_id/replay" "{\"since\":\"$since\"}"
expect_status 202 "replay the last hour"
call POST "/webhook_endpoints/$endpoint_id/rotate_secret" '{}'
expect_status 200 "rotate the signing secret"
call DELETE "/webhook_endpoints/$endpoint_id"
expect_status 204 "delete the endpoint"
deleted=yes
call GET "/webhook_endpoints/$endpoint_id"
expect_status 404 "a deleted endpoint is gone"
fi

if [ "$failures" -gt 0 ]; then echo "$failures check(s) failed"; exit 1; fi
echo "all checks passed"

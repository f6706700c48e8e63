#!/usr/bin/env bash
# End-to-end check of a running ACP Checkout Manager: a deployed stack or acp-local.
#
#   ACP_API_KEY=<merchant key> infra/test/e2e-test.sh API_ENDPOINT [QUEUE_URL [PROFILE]]
#
# Exercises every checkout endpoint (create, update, complete, get, cancel), the error rules
# (auth, idempotency, bad input) and the webhook endpoint API: it registers E2E_WEBHOOK_URL
# (default https://example.com/acp-e2e-hook; it need not accept anything), waits until the
# dispatcher has attempted a delivery to it, replays, rotates the secret, and deletes it. Given the order-updates queue URL (and optionally an
# AWS profile), it also checks that the session's events reach the queue; that part needs the
# AWS CLI. Note: it receives (and deletes) the messages it recognises from that queue, so point
# it at a test deployment, or at a queue no dispatcher is draining.
set -euo pipefail

api=${1:?usage: ACP_API_KEY=... $0 API_ENDPOINT [QUEUE_URL [PROFILE]]}
api=${api%/}
queue=${2:-}
profile=${3:-}
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
trap 'rm -f /tmp/e2e-body.$$ /tmp/e2e-headers.$$' EXIT

echo "Checkout API at $api"
hook_url=${E2E_WEBHOOK_URL:-https://example.com/acp-e2e-hook}
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
attempts=0
for _ in $(seq 1 30); do
  call GET "/webhook_endpoints/$endpoint_id/attempts?limit=10"
  attempts=$(field 'len(d["data"])' 2>/dev/null || echo 0)
  [ "$attempts" -gt 0 ] && break
  sleep 1
done
[ "$attempts" -gt 0 ] && pass "the dispatcher attempted deliveries to the endpoint ($attempts in the log)" \
  || fail "no delivery attempt logged for the endpoint after 30 s"
if [ "$attempts" -gt 0 ]; then
  event_id=$(field 'd["data"][0]["event_id"]')
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
call GET "/webhook_endpoints/$endpoint_id"
expect_status 404 "a deleted endpoint is gone"
fi

if [ -n "$queue" ]; then
  echo "Events on $queue"
  command -v aws > /dev/null || { fail "the AWS CLI is needed to read the queue"; exit 1; }
  aws_args=(--queue-url "$queue" --max-number-of-messages 10 --wait-time-seconds 5 --message-attribute-names All)
  [ -n "$profile" ] && aws_args+=(--profile "$profile")
  # A queue on this machine (moto, acp-local --backend aws) is reached at its own address.
  if [[ "$queue" == http://127.0.0.1* || "$queue" == http://localhost* ]]; then
    endpoint=$(python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(p.scheme + "://" + p.netloc)' "$queue")
    aws_args+=(--endpoint-url "$endpoint")
  fi
  wanted="created updated completed"
  seen=""
  for _ in $(seq 1 12); do
    out=$(aws sqs receive-message "${aws_args[@]}" --output json || true)
    while IFS=$'\t' read -r receipt kind; do
      [ -z "$receipt" ] && continue
      seen="$seen ${kind##*.}"
      del=(--queue-url "$queue" --receipt-handle "$receipt")
      [ -n "$profile" ] && del+=(--profile "$profile")
      [ -n "${endpoint:-}" ] && del+=(--endpoint-url "$endpoint")
      aws sqs delete-message "${del[@]}" > /dev/null || true
    done < <(python3 -c "
import json,sys
data = json.loads(sys.stdin.read().strip() or '{}')
for m in data.get('Messages', []):
    event = json.loads(m['Body'])
    if event.get('session_id') == '$session':
        print(m['ReceiptHandle'] + '\t' + event['type'])" <<< "$out")
    all=1; for w in $wanted; do [[ " $seen " == *" $w "* ]] || all=0; done
    [ "$all" = 1 ] && break
  done
  for w in $wanted; do
    [[ " $seen " == *" $w "* ]] && pass "checkout.session.$w reached the queue" || fail "no checkout.session.$w on the queue"
  done
fi

if [ "$failures" -gt 0 ]; then echo "$failures check(s) failed"; exit 1; fi
echo "all checks passed"

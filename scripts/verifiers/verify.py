"""Checks webhook deliveries with independent Python libraries: `standardwebhooks` and `svix`
for v1 (HMAC) signatures, PyNaCl (libsodium) for v1a signatures with keys from the published
JWK Set, and `stripe`'s signature check for ACP's Merchant-Signature. Reads the cases as JSON on
stdin (see `local/tests/it/verifiers.rs`) and prints, per library, how many deliveries verified
and whether each bad case was refused."""

import base64
import json
import sys
import time

import stripe
import svix.webhooks
from nacl.signing import VerifyKey
from standardwebhooks.webhooks import Webhook as StandardWebhook

TOLERANCE_SECS = 300
cases = json.load(sys.stdin)


def verify_v1a(jwks, headers, body):
    """A receiver's v1a check: a fresh timestamp, any signature whose key id is published, and
    the event is its own merchant's (the key set serves every merchant of the deployment)."""
    ts = int(headers["webhook-timestamp"])
    if abs(int(time.time()) - ts) > TOLERANCE_SECS:
        raise ValueError("timestamp outside the tolerance")
    kids = headers.get("webhook-key-id", "").split(" ")
    signatures = [s[4:] for s in headers["webhook-signature"].split(" ") if s.startswith("v1a,")]
    content = f'{headers["webhook-id"]}.{ts}.{body}'.encode()
    for kid, signature in zip(kids, signatures):
        jwk = next((k for k in jwks["keys"] if k["kid"] == kid), None)
        if jwk is None:
            continue
        x = base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
        try:
            VerifyKey(x).verify(content, base64.b64decode(signature))
        except Exception:
            continue
        if json.loads(body).get("merchant_id") != cases["merchant_id"]:
            raise ValueError("signed for another merchant")
        return
    raise ValueError("no v1a signature verifies with a published key")


def refused(check):
    try:
        check()
        return "accepted"
    except Exception:
        return "refused"


def tampered(body):
    return body.replace("checkout", "checkouT", 1)


def hmac_library(make):
    for d in cases["deliveries"]:
        make(cases["secret"]).verify(d["body"], d["headers"])
    first = cases["deliveries"][0]
    stale = cases["stale"]
    return {
        "verified": len(cases["deliveries"]),
        "tampered": refused(lambda: make(cases["secret"]).verify(tampered(first["body"]), first["headers"])),
        "stale": refused(lambda: make(cases["secret"]).verify(stale["body"], stale["headers"])),
        "wrong_key": refused(lambda: make(cases["wrong_secret"]).verify(first["body"], first["headers"])),
        "rotated_out": refused(lambda: make(cases["old_secret"]).verify(first["body"], first["headers"])),
    }


def stripe_check(order, secret):
    stripe.WebhookSignature.verify_header(
        order["body"], order["headers"]["merchant-signature"], secret, tolerance=TOLERANCE_SECS
    )


results = {
    "standardwebhooks (PyPI)": hmac_library(StandardWebhook),
    "svix (PyPI)": hmac_library(svix.webhooks.Webhook),
}

for d in cases["deliveries"]:
    verify_v1a(cases["jwks"], d["headers"], d["body"])
first = cases["deliveries"][0]
results["PyNaCl"] = {
    "verified": len(cases["deliveries"]),
    "tampered": refused(lambda: verify_v1a(cases["jwks"], first["headers"], tampered(first["body"]))),
    "stale": refused(lambda: verify_v1a(cases["jwks"], cases["stale"]["headers"], cases["stale"]["body"])),
    "wrong_key": refused(lambda: verify_v1a(cases["wrong_jwks"], first["headers"], first["body"])),
    "rotated_out": refused(lambda: verify_v1a(cases["jwks"], cases["retired"]["headers"], cases["retired"]["body"])),
}

for order in cases["orders"]:
    stripe_check(order, order["secret"])
latest = cases["orders"][-1]
results["stripe (PyPI)"] = {
    "verified": len(cases["orders"]),
    "tampered": refused(lambda: stripe_check({**latest, "body": tampered(latest["body"])}, latest["secret"])),
    "stale": refused(lambda: stripe_check(cases["order_stale"], cases["order_stale"]["secret"])),
    "wrong_key": refused(lambda: stripe_check(latest, cases["wrong_secret"])),
    "rotated_out": refused(lambda: stripe_check(latest, cases["orders"][0]["secret"])),
}
# The overlap of a replaced order-webhook secret: the Standard Webhooks headers sent alongside
# Merchant-Signature carry a v1 per secret in force, keyed by the secret's raw bytes.
overlap = 0
for order in cases["orders"]:
    for secret in order["secrets_in_force"]:
        StandardWebhook(secret.encode()).verify(order["body"], order["headers"])
        overlap += 1
results["standardwebhooks (PyPI), order webhooks"] = {
    "verified": overlap,
    "tampered": refused(
        lambda: StandardWebhook(latest["secret"].encode()).verify(tampered(latest["body"]), latest["headers"])
    ),
    "wrong_key": refused(lambda: StandardWebhook(cases["wrong_secret"].encode()).verify(latest["body"], latest["headers"])),
}
print(json.dumps(results))

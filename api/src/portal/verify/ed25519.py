# pip install pynacl
import base64
import json
import time
import urllib.request

from nacl.signing import VerifyKey

KEYS_URL = "{{KEYS_URL}}"
# Yours: the key set signs for every merchant of this deployment.
MERCHANT_ID = "{{MERCHANT_ID}}"
_keys, _fetched = {}, 0.0


def _key(kid):
    """The published key `kid`: the set is fetched again every 5 minutes (a key leaves it when
    its grace ends), and when a kid is unknown (a new key signs at once), at most every 10 s."""
    global _keys, _fetched
    age = time.time() - _fetched
    if age > 300 or (kid not in _keys and age > 10):
        with urllib.request.urlopen(KEYS_URL) as answer:
            _keys = {k["kid"]: k for k in json.load(answer)["keys"]}
        _fetched = time.time()
    jwk = _keys.get(kid)
    return jwk and VerifyKey(base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4)))


def verify(headers, body: bytes) -> dict:
    """The event, if a published key signed it for you within the last 5 minutes; raises
    otherwise. `body` is the raw request body: parse it only after this check."""
    timestamp = int(headers["webhook-timestamp"])
    if abs(time.time() - timestamp) > 300:
        raise ValueError("the timestamp is more than 5 minutes away")
    content = f'{headers["webhook-id"]}.{timestamp}.'.encode() + body
    signatures = [s[4:] for s in headers["webhook-signature"].split() if s.startswith("v1a,")]
    for kid, signature in zip(headers.get("webhook-key-id", "").split(), signatures):
        key = _key(kid)
        if not key:
            continue
        try:
            key.verify(content, base64.b64decode(signature))
        except Exception:
            continue
        event = json.loads(body)
        if event["merchant_id"] != MERCHANT_ID:
            raise ValueError("signed for another merchant")
        return event
    raise ValueError("not signed by a published key")

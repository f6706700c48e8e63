"""Runs the portal's Python verification snippets (api/src/portal/verify/*.py), as a merchant
would paste them, on the cases of `local/tests/it/verifiers.rs` read as JSON on stdin. Argv:
the snippets' folder and the key set's URL. Prints what each accepted and refused."""

import json
import os
import sys
import types

folder, keys_url = sys.argv[1], sys.argv[2]
cases = json.load(sys.stdin)


def load(name, merchant_id=cases["merchant_id"], secret=cases["secret"]):
    with open(os.path.join(folder, name)) as f:
        text = f.read().replace("{{KEYS_URL}}", keys_url).replace("{{MERCHANT_ID}}", merchant_id)
    os.environ["WEBHOOK_SECRET"] = secret
    module = types.ModuleType(name)
    exec(compile(text, name, "exec"), module.__dict__)
    return module


def verdict(check):
    try:
        check()
        return "accepted"
    except Exception:
        return "refused"


def tampered(body):
    return body.replace("checkout", "checkouT", 1)


first, stale = cases["deliveries"][0], cases["stale"]
results = {}
for name in ["hmac.py", "ed25519.py"]:
    snippet = load(name)
    verified = 0
    for d in cases["deliveries"]:
        event = snippet.verify(d["headers"], d["body"].encode())
        assert event["id"] == d["headers"]["webhook-id"], event
        verified += 1
    if name == "hmac.py":
        other = load(name, secret=cases["wrong_secret"])
    else:
        other = load(name, merchant_id="merchant_someone_else")
    results[f"portal {name}"] = {
        "verified": verified,
        "tampered": verdict(lambda: snippet.verify(first["headers"], tampered(first["body"]).encode())),
        "stale": verdict(lambda: snippet.verify(stale["headers"], stale["body"].encode())),
        "wrong_key": verdict(lambda: other.verify(first["headers"], first["body"].encode())),
    }
print(json.dumps(results))

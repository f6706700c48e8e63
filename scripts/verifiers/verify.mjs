// Checks webhook deliveries with independent Node libraries: `standardwebhooks` and `svix` for
// v1 (HMAC) signatures, `@noble/ed25519` for v1a signatures with keys from the published JWK
// Set. Reads the cases as JSON on stdin (see `local/tests/it/verifiers.rs`) and prints, per
// library, how many deliveries verified and whether each bad case was refused.
import { Webhook as StandardWebhook } from "standardwebhooks";
import { Webhook as SvixWebhook } from "svix";
import * as ed from "@noble/ed25519";

const input = JSON.parse(await new Promise((resolve) => {
  let text = "";
  process.stdin.on("data", (chunk) => (text += chunk));
  process.stdin.on("end", () => resolve(text));
}));

const TOLERANCE_SECS = 300;
const fromB64 = (s) => Uint8Array.from(Buffer.from(s, "base64"));

// A receiver's v1a check: a fresh timestamp, any signature whose key id is in the set, and the
// event is its own merchant's (the key set serves every merchant of the deployment).
async function verifyV1a(jwks, headers, body) {
  const ts = Number(headers["webhook-timestamp"]);
  if (!Number.isInteger(ts) || Math.abs(Math.floor(Date.now() / 1000) - ts) > TOLERANCE_SECS) {
    throw new Error("timestamp outside the tolerance");
  }
  const kids = (headers["webhook-key-id"] ?? "").split(" ");
  const signatures = headers["webhook-signature"].split(" ").filter((s) => s.startsWith("v1a,"));
  const content = new TextEncoder().encode(`${headers["webhook-id"]}.${ts}.${body}`);
  for (const [i, signature] of signatures.entries()) {
    const jwk = jwks.keys.find((k) => k.kid === kids[i]);
    if (!jwk) continue;
    const publicKey = Uint8Array.from(Buffer.from(jwk.x, "base64url"));
    if (await ed.verifyAsync(fromB64(signature.slice(4)), content, publicKey)) {
      if (JSON.parse(body).merchant_id !== input.merchant_id) throw new Error("signed for another merchant");
      return;
    }
  }
  throw new Error("no v1a signature verifies with a published key");
}

async function refused(check) {
  try {
    await check();
    return "accepted";
  } catch {
    return "refused";
  }
}

const tampered = (d) => ({ ...d, body: d.body.replace("checkout", "checkouT") });

async function hmacLibrary(make) {
  let verified = 0;
  for (const d of input.deliveries) {
    make(input.secret).verify(d.body, d.headers);
    verified += 1;
  }
  const first = input.deliveries[0];
  return {
    verified,
    tampered: await refused(() => make(input.secret).verify(tampered(first).body, first.headers)),
    stale: await refused(() => make(input.secret).verify(input.stale.body, input.stale.headers)),
    wrong_key: await refused(() => make(input.wrong_secret).verify(first.body, first.headers)),
    rotated_out: await refused(() => make(input.old_secret).verify(first.body, first.headers)),
  };
}

const results = {
  "standardwebhooks (npm)": await hmacLibrary((s) => new StandardWebhook(s)),
  "svix (npm)": await hmacLibrary((s) => new SvixWebhook(s)),
};
let verified = 0;
for (const d of input.deliveries) {
  await verifyV1a(input.jwks, d.headers, d.body);
  verified += 1;
}
const first = input.deliveries[0];
results["@noble/ed25519 (npm)"] = {
  verified,
  tampered: await refused(() => verifyV1a(input.jwks, first.headers, tampered(first).body)),
  stale: await refused(() => verifyV1a(input.jwks, input.stale.headers, input.stale.body)),
  wrong_key: await refused(() => verifyV1a(input.wrong_jwks, first.headers, first.body)),
  rotated_out: await refused(() => verifyV1a(input.jwks, input.retired.headers, input.retired.body)),
};
console.log(JSON.stringify(results));

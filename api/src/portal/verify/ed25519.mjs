// npm install @noble/ed25519   (Node 20 or later: fetch is built in)
import * as ed from "@noble/ed25519";

const KEYS_URL = "{{KEYS_URL}}";
// Yours: the key set signs for every merchant of this deployment.
const MERCHANT_ID = "{{MERCHANT_ID}}";
let keys = new Map();
let fetched = 0;

// The published key `kid`: the set is fetched again every 5 minutes (a key leaves it when its
// grace ends), and when a kid is unknown (a new key signs at once), at most every 10 s.
async function key(kid) {
  const age = Date.now() - fetched;
  if (age > 300_000 || (!keys.has(kid) && age > 10_000)) {
    const set = await (await fetch(KEYS_URL)).json();
    keys = new Map(set.keys.map((k) => [k.kid, Uint8Array.from(Buffer.from(k.x, "base64url"))]));
    fetched = Date.now();
  }
  return keys.get(kid);
}

// The event, if a published key signed it for you within the last 5 minutes; throws otherwise.
// `body` is the raw request body (a string): parse it only after this check.
export async function verify(headers, body) {
  const timestamp = Number(headers["webhook-timestamp"]);
  if (!Number.isInteger(timestamp) || Math.abs(Date.now() / 1000 - timestamp) > 300) {
    throw new Error("the timestamp is more than 5 minutes away");
  }
  const content = new TextEncoder().encode(`${headers["webhook-id"]}.${timestamp}.${body}`);
  const kids = (headers["webhook-key-id"] ?? "").split(" ");
  const signatures = headers["webhook-signature"].split(" ").filter((s) => s.startsWith("v1a,"));
  for (const [i, signature] of signatures.entries()) {
    const publicKey = await key(kids[i]);
    if (!publicKey) continue;
    const bytes = Uint8Array.from(Buffer.from(signature.slice(4), "base64"));
    if (await ed.verifyAsync(bytes, content, publicKey)) {
      const event = JSON.parse(body);
      if (event.merchant_id !== MERCHANT_ID) throw new Error("signed for another merchant");
      return event;
    }
  }
  throw new Error("not signed by a published key");
}

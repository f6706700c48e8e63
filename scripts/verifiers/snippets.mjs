// Runs the portal's Node verification snippets (api/src/portal/verify/*.mjs), as a merchant
// would paste them, on the cases of `local/tests/it/verifiers.rs` read as JSON on stdin. Argv:
// the snippets' folder and the key set's URL. Prints what each accepted and refused. The
// snippets are written beside this file so that their imports find its node_modules.
import { readFileSync, writeFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const [folder, keysUrl] = process.argv.slice(2);
const here = dirname(fileURLToPath(import.meta.url));
const cases = JSON.parse(readFileSync(0, "utf8"));
let loaded = 0;

async function load(name, merchantId = cases.merchant_id, secret = cases.secret) {
  const text = readFileSync(join(folder, name), "utf8")
    .replaceAll("{{KEYS_URL}}", keysUrl)
    .replaceAll("{{MERCHANT_ID}}", merchantId);
  process.env.WEBHOOK_SECRET = secret;
  const file = join(here, `.snippet-${process.pid}-${loaded++}.mjs`);
  writeFileSync(file, text);
  try {
    return await import(file);
  } finally {
    rmSync(file);
  }
}

async function verdict(check) {
  try {
    await check();
    return "accepted";
  } catch {
    return "refused";
  }
}

const first = cases.deliveries[0];
const stale = cases.stale;
const tampered = first.body.replace("checkout", "checkouT");
const results = {};
for (const name of ["hmac.mjs", "ed25519.mjs"]) {
  const snippet = await load(name);
  let verified = 0;
  for (const d of cases.deliveries) {
    const event = await snippet.verify(d.headers, d.body);
    if (event.id !== d.headers["webhook-id"]) throw new Error(`not the event: ${JSON.stringify(event)}`);
    verified += 1;
  }
  const other = name === "hmac.mjs"
    ? await load(name, cases.merchant_id, cases.wrong_secret)
    : await load(name, "merchant_someone_else");
  results[`portal ${name}`] = {
    verified,
    tampered: await verdict(() => snippet.verify(first.headers, tampered)),
    stale: await verdict(() => snippet.verify(stale.headers, stale.body)),
    wrong_key: await verdict(() => other.verify(first.headers, first.body)),
  };
}
console.log(JSON.stringify(results));

//! Our signatures checked by an independent implementation: the `standardwebhooks` Python
//! package that `scripts/test` installs (its interpreter in `ACP_TEST_PYTHON`).

use checkout::testkit::{event, merchant};
use checkout::webhook_endpoint::WebhookEndpoint;
use std::process::Command;

const VERIFY: &str = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
request = json.load(sys.stdin)
for secret in request["secrets"]:
    Webhook(secret).verify(request["body"], request["headers"])
print("verified", len(request["secrets"]))
"#;

fn header_map(request: &dispatcher::request::WebhookRequest) -> serde_json::Map<String, serde_json::Value> {
    request
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_str().unwrap().to_owned())))
        .collect()
}

fn run_verifier(input: &serde_json::Value) -> std::process::Output {
    let python = std::env::var("ACP_TEST_PYTHON")
        .expect("ACP_TEST_PYTHON is not set: run the suite with scripts/test, which installs the verifier");
    let mut child = Command::new(python)
        .args(["-c", VERIFY])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    serde_json::to_writer(child.stdin.take().unwrap(), input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn standardwebhooks_python_verifies_every_signing_secret() {
    let m = merchant();
    let e = event(&m, None, 2);
    let now = checkout::clock::now();
    let mut endpoint = WebhookEndpoint::new(m.id.clone(), "https://hooks.example.com/a".into(), now).unwrap();
    let old = endpoint.current_secret().unwrap().to_owned();
    endpoint.rotate(now, chrono::Duration::hours(24)).unwrap();
    let new = endpoint.current_secret().unwrap().to_owned();
    let body = serde_json::to_vec(&e).unwrap();
    let request = dispatcher::request::standard(&(&e).into(), body.clone().into(), &endpoint, 1, now).unwrap();
    let headers = header_map(&request);
    let input = serde_json::json!({
        "secrets": [old, new],
        "body": String::from_utf8(body).unwrap(),
        "headers": headers,
    });
    let out = run_verifier(&input);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.trim(), "verified 2");
}

#[test]
fn standardwebhooks_python_rejects_a_tampered_body() {
    let m = merchant();
    let e = event(&m, None, 1);
    let endpoint = WebhookEndpoint::new(
        m.id.clone(),
        "https://hooks.example.com/a".into(),
        checkout::clock::now(),
    )
    .unwrap();
    let body = serde_json::to_vec(&e).unwrap();
    let request =
        dispatcher::request::standard(&(&e).into(), body.into(), &endpoint, 1, checkout::clock::now()).unwrap();
    let headers = header_map(&request);
    let input = serde_json::json!({
        "secrets": [endpoint.current_secret().unwrap()],
        "body": "{\"tampered\": true}",
        "headers": headers,
    });
    let out = run_verifier(&input);
    assert!(!out.status.success(), "a tampered body must not verify");
    assert!(String::from_utf8_lossy(&out.stderr).contains("WebhookVerificationError"));
}

const VERIFY_V1A: &str = r#"
import base64, json, sys
from nacl.signing import VerifyKey
request = json.load(sys.stdin)
key = VerifyKey(base64.b64decode(request["public"].removeprefix("whpk_")))
content = f'{request["id"]}.{request["timestamp"]}.{request["body"]}'.encode()
for signature in request["signature"].split(" "):
    version, _, sig = signature.partition(",")
    if version == "v1a":
        key.verify(content, base64.b64decode(sig))
        print("verified")
        break
else:
    sys.exit("no v1a signature")
"#;

/// `v1a` (ed25519) signatures checked by libsodium (PyNaCl): the reference vector's key, and a
/// key we generated; a tampered body is refused.
#[test]
fn pynacl_verifies_our_ed25519_signatures() {
    let python = std::env::var("ACP_TEST_PYTHON")
        .expect("ACP_TEST_PYTHON is not set: run the suite with scripts/test, which installs the verifier");
    let now = checkout::clock::now();
    let reference = checkout::signing_key::SigningKey::from_private(
        "whsk_6Xb/dCcHpPea21PS1N9VY/NZW723CEc77N4rJCubMbfVKIDij2HKpMKkioLlX0dRqSKJp4AJ6p9lMicMFs6Kvg==",
        now,
    )
    .unwrap();
    let generated = checkout::signing_key::SigningKey::generate(now).unwrap();
    let body = r#"{"test": 2432232314}"#;
    for (key, sent_body, ok) in [
        (&reference, body, true),
        (&generated, body, true),
        (&generated, "{}", false),
    ] {
        let input = serde_json::json!({
            "public": key.public,
            "id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "timestamp": 1_614_265_330,
            "body": sent_body,
            "signature": key.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body.as_bytes()).unwrap(),
        });
        let mut child = Command::new(&python)
            .args(["-c", VERIFY_V1A])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        serde_json::to_writer(child.stdin.take().unwrap(), &input).unwrap();
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.success() && stdout.trim() == "verified",
            ok,
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

// npm install standardwebhooks
import { Webhook } from "standardwebhooks";

// The endpoint's secret (whsec_...), shown once when it was made or rotated.
const webhook = new Webhook(process.env.WEBHOOK_SECRET);

// The event, if we signed it within the last 5 minutes; throws otherwise.
// `body` is the raw request body (a string): parse it only after this check.
export function verify(headers, body) {
  return webhook.verify(body, {
    "webhook-id": headers["webhook-id"],
    "webhook-timestamp": headers["webhook-timestamp"],
    "webhook-signature": headers["webhook-signature"],
  });
}

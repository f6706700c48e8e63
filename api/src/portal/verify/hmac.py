# pip install standardwebhooks
import os

from standardwebhooks.webhooks import Webhook

# The endpoint's secret (whsec_...), shown once when it was made or rotated.
webhook = Webhook(os.environ["WEBHOOK_SECRET"])


def verify(headers, body: bytes) -> dict:
    """The event, if we signed it within the last 5 minutes; raises otherwise.
    `body` is the raw request body: parse it only after this check."""
    return webhook.verify(body, {
        "webhook-id": headers["webhook-id"],
        "webhook-timestamp": headers["webhook-timestamp"],
        "webhook-signature": headers["webhook-signature"],
    })

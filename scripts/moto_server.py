"""moto server for the test suite, with DynamoDB requests handled one at a time.

moto applies a DynamoDB TransactWriteItems that fails by restoring a copy of the whole tables
taken when it started, which undoes writes that other requests made meanwhile. Real DynamoDB
isolates transactions (serializable), so the suite serializes DynamoDB requests to get the same
semantics. Other services (SQS long polls) run concurrently, as usual.

Usage: moto_server.py PORT
"""

import os
import sys
import threading

from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


def main() -> None:
    port = int(sys.argv[1])
    os.environ.setdefault("MOTO_PORT", str(port))
    app = DomainDispatcherApplication(create_backend_app)
    turn = threading.Lock()

    def one_at_a_time(environ, start_response):
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB"):
            return app(environ, start_response)
        with turn:
            # Drain the response inside the lock: moto builds it lazily.
            return list(app(environ, start_response))

    run_simple("127.0.0.1", port, one_at_a_time, threaded=True)


if __name__ == "__main__":
    main()

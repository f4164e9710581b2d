"""moto's server (moto_server), answering one request at a time.

moto's backends are not safe under concurrent requests: two UpdateItem calls with ADD on one
DynamoDB item, answered on two threads, can lose a delta. The conformance suite checks that the
table adapter's counters are atomic, which holds on DynamoDB; run on moto's threaded server it
fails now and then through moto, not through cvops. One request at a time keeps it a test of the
adapter. Usage: python3 scripts/moto-server.py HOST PORT
"""

import os
import sys

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    # moto puts the port in the URLs it hands out (queue URLs), as moto_server does.
    os.environ.setdefault("MOTO_PORT", str(port))
    run_simple(host, port, DomainDispatcherApplication(create_backend_app), threaded=False, use_reloader=False)


if __name__ == "__main__":
    main()

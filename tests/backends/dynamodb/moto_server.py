"""Serve moto's DynamoDB on a loopback port, one request at a time.

``python moto_server.py [PORT]`` binds 127.0.0.1:PORT (0: a free port), prints the port on stdout
and serves until terminated. Stock ``moto_server`` serves requests on threads and occasionally lets
two concurrent conditional writes on one item both succeed, which DynamoDB never does; serving
single-threaded keeps exactly-once tests a judgement of our code, not of moto.
"""

from __future__ import annotations

import logging
import sys

from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server("127.0.0.1", port, app, threaded=False, request_handler=MotoRequestHandler)
    print(server.port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

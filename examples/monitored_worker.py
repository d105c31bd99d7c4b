"""A worker with a health probe and Prometheus metrics, as in docs/operations.md.

    pip install "pyncette-core[sqlite,prometheus]"
    pyncette run monitored_worker:app --app-dir examples --log-format json
    curl -s localhost:8080/readyz; curl -s localhost:8080/metrics | grep pyncette_

The store comes from the environment like any other option (PYNCETTE_BACKEND, PYNCETTE_REDIS_URL,
PYNCETTE_SQLITE_DATABASE...); HEALTH_PORT moves the probe and metrics port.
"""

from __future__ import annotations

import datetime
import os

from pyncette import Context, Pyncette
from pyncette.healthcheck import use_healthcheck_server
from pyncette.prometheus import metrics_route, use_prometheus

app = Pyncette(sqlite_database="pyncette.db")


@app.task(interval=datetime.timedelta(seconds=10))
async def heartbeat(context: Context) -> None:
    print("tick", context.scheduled_at, flush=True)


use_prometheus(app)  # metrics of every execution and store operation
use_healthcheck_server(app, port=int(os.environ.get("HEALTH_PORT", "8080")), routes={"/metrics": metrics_route()})

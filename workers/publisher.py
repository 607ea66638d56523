"""Sending tasks from outside the workers (the API): a Celery app of the caller's own.

The workers' app is configured once per process by `configure`; an API app gets its own
publisher instead, so that apps built on different settings (the tests make many) never share
a broker. It routes as the workers do, and gives up fast: a request must not hang on a broker
that is down, and nothing is lost when it gives up, because the tick publishes again what the
database says is waiting.
"""

from __future__ import annotations

from celery import Celery

from workers.celery_app import TASK_ROUTES

# Seconds to reach the broker before a send is given up.
CONNECT_TIMEOUT_S = 2


def make_publisher(broker_url: str) -> Celery:
    publisher = Celery("scheduled_images-publisher", set_as_current=False)
    publisher.conf.update(
        broker_url=broker_url,
        broker_connection_timeout=CONNECT_TIMEOUT_S,
        broker_transport_options={
            "socket_timeout": CONNECT_TIMEOUT_S,
            "socket_connect_timeout": CONNECT_TIMEOUT_S,
        },
        task_routes=TASK_ROUTES,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
    )
    return publisher


def send_rebalance(publisher: Celery, job_id: str) -> None:
    """Put job `job_id` on the plan queue; raises if the broker does not take it."""
    publisher.send_task("si.rebalance", args=(job_id,), retry=False, ignore_result=True)

"""A Celery app whose broker is Tidings' SQS API (kombu's SQS transport),
run as a real worker process by tests/sqs/test_celery.py.

The broker URL and queue come from the environment the test sets. The task
answers by sending its result over SQS to the queue the caller names, so
the test reads it back through Tidings too.
"""

from __future__ import annotations

import os

import boto3
from celery import Celery

BROKER = os.environ.get("SQS_TEST_BROKER", "sqs://unset:unset@127.0.0.1:1")
QUEUE = os.environ.get("SQS_TEST_QUEUE", "celery")

app = Celery("tidings_sqs_test", broker=BROKER)
app.conf.broker_transport_options = {
    "region": "us-east-1",
    # Tidings listens on plain HTTP on the loopback address.
    "is_secure": False,
    "visibility_timeout": 300,
    "wait_time_seconds": 5,
}
app.conf.task_default_queue = QUEUE
app.conf.broker_connection_retry_on_startup = True


@app.task(name="tidings_sqs_test.add")
def add(x: int, y: int, reply_to_url: str, endpoint: str, access_key: str) -> int:
    total = x + y
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id=access_key, aws_secret_access_key="unused")
    sqs.send_message(QueueUrl=reply_to_url, MessageBody=str(total))
    return total

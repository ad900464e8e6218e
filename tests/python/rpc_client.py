#!/usr/bin/env python
"""Fibonacci RPC client, after RabbitMQ tutorial six (rpc_client.py).

Usage: rpc_client.py QUEUE N [N ...]

Used by the Rust interop tests as a reference peer. Each N is sent as given
(a string, so bad input like ``abc`` or ``-5`` can be sent). For each N
exactly one line is printed:

    OK <decimal>          reply without an ``x-rpc-error`` header
    ERR <code> <body>     reply with header ``x-rpc-error: <code>``
    INVALID <body>        reply without error header whose body is not an
                          integer (exit status 4)
    TIMEOUT               no reply within 10 s (exit status 3)

The broker URL comes from ``AMQP_URL``.
"""
import os
import sys
import time
import uuid

import pika

CALL_TIMEOUT_SECONDS = 10

# Big fib values have far more than Python's default 4300-digit str limit.
if hasattr(sys, 'set_int_max_str_digits'):
    sys.set_int_max_str_digits(0)


class FibonacciRpcClient(object):

    def __init__(self, url, queue_name):
        self.queue_name = queue_name
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()

        result = self.channel.queue_declare(queue='', exclusive=True)
        self.callback_queue = result.method.queue

        self.channel.basic_consume(
            queue=self.callback_queue,
            on_message_callback=self.on_response,
            auto_ack=True)

        self.response = None
        self.corr_id = None

    def on_response(self, ch, method, props, body):
        # Replies with an unknown correlation id (e.g. late duplicates) are
        # discarded, as in the tutorial.
        if self.corr_id == props.correlation_id:
            self.response = (props, body)

    def call(self, n):
        """Send n (a string) and return (props, body), or None on timeout."""
        self.response = None
        self.corr_id = str(uuid.uuid4())
        self.channel.basic_publish(
            exchange='',
            routing_key=self.queue_name,
            properties=pika.BasicProperties(
                reply_to=self.callback_queue,
                correlation_id=self.corr_id,
            ),
            body=str(n))
        deadline = time.monotonic() + CALL_TIMEOUT_SECONDS
        while self.response is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.connection.process_data_events(time_limit=remaining)
        return self.response

    def close(self):
        try:
            self.connection.close()
        except Exception:
            pass


def text(value):
    if isinstance(value, bytes):
        return value.decode('utf-8', 'replace')
    return str(value)


def main(argv):
    if len(argv) < 3:
        print("usage: %s QUEUE N [N ...]" % argv[0], file=sys.stderr)
        return 2
    queue_name, values = argv[1], argv[2:]
    url = os.environ.get('AMQP_URL', 'amqp://guest:guest@localhost:5672/%2f')

    client = FibonacciRpcClient(url, queue_name)
    try:
        for n in values:
            reply = client.call(n)
            if reply is None:
                print("TIMEOUT", flush=True)
                return 3
            props, body = reply
            headers = props.headers or {}
            if 'x-rpc-error' in headers:
                print("ERR %s %s" % (text(headers['x-rpc-error']), text(body)),
                      flush=True)
                continue
            try:
                value = int(body)
            except ValueError:
                print("INVALID %s" % text(body), flush=True)
                return 4
            print("OK %d" % value, flush=True)
        return 0
    finally:
        client.close()


if __name__ == '__main__':
    sys.exit(main(sys.argv))

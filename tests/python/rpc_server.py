#!/usr/bin/env python
"""Fibonacci RPC server, after RabbitMQ tutorial six (rpc_server.py).

Used by the Rust interop tests as a reference peer. Differences from the
tutorial: queue name from argv[1] (default ``rpc_queue``), broker URL from
``AMQP_URL``, an iterative fib (the tutorial's recursion is exponential),
a ``bad request`` reply with header ``x-rpc-error: bad_request`` for
non-integer (or negative) bodies, and a clean exit on SIGTERM/SIGINT.
"""
import os
import signal
import sys

import pika

# Big fib values have far more than Python's default 4300-digit str limit.
if hasattr(sys, 'set_int_max_str_digits'):
    sys.set_int_max_str_digits(0)

queue_name = sys.argv[1] if len(sys.argv) > 1 else 'rpc_queue'
url = os.environ.get('AMQP_URL', 'amqp://guest:guest@localhost:5672/%2f')

connection = pika.BlockingConnection(pika.URLParameters(url))
channel = connection.channel()

channel.queue_declare(queue=queue_name)


def fib(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def on_request(ch, method, props, body):
    headers = None
    try:
        n = int(body)
    except ValueError:
        n = None
    if n is None or n < 0:
        # Not a (non-negative) integer: answer with an error instead of
        # crashing or looping, so the caller is not left waiting.
        print(" [!] bad request %r" % body, flush=True)
        response = 'bad request'
        headers = {'x-rpc-error': 'bad_request'}
    else:
        print(" [.] fib(%s)" % n, flush=True)
        response = str(fib(n))

    ch.basic_publish(exchange='',
                     routing_key=props.reply_to,
                     properties=pika.BasicProperties(
                         correlation_id=props.correlation_id,
                         headers=headers),
                     body=response)
    ch.basic_ack(delivery_tag=method.delivery_tag)


def on_signal(signum, frame):
    # Treat SIGTERM like Ctrl-C: unwinding out of start_consuming() is
    # safer than calling into pika from inside a signal handler.
    raise KeyboardInterrupt


signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)

channel.basic_qos(prefetch_count=1)
channel.basic_consume(queue=queue_name, on_message_callback=on_request)

print(" [x] Awaiting RPC requests", flush=True)
try:
    channel.start_consuming()
except KeyboardInterrupt:
    pass
finally:
    # Closing the connection requeues any unacked request.
    try:
        connection.close()
    except Exception:
        pass

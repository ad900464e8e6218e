#!/usr/bin/env python
# The reference server for scripts/bench.sh: RabbitMQ tutorial six's rpc_server.py
# (https://www.rabbitmq.com/tutorials/tutorial-six-python), copied as faithfully as possible
# because it is what we measure against. Only these changes, each marked "bench:" below:
#   - the queue name comes from argv[1] (the benchmark uses a unique queue per run);
#   - the broker URL comes from AMQP_URL, through pika.URLParameters;
#   - no print per request (it would measure the terminal, not the RPC);
#   - SIGTERM exits cleanly (status 0) so the benchmark can stop it.
# The recursive fib is the tutorial's: this server is only ever asked fib(10).
#
# Usage: tutorial_server.py QUEUE   (prints " [x] Awaiting RPC requests" once consuming;
# run it with python -u so that line is not held in a buffer)
import os  # bench: for AMQP_URL
import signal  # bench: clean exit on SIGTERM
import sys  # bench: queue name from argv

import pika

queue_name = sys.argv[1]  # bench: was the fixed 'rpc_queue'

connection = pika.BlockingConnection(
    # bench: was pika.ConnectionParameters(host='localhost')
    pika.URLParameters(os.environ.get('AMQP_URL', 'amqp://guest:guest@localhost:5672/%2f')))

channel = connection.channel()

channel.queue_declare(queue=queue_name)


def fib(n):
    if n == 0:
        return 0
    elif n == 1:
        return 1
    else:
        return fib(n - 1) + fib(n - 2)


def on_request(ch, method, props, body):
    n = int(body)

    # bench: removed print(" [.] fib(%s)" % n)
    response = fib(n)

    ch.basic_publish(exchange='',
                     routing_key=props.reply_to,
                     properties=pika.BasicProperties(correlation_id = \
                                                         props.correlation_id),
                     body=str(response))
    ch.basic_ack(delivery_tag=method.delivery_tag)


def on_sigterm(signum, frame):  # bench: leave start_consuming() and exit with status 0
    sys.exit(0)


signal.signal(signal.SIGTERM, on_sigterm)  # bench

channel.basic_qos(prefetch_count=1)
channel.basic_consume(queue=queue_name, on_message_callback=on_request)

print(" [x] Awaiting RPC requests")
try:  # bench: close the connection on SIGTERM
    channel.start_consuming()
finally:
    try:
        connection.close()
    except Exception:
        pass

#!/usr/bin/env python
# The reference client for scripts/bench.sh: RabbitMQ tutorial six's FibonacciRpcClient
# (rpc_client.py, https://www.rabbitmq.com/tutorials/tutorial-six-python), copied as
# faithfully as possible because it is what we measure against. Changes to the class, each
# marked "bench:": the broker URL comes from AMQP_URL (pika.URLParameters) and the queue name
# from argv. The timing loop below the class is the benchmark's own.
#
# Usage: tutorial_client.py QUEUE N SECONDS
#   SECONDS > 0: calls fib(N) back to back for SECONDS and prints one JSON line
#                {"calls", "calls_per_s", "p50_us", "p99_us"}; every reply is checked against
#                fib(N) computed here (exit 1 on a wrong answer), so only real answers count.
#   SECONDS = 0: makes exactly one call and prints the number (a cold process, for hyperfine).
import json  # bench
import os  # bench
import sys  # bench
import time  # bench

import pika
import uuid

# bench: fib(N) for large N has more digits than Python's default int/str limit (4300).
if hasattr(sys, 'set_int_max_str_digits'):
    sys.set_int_max_str_digits(0)

queue_name = sys.argv[1]  # bench


class FibonacciRpcClient(object):

    def __init__(self):
        self.connection = pika.BlockingConnection(
            # bench: was pika.ConnectionParameters(host='localhost')
            pika.URLParameters(os.environ.get('AMQP_URL', 'amqp://guest:guest@localhost:5672/%2f')))

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
        if self.corr_id == props.correlation_id:
            self.response = body

    def call(self, n):
        self.response = None
        self.corr_id = str(uuid.uuid4())
        self.channel.basic_publish(
            exchange='',
            routing_key=queue_name,  # bench: was 'rpc_queue'
            properties=pika.BasicProperties(
                reply_to=self.callback_queue,
                correlation_id=self.corr_id,
            ),
            body=str(n))
        self.connection.process_data_events(time_limit=None)
        return int(self.response)


# ---- bench: everything below is the benchmark's driver, not the tutorial's ----

def expected_fib(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def percentile(sorted_values, percent):
    """Nearest rank, as `fib-rpc bench` computes it."""
    rank = -(-percent * len(sorted_values) // 100)  # ceil
    return sorted_values[min(max(rank, 1), len(sorted_values)) - 1]


def main():
    n, seconds = int(sys.argv[2]), float(sys.argv[3])
    fibonacci_rpc = FibonacciRpcClient()
    if seconds == 0:
        print(fibonacci_rpc.call(n))
        return 0
    expected = expected_fib(n)
    latencies_ns = []
    clock = time.perf_counter_ns
    started = clock()
    end = started + int(seconds * 1e9)
    now = started
    while now < end:
        response = fibonacci_rpc.call(n)
        done = clock()
        if response != expected:
            print("tutorial_client: fib(%d) answered %r, expected %d" % (n, response, expected),
                  file=sys.stderr)
            return 1
        latencies_ns.append(done - now)
        now = done
    elapsed_s = (now - started) / 1e9
    latencies_ns.sort()
    print(json.dumps({
        'calls': len(latencies_ns),
        'calls_per_s': round(len(latencies_ns) / elapsed_s, 1),
        'p50_us': percentile(latencies_ns, 50) // 1000,
        'p99_us': percentile(latencies_ns, 99) // 1000,
    }))
    fibonacci_rpc.connection.close()
    return 0


if __name__ == '__main__':
    sys.exit(main())

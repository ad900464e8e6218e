/*
 * A peer for scripts/bench.sh: the RabbitMQ Java client's own RPC helper,
 * com.rabbitmq.client.RpcClient (amqp-client 5.x, Debian's librabbitmq-client-java), calling
 * fib(10) on a running `fib-rpc serve`, to compare `fib-rpc bench` with.
 *
 * Usage: java -cp AMQP_CLIENT_JAR:SLF4J_JARS:DIR RpcBench QUEUE THREADS SECONDS [WARMUP_SECONDS]
 *
 * It opens one connection (ConnectionFactory, broker from AMQP_URL, default
 * amqp://guest:guest@localhost:5672/%2f), one channel, and ONE RpcClient on it for QUEUE
 * through the default exchange; the constructor without a reply queue uses direct reply-to
 * (amq.rabbitmq.reply-to). THREADS threads share that client. They call it first for
 * WARMUP_SECONDS (default 5; not counted: the JIT compiles the hot paths meanwhile), then for
 * SECONDS, each calling stringCall("10") back to back. A call counts as ok when its answer
 * is "55"; a wrong answer, a timeout (30 s, as `fib-rpc bench`) or an exception counts as an
 * error of its kind. Then it prints ONE JSON line with the keys `fib-rpc bench --json` uses
 * (calls, ok, errors, calls_per_s, ok_per_s, p50_us, p90_us, p99_us, max_us, elapsed_s)
 * plus threads, warmup_s and warmup_ok, and "cpu": what the measured phase cost, for the
 * report's CPU per call: this JVM's CPU time (all its threads, JIT and GC included) and,
 * when the environment names them (BENCH_BROKER_PID, BENCH_SERVER_PID), the broker's and the
 * server's CPU ticks read from /proc/PID/stat before and after it. Exits 0 once it has
 * measured (errors are in the JSON), 1 when it cannot set up or a thread does not finish.
 */

import com.rabbitmq.client.Channel;
import com.rabbitmq.client.Connection;
import com.rabbitmq.client.ConnectionFactory;
import com.rabbitmq.client.RpcClient;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.Arrays;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.TimeoutException;

public final class RpcBench {
    /** The request body: n = 10. */
    private static final String REQUEST = "10";
    /** fib(10), the only answer that counts. */
    private static final String EXPECTED = "55";
    /** How long one call may wait for its reply, in milliseconds. */
    private static final int CALL_TIMEOUT_MS = 30_000;
    /** How long a caller thread may take to finish after its phase ends, in milliseconds. */
    private static final long JOIN_MARGIN_MS = CALL_TIMEOUT_MS + 10_000;

    private RpcBench() {}

    /** One caller thread's tally over a phase. */
    private static final class Caller implements Runnable {
        private final RpcClient client;
        private final long deadlineNanos;
        private final Map<String, Long> errors = new TreeMap<>();
        private long[] latenciesNanos = new long[1024];
        private int ok;

        Caller(RpcClient client, long deadlineNanos) {
            this.client = client;
            this.deadlineNanos = deadlineNanos;
        }

        @Override
        public void run() {
            long now = System.nanoTime();
            while (now < deadlineNanos && client.getChannel().isOpen()) {
                String kind = null;
                try {
                    if (!EXPECTED.equals(client.stringCall(REQUEST))) {
                        kind = "wrong_answer";
                    }
                } catch (TimeoutException e) {
                    kind = "timeout";
                } catch (Exception e) {
                    kind = e.getClass().getSimpleName();
                }
                long done = System.nanoTime();
                if (kind == null) {
                    if (ok == latenciesNanos.length) {
                        latenciesNanos = Arrays.copyOf(latenciesNanos, ok * 2);
                    }
                    latenciesNanos[ok++] = done - now;
                } else {
                    errors.merge(kind, 1L, Long::sum);
                }
                now = done;
            }
        }
    }

    /** What THREADS callers did together in one phase. */
    private static final class Phase {
        long ok;
        long failed;
        final Map<String, Long> errors = new TreeMap<>();
        long[] latenciesNanos = new long[0];
        double elapsedSeconds;
    }

    /** Runs THREADS callers on CLIENT for SECONDS, joins them, and sums up what they did. */
    private static Phase phase(RpcClient client, int threads, double seconds, String name)
            throws InterruptedException {
        long started = System.nanoTime();
        long deadline = started + (long) (seconds * 1e9);
        Caller[] callers = new Caller[threads];
        Thread[] running = new Thread[threads];
        for (int i = 0; i < threads; i++) {
            callers[i] = new Caller(client, deadline);
            running[i] = new Thread(callers[i], "rpc-bench-" + name + "-" + i);
            // A daemon, so that a caller stuck past its bound cannot keep the JVM alive
            // once main has given up on it.
            running[i].setDaemon(true);
            running[i].start();
        }
        long joinBy = deadline + JOIN_MARGIN_MS * 1_000_000L;
        for (Thread thread : running) {
            thread.join(Math.max(1, (joinBy - System.nanoTime()) / 1_000_000L));
            if (thread.isAlive()) {
                throw new IllegalStateException(thread.getName() + " did not finish in time");
            }
        }
        Phase result = new Phase();
        result.elapsedSeconds = (System.nanoTime() - started) / 1e9;
        int total = 0;
        for (Caller caller : callers) {
            total += caller.ok;
        }
        result.latenciesNanos = new long[total];
        int at = 0;
        for (Caller caller : callers) {
            System.arraycopy(caller.latenciesNanos, 0, result.latenciesNanos, at, caller.ok);
            at += caller.ok;
            for (Map.Entry<String, Long> error : caller.errors.entrySet()) {
                result.errors.merge(error.getKey(), error.getValue(), Long::sum);
                result.failed += error.getValue();
            }
        }
        result.ok = total;
        Arrays.sort(result.latenciesNanos);
        return result;
    }

    /** Nearest-rank percentile of sorted nanoseconds, in whole microseconds ("null" if none). */
    private static String percentileMicros(long[] sorted, double percent) {
        if (sorted.length == 0) {
            return "null";
        }
        int rank = (int) Math.ceil(percent / 100.0 * sorted.length);
        return Long.toString(sorted[Math.min(Math.max(rank, 1), sorted.length) - 1] / 1000);
    }

    /** CPU ticks (utime + stime) of the process named by environment variable VAR, or null. */
    private static Long ticksOf(String var) {
        String pid = System.getenv(var);
        if (pid == null || pid.isEmpty()) {
            return null;
        }
        try {
            String stat = new String(Files.readAllBytes(Paths.get("/proc", pid, "stat")), "UTF-8");
            // Fields from 3 on follow the last ')' (the command name may hold spaces).
            String[] fields = stat.substring(stat.lastIndexOf(')') + 2).trim().split(" ");
            return Long.parseLong(fields[11]) + Long.parseLong(fields[12]);
        } catch (Exception e) {
            return null;
        }
    }

    private static String delta(Long before, Long after) {
        return before == null || after == null ? "null" : Long.toString(after - before);
    }

    /** This JVM's CPU time so far, all threads, in nanoseconds; -1 when unknown. */
    private static long processCpuNanos() {
        java.lang.management.OperatingSystemMXBean os =
                ManagementFactory.getOperatingSystemMXBean();
        if (os instanceof com.sun.management.OperatingSystemMXBean) {
            return ((com.sun.management.OperatingSystemMXBean) os).getProcessCpuTime();
        }
        return -1;
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 3 || args.length > 4) {
            System.err.println("usage: RpcBench QUEUE THREADS SECONDS [WARMUP_SECONDS]");
            System.exit(2);
        }
        String queue = args[0];
        int threads = Integer.parseInt(args[1]);
        double seconds = Double.parseDouble(args[2]);
        double warmup = args.length > 3 ? Double.parseDouble(args[3]) : 5;
        if (threads < 1 || !(seconds > 0) || !(warmup >= 0)) {
            System.err.println("RpcBench: THREADS must be >= 1, SECONDS > 0, WARMUP >= 0");
            System.exit(2);
        }
        String url = System.getenv().getOrDefault("AMQP_URL",
                "amqp://guest:guest@localhost:5672/%2f");
        ConnectionFactory factory = new ConnectionFactory();
        factory.setUri(url);
        factory.setConnectionTimeout(10_000);
        factory.setAutomaticRecoveryEnabled(false);

        Connection connection = factory.newConnection("fib-rpc-bench-java");
        try {
            Channel channel = connection.createChannel();
            // (channel, exchange, routing key, timeout): the reply queue is
            // amq.rabbitmq.reply-to, direct reply-to.
            RpcClient client = new RpcClient(channel, "", queue, CALL_TIMEOUT_MS);

            Phase warm = warmup > 0 ? phase(client, threads, warmup, "warmup") : new Phase();

            Long brokerBefore = ticksOf("BENCH_BROKER_PID");
            Long serverBefore = ticksOf("BENCH_SERVER_PID");
            long cpuBefore = processCpuNanos();
            Phase run = phase(client, threads, seconds, "caller");
            long cpuAfter = processCpuNanos();
            Long brokerAfter = ticksOf("BENCH_BROKER_PID");
            Long serverAfter = ticksOf("BENCH_SERVER_PID");
            client.close();

            StringBuilder errors = new StringBuilder();
            for (Map.Entry<String, Long> error : run.errors.entrySet()) {
                if (errors.length() > 0) {
                    errors.append(',');
                }
                errors.append('"').append(error.getKey()).append("\":").append(error.getValue());
            }
            long calls = run.ok + run.failed;
            long[] sorted = run.latenciesNanos;
            String cpu = String.format(java.util.Locale.ROOT,
                    "{\"wall_s\":%.3f,\"client_cpu_s\":%s,\"broker_ticks\":%s,\"server_ticks\":%s}",
                    run.elapsedSeconds,
                    cpuBefore < 0 || cpuAfter < 0 ? "null"
                            : String.format(java.util.Locale.ROOT, "%.6f",
                                    (cpuAfter - cpuBefore) / 1e9),
                    delta(brokerBefore, brokerAfter), delta(serverBefore, serverAfter));
            System.out.println(String.format(java.util.Locale.ROOT,
                    "{\"calls\":%d,\"ok\":%d,\"errors\":{%s},\"calls_per_s\":%.1f,"
                            + "\"ok_per_s\":%.1f,\"p50_us\":%s,\"p90_us\":%s,\"p99_us\":%s,"
                            + "\"max_us\":%s,\"threads\":%d,\"n\":10,\"elapsed_s\":%.3f,"
                            + "\"warmup_s\":%s,\"warmup_ok\":%d,\"warmup_failed\":%d,\"cpu\":%s}",
                    calls, run.ok, errors, calls / run.elapsedSeconds,
                    run.ok / run.elapsedSeconds, percentileMicros(sorted, 50),
                    percentileMicros(sorted, 90), percentileMicros(sorted, 99),
                    percentileMicros(sorted, 100), threads, run.elapsedSeconds,
                    Double.toString(warmup), warm.ok, warm.failed, cpu));
        } finally {
            // Bounded: after 10 s the socket is closed anyway.
            connection.close(10_000);
        }
    }
}

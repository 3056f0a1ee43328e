package tidemq.bench;

import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.PrintStream;
import java.lang.reflect.Method;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.rocketmq.client.ClientConfig;

/**
 * The side-by-side benchmark load: the official RocketMQ Java client against any remoting broker.
 *
 * <pre>
 * Bench produce --namesrv A --topic T [--mode sync|async|oneway] [--threads 1] [--size 128] [--batch 1]
 *               [--duration-s 10] [--warmup-s 2] [--max-count N] [--rate R] [--inflight 1024] [--queues 8]
 *               [--send-timeout-ms 3000] [--retries 2]
 * Bench consume --namesrv A --topic T --group G --expect N [--consume-threads 20] [--pull-batch 32] [--idle-s 15]
 * Bench e2e     --namesrv A --topic T --group G --rate R [--threads 2] [--inflight 4096] [--size 128]
 *               [--duration-s 10] [--warmup-s 2] [--queues 8] [--idle-s 10]
 * Bench echo    --kind rtt|bulk [--size 128] [--duration-s 3]          (raw loopback limits, no broker)
 * Bench version
 * Bench serve   (commands on stdin, one per line, arguments separated by tabs; one JSON result line each)
 * every mode:   [--progress tty|lines|off] [--timeout-s S (hard deadline; the JVM halts 30 s after it)]
 * </pre>
 *
 * <p>A progress line on stderr once a second; at the end one JSON object on stdout: totals, rates, latency
 * percentiles (ms), a CDF and the per-second rates. Exit 0 when the run completed, 1 on failure, 2 on usage errors.
 */
public final class Bench {
    static final PrintStream OUT = open(FileDescriptor.out, false);
    static final PrintStream ERR = open(FileDescriptor.err, true);

    private Bench() {
    }

    private static PrintStream open(FileDescriptor fd, boolean autoFlush) {
        try {
            return new PrintStream(new FileOutputStream(fd), autoFlush, StandardCharsets.UTF_8.name());
        } catch (java.io.UnsupportedEncodingException e) {
            throw new IllegalStateException(e);
        }
    }

    public static void main(String[] argv) {
        System.setOut(ERR); // nothing but results go to stdout
        if (argv.length == 0) {
            ERR.println("usage: Bench produce|consume|e2e|echo|version|serve [--options]");
            System.exit(2);
        }
        startWatchdog();
        if (argv[0].equals("serve")) {
            System.exit(serve());
        }
        Map<String, Object> result = runOne(argv);
        Object code = result.remove("exit_code");
        OUT.println(Json.write(result));
        OUT.flush();
        System.exit(code instanceof Integer ? (Integer) code : 1); // client threads are not daemons
    }

    /**
     * serve: one command per line on stdin (its arguments separated by tabs, e.g. "produce\t--namesrv\t..."), one
     * JSON result line per command on stdout, until end of input. The JVM, and so its JIT, stays warm across runs.
     */
    private static int serve() {
        try {
            java.io.BufferedReader in = new java.io.BufferedReader(
                new java.io.InputStreamReader(System.in, StandardCharsets.UTF_8));
            String line;
            while ((line = in.readLine()) != null) {
                if (line.isBlank()) {
                    continue;
                }
                Map<String, Object> result = runOne(line.strip().split("\t"));
                OUT.println(Json.write(result));
                OUT.flush();
            }
            return 0;
        } catch (java.io.IOException e) {
            e.printStackTrace(ERR);
            return 1;
        }
    }

    private static final AtomicLong DEADLINE_MS = new AtomicLong(Long.MAX_VALUE);

    /** One command; the result has "ok" and "exit_code" (0 completed, 1 failure, 2 usage error). */
    static Map<String, Object> runOne(String[] argv) {
        Map<String, Object> result;
        int code;
        try {
            Opts opts = new Opts(argv, 1);
            String progress = opts.str("progress", "lines");
            double timeoutS = opts.dbl("timeout-s", 600);
            DEADLINE_MS.set(System.currentTimeMillis() + (long) ((timeoutS + 30) * 1000));
            switch (argv[0]) {
                case "produce":
                    result = new ProduceLoad(opts, progress).run();
                    break;
                case "consume":
                    result = new ConsumeLoad(opts, progress, timeoutS).run();
                    break;
                case "e2e":
                    result = new E2eLoad(opts, progress, timeoutS).run();
                    break;
                case "echo":
                    result = new Echo(opts).run();
                    break;
                case "version":
                    opts.checkAllUsed();
                    result = new LinkedHashMap<>();
                    break;
                default:
                    throw new Opts.UsageException("unknown mode " + argv[0]);
            }
            code = Boolean.FALSE.equals(result.get("ok")) ? 1 : 0;
        } catch (Opts.UsageException e) {
            ERR.println("usage error: " + e.getMessage());
            result = new LinkedHashMap<>();
            result.put("ok", false);
            result.put("error", "usage: " + e.getMessage());
            code = 2;
        } catch (Exception e) {
            e.printStackTrace(ERR);
            result = new LinkedHashMap<>();
            result.put("ok", false);
            result.put("error", e.toString());
            code = 1;
        } finally {
            DEADLINE_MS.set(Long.MAX_VALUE);
        }
        result.put("client_version", clientVersion());
        result.put("java_version", System.getProperty("java.version"));
        result.put("exit_code", code);
        return result;
    }

    /** Halts the JVM 30 s after a command's --timeout-s (a client shutdown that hangs must not hang the run). */
    private static void startWatchdog() {
        Thread t = new Thread(() -> {
            while (true) {
                try {
                    Thread.sleep(1000);
                } catch (InterruptedException e) {
                    return;
                }
                if (System.currentTimeMillis() > DEADLINE_MS.get()) {
                    ERR.println("[bench] watchdog: a command ran 30 s past its --timeout-s; halting");
                    Runtime.getRuntime().halt(3);
                }
            }
        }, "bench-watchdog");
        t.setDaemon(true);
        t.start();
    }

    private static final AtomicLong INSTANCES = new AtomicLong();

    /** Client settings shared by every mode: loopback client IP, a unique instance name. */
    static void configure(ClientConfig cfg, String namesrv, String role) {
        cfg.setNamesrvAddr(namesrv);
        cfg.setClientIP("127.0.0.1");
        // a new client instance per run, also when one JVM serves many runs
        long pid = ProcessHandle.current().pid();
        cfg.setInstanceName("tidemq-bench-" + role + "-" + pid + "-" + INSTANCES.incrementAndGet());
    }

    static String clientVersion() {
        try {
            Class<?> c = Class.forName("org.apache.rocketmq.common.MQVersion");
            Object current = c.getField("CURRENT_VERSION").get(null);
            Method name = c.getMethod("getVersionDesc", int.class);
            return String.valueOf(name.invoke(null, ((Number) current).intValue()));
        } catch (ReflectiveOperationException e) {
            return "unknown";
        }
    }

    /** Error counts by kind (exception class or send status) with one sample message each. */
    static final class Errors {
        final AtomicLong total = new AtomicLong();
        private final Map<String, AtomicLong> byKind = new ConcurrentHashMap<>();
        private final Map<String, String> sample = new ConcurrentHashMap<>();

        void add(String kind, String message) {
            total.incrementAndGet();
            byKind.computeIfAbsent(kind, k -> new AtomicLong()).incrementAndGet();
            if (message != null) {
                sample.putIfAbsent(kind, message.length() > 300 ? message.substring(0, 300) : message);
            }
        }

        void add(Throwable t) {
            add(t.getClass().getSimpleName(), String.valueOf(t.getMessage()));
        }

        Map<String, Object> toJson() {
            Map<String, Object> m = new LinkedHashMap<>();
            for (Map.Entry<String, AtomicLong> e : byKind.entrySet()) {
                Map<String, Object> one = new LinkedHashMap<>();
                one.put("count", e.getValue().get());
                one.put("sample", sample.get(e.getKey()));
                m.put(e.getKey(), one);
            }
            return m;
        }
    }

    static double round(double v, int digits) {
        double f = Math.pow(10, digits);
        return Math.round(v * f) / f;
    }

    static byte[] body(int size) {
        byte[] b = new byte[size];
        for (int i = 0; i < size; i++) {
            b[i] = (byte) ('a' + (i % 26));
        }
        return b;
    }
}

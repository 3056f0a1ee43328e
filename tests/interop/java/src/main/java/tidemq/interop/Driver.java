package tidemq.interop;

import java.util.Arrays;
import java.util.HashSet;
import java.util.Map;
import java.util.Set;

/**
 * tidemq interop / load driver for the official RocketMQ Java clients.
 *
 * <pre>
 *   java -cp 'tidemq-interop-driver.jar:lib/*' tidemq.interop.Driver SUB-COMMAND [--option value]...
 *
 *   version                                        client version in use
 *   produce      --namesrv A --topic T ...         see {@link Produce}
 *   push-consume --namesrv A --topic T --group G   see {@link PushConsume}
 *   lite-pull    --namesrv A --topic T --group G   see {@link LitePull}
 * </pre>
 *
 * <p>stdout carries only JSON lines (each with a "type"); logs go to stderr. Every sub-command is bounded:
 * --timeout-s (default 120) is the deadline for its work, and a watchdog halts the JVM --grace-s (default 30) after
 * it if shutting down the client hangs. Exit codes: 0 ok, 1 failure, 2 usage error, 3 deadline passed.
 * Add a sub-command as a class with {@code int run()} and a case below ({@code produce --transaction} is
 * {@link TxProduce}).
 */
public final class Driver {
    static final int EXIT_OK = 0;
    static final int EXIT_FAILED = 1;
    static final int EXIT_USAGE = 2;
    static final int EXIT_TIMEOUT = 3;

    private static final Set<String> FLAGS = new HashSet<String>(Arrays.asList("quiet", "orderly", "count-deliveries"));
    private static volatile long deadlineNanos = System.nanoTime() + 120_000_000_000L;

    private Driver() {
    }

    /** Milliseconds left before --timeout-s (never negative). */
    static long remainingMs() {
        return Math.max(0, (deadlineNanos - System.nanoTime()) / 1_000_000L);
    }

    /**
     * Runs a client's shutdown, bounded to 15 s (a stuck shutdown must not hang a test run).
     *
     * <p>The client's remoting layer ends with {@code ServiceThread.shutdown()} on its "NettyEventExecutor" thread,
     * which joins it without interrupting while it sits in a 3 s queue poll: about one shutdown in five then takes
     * 3 s more for nothing. Offsets and unregistration are done by then, so that thread is interrupted here.
     */
    static void shutdownQuietly(Runnable shutdown) {
        long t0 = System.nanoTime();
        Thread t = new Thread(() -> {
            try {
                shutdown.run();
            } catch (RuntimeException e) {
                Out.log("shutdown failed: %s", e);
            }
        }, "driver-shutdown");
        t.setDaemon(true);
        t.start();
        try {
            long end = System.nanoTime() + 15_000_000_000L;
            while (t.isAlive() && System.nanoTime() < end) {
                t.join(100);
                if (t.isAlive()) {
                    nudgeRemotingShutdown(t);
                }
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        if (t.isAlive()) {
            Out.log("client shutdown still running after 15 s; going on");
        } else {
            Out.log("client shutdown took %.0f ms", (System.nanoTime() - t0) / 1e6);
        }
    }

    /**
     * If {@code worker} is inside the remoting client's shutdown, interrupts the idle "NettyEventExecutor" thread it
     * is joining (see {@link #shutdownQuietly}); does nothing otherwise.
     */
    static void nudgeRemotingShutdown(Thread worker) {
        boolean inShutdown = false;
        for (StackTraceElement frame : worker.getStackTrace()) {
            if (frame.getClassName().endsWith(".NettyRemotingClient") && frame.getMethodName().equals("shutdown")) {
                inShutdown = true;
                break;
            }
        }
        if (!inShutdown) {
            return;
        }
        for (Thread other : Thread.getAllStackTraces().keySet()) {
            if ("NettyEventExecutor".equals(other.getName()) && other.getState() == Thread.State.TIMED_WAITING) {
                other.interrupt();
            }
        }
    }

    private static void startWatchdog(final double timeoutS, final double graceS) {
        deadlineNanos = System.nanoTime() + (long) (timeoutS * 1e9);
        final long haltAt = deadlineNanos + (long) (graceS * 1e9);
        Thread w = new Thread(() -> {
            while (true) {
                long left = haltAt - System.nanoTime();
                if (left <= 0) {
                    break;
                }
                try {
                    Thread.sleep(Math.max(1, Math.min(1000, left / 1_000_000L)));
                } catch (InterruptedException e) {
                    return;
                }
            }
            Map<String, Object> o = Out.obj("error");
            o.put("error", "watchdog: still running " + graceS + " s after --timeout-s " + timeoutS + "; halting");
            Out.emit(o);
            Runtime.getRuntime().halt(EXIT_TIMEOUT);
        }, "driver-watchdog");
        w.setDaemon(true);
        w.start();
    }

    public static void main(String[] argv) {
        Out.install();
        int code;
        try {
            code = run(argv);
        } catch (Args.UsageException e) {
            Map<String, Object> o = Out.obj("error");
            o.put("error", "usage: " + e.getMessage());
            Out.emit(o);
            Out.log("usage error: %s (see the Driver class comment)", e.getMessage());
            code = EXIT_USAGE;
        } catch (Throwable t) {
            Map<String, Object> o = Out.obj("error");
            o.put("error", Out.describe(t));
            Out.emit(o);
            t.printStackTrace();
            code = EXIT_FAILED;
        }
        System.exit(code);
    }

    private static int run(String[] argv) throws Exception {
        if (argv.length == 0) {
            throw new Args.UsageException("a sub-command is required: version, produce, push-consume, lite-pull");
        }
        Args args = new Args(argv, 1, FLAGS);
        startWatchdog(args.dbl("timeout-s", 120), args.dbl("grace-s", 30));
        String cmd = argv[0];
        switch (cmd) {
            case "version": {
                args.checkAllUsed();
                Map<String, Object> o = Out.obj("version");
                o.put("clientVersion", Clients.version());
                o.put("java", System.getProperty("java.version"));
                Out.emit(o);
                return EXIT_OK;
            }
            case "produce":
                return new Produce(args).run();
            case "push-consume":
                return new PushConsume(args).run();
            case "lite-pull":
                return new LitePull(args).run();
            default:
                throw new Args.UsageException("unknown sub-command " + cmd);
        }
    }
}

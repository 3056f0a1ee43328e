package tidemq.bench;

import java.io.PrintStream;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Supplier;

/**
 * Once a second: the rate over the last second (of {@code counter}) into {@link #perSecond()}, and a progress line on
 * stderr, rewritten in place ("tty") or one per second ("lines"), or none ("off").
 */
final class Progress implements AutoCloseable {
    private final String label;
    private final AtomicLong counter;
    private final AtomicLong errors;
    private final Supplier<String> extra;
    private final String style;
    private final PrintStream err;
    private final List<Long> perSecond = new ArrayList<>();
    private final Thread thread;
    private final long startNanos = System.nanoTime();
    private volatile boolean running = true;

    Progress(String label, AtomicLong counter, AtomicLong errors, Supplier<String> extra, String style, PrintStream err) {
        this.label = label;
        this.counter = counter;
        this.errors = errors;
        this.extra = extra;
        this.style = style;
        this.err = err;
        this.thread = new Thread(this::loop, "bench-progress");
        this.thread.setDaemon(true);
        this.thread.start();
    }

    private void loop() {
        long last = counter.get();
        long next = startNanos + 1_000_000_000L;
        while (running) {
            long wait = next - System.nanoTime();
            if (wait > 0) {
                try {
                    Thread.sleep(wait / 1_000_000L, (int) (wait % 1_000_000L));
                } catch (InterruptedException e) {
                    return;
                }
                continue;
            }
            next += 1_000_000_000L;
            long now = counter.get();
            long delta = now - last;
            last = now;
            synchronized (perSecond) {
                perSecond.add(delta);
            }
            if (!"off".equals(style)) {
                long secs = (System.nanoTime() - startNanos) / 1_000_000_000L;
                String line = String.format("[%s] %3ds  %,9d msg/s  total %,11d  errors %,d%s", label, secs, delta, now,
                    errors.get(), extra == null ? "" : "  " + extra.get());
                if ("tty".equals(style)) {
                    err.print("\r\033[K" + line);
                } else {
                    err.println(line);
                }
                err.flush();
            }
        }
    }

    List<Long> perSecond() {
        synchronized (perSecond) {
            return new ArrayList<>(perSecond);
        }
    }

    @Override
    public void close() {
        running = false;
        thread.interrupt();
        try {
            thread.join(2000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        if ("tty".equals(style)) {
            err.println();
        }
    }
}

package tidemq.interop;

import java.util.HashSet;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.rocketmq.common.message.MessageExt;

/** Counts what a consumer receives, prints it, and tells when --expect distinct messages have arrived. */
final class Receiver {
    private final String consumer;
    private final boolean quiet;
    private final int expect;
    private final boolean countDeliveries;
    private final Set<String> distinct = new HashSet<String>();
    private final AtomicLong deliveries = new AtomicLong();
    private final long t0 = System.nanoTime();
    private long firstNs = -1;
    private long lastNs = -1;

    Receiver(String consumer, Args args) {
        this.consumer = consumer;
        this.quiet = args.bool("quiet", false);
        this.expect = args.integer("expect", 0);
        this.countDeliveries = args.bool("count-deliveries", false);
    }

    void onMessage(MessageExt m) {
        deliveries.incrementAndGet();
        synchronized (this) {
            long now = System.nanoTime();
            if (firstNs < 0) {
                firstNs = now;
            }
            lastNs = now;
            distinct.add(m.getMsgId());
            notifyAll();
        }
        if (!quiet) {
            Out.emit(Clients.received(m, consumer));
        }
    }

    /** What --expect counts: distinct messages, or every delivery with --count-deliveries (e.g. retries). */
    synchronized int progress() {
        return countDeliveries ? (int) deliveries.get() : distinct.size();
    }

    /**
     * Waits until --expect distinct messages (or deliveries) arrived (or, with --expect 0, for --linger-ms), then --linger-ms more
     * to catch extra deliveries. Returns whether the expectation was met before the deadline (--timeout-s).
     */
    boolean await(long lingerMs) throws InterruptedException {
        boolean met = true;
        synchronized (this) {
            while (expect > 0 && progress() < expect) {
                long left = Driver.remainingMs();
                if (left <= 0) {
                    met = false;
                    break;
                }
                wait(Math.min(left, 200));
            }
        }
        long linger = expect > 0 ? lingerMs : Math.min(lingerMs, Driver.remainingMs());
        if (met && linger > 0) {
            Thread.sleep(linger);
        }
        return met;
    }

    Map<String, Object> summary(String command, boolean met) {
        Map<String, Object> s = Out.obj("summary");
        s.put("command", command);
        s.put("clientVersion", Clients.version());
        s.put("expected", expect);
        synchronized (this) {
            s.put("distinct", distinct.size());
            s.put("received", deliveries.get());
            s.put("duplicates", deliveries.get() - distinct.size());
            s.put("timedOut", !met);
            s.put("elapsedMs", (System.nanoTime() - t0) / 1e6);
            double spanS = firstNs < 0 || lastNs <= firstNs ? 0 : (lastNs - firstNs) / 1e9;
            s.put("firstToLastMs", spanS * 1e3);
            s.put("msgPerSec", spanS > 0 ? deliveries.get() / spanS : 0.0);
        }
        return s;
    }
}

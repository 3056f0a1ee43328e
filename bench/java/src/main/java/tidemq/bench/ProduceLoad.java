package tidemq.bench;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.LockSupport;
import org.apache.rocketmq.client.producer.DefaultMQProducer;
import org.apache.rocketmq.client.producer.SendCallback;
import org.apache.rocketmq.client.producer.SendResult;
import org.apache.rocketmq.client.producer.SendStatus;
import org.apache.rocketmq.common.message.Message;

/**
 * Producer threads sending as fast as they can (or at --rate in total) for warmup + duration seconds; only what
 * completes after the warm-up counts. One shared DefaultMQProducer, a new Message per send (the client stamps each
 * with a unique key) sharing one body, compression off (a 4 KiB body of repeating letters would shrink to nothing).
 */
final class ProduceLoad {
    private final String namesrv;
    private final String topic;
    private final String mode;
    private final int threads;
    private final int size;
    private final int batch;
    private final double durationS;
    private final double warmupS;
    private final long maxCount;
    private final double rate;
    private final int inflight;
    private final int queues;
    private final int sendTimeoutMs;
    private final int retries;
    private final String progressStyle;
    private final byte[] body;

    private final AtomicLong okTotal = new AtomicLong();
    private final AtomicLong okMeasured = new AtomicLong();
    private final AtomicLong requestsMeasured = new AtomicLong();
    private final AtomicLong scheduled = new AtomicLong();
    private final Bench.Errors errors = new Bench.Errors();
    private final Histogram latency = new Histogram();
    private final AtomicLong minOffset = new AtomicLong(Long.MAX_VALUE);
    private final AtomicLong maxOffset = new AtomicLong(-1);
    private volatile long warmEnd;
    private volatile long end;
    private volatile boolean stop;

    ProduceLoad(Opts o, String progressStyle) {
        this.namesrv = o.req("namesrv");
        this.topic = o.req("topic");
        this.mode = o.str("mode", "sync");
        this.threads = o.integer("threads", 1);
        this.size = o.integer("size", 128);
        this.batch = o.integer("batch", 1);
        this.durationS = o.dbl("duration-s", 10);
        this.warmupS = o.dbl("warmup-s", 2);
        this.maxCount = o.lng("max-count", Long.MAX_VALUE);
        this.rate = o.dbl("rate", 0);
        this.inflight = o.integer("inflight", 1024);
        this.queues = o.integer("queues", 8);
        this.sendTimeoutMs = o.integer("send-timeout-ms", 3000);
        this.retries = o.integer("retries", 2);
        this.progressStyle = progressStyle;
        o.checkAllUsed();
        if (!mode.equals("sync") && !mode.equals("async") && !mode.equals("oneway")) {
            throw new Opts.UsageException("--mode wants sync|async|oneway, got " + mode);
        }
        if (batch > 1 && !mode.equals("sync")) {
            throw new Opts.UsageException("--batch > 1 is sync only");
        }
        this.body = Bench.body(size);
    }

    private DefaultMQProducer producer() throws Exception {
        DefaultMQProducer p = new DefaultMQProducer("tidemq_bench_producer");
        Bench.configure(p, namesrv, "producer");
        p.setSendMsgTimeout(sendTimeoutMs);
        p.setRetryTimesWhenSendFailed(retries);
        p.setRetryTimesWhenSendAsyncFailed(retries);
        p.setDefaultTopicQueueNums(queues);
        p.setCompressMsgBodyOverHowmuch(Integer.MAX_VALUE);
        p.setMaxMessageSize(8 * 1024 * 1024);
        p.start();
        return p;
    }

    private boolean done() {
        return stop || System.nanoTime() >= end;
    }

    /** Count a completed request of n messages that took nanos, ending now. */
    private void completed(int n, long startNanos) {
        long now = System.nanoTime();
        long total = okTotal.addAndGet(n);
        if (now >= warmEnd && now <= end) {
            okMeasured.addAndGet(n);
            requestsMeasured.incrementAndGet();
            if (!mode.equals("oneway")) {
                latency.recordNanos(now - startNanos);
            }
        }
        if (total >= maxCount) {
            stop = true;
        }
    }

    /**
     * The commit-log offsets of stored messages, from the send results' offsetMsgId (store host + 8-byte physical
     * offset, hex; comma-separated for a batch): (max - min) / (count - 1) is the stored record size.
     */
    private void trackOffsets(SendResult r) {
        String ids = r.getOffsetMsgId();
        if (ids == null) {
            return;
        }
        for (String id : ids.split(",")) {
            if (id.length() < 16) {
                continue;
            }
            long off;
            try {
                off = Long.parseUnsignedLong(id.substring(id.length() - 16), 16);
            } catch (NumberFormatException e) {
                continue;
            }
            long m;
            while (off < (m = minOffset.get()) && !minOffset.compareAndSet(m, off)) {
                // retry
            }
            while (off > (m = maxOffset.get()) && !maxOffset.compareAndSet(m, off)) {
                // retry
            }
        }
    }

    private void pace() {
        if (rate <= 0) {
            return;
        }
        long k = scheduled.getAndIncrement();
        long due = warmEnd - (long) (warmupS * 1e9) + (long) (k * batch * 1e9 / rate);
        long wait;
        while ((wait = due - System.nanoTime()) > 0 && !done()) {
            LockSupport.parkNanos(Math.min(wait, 100_000_000L));
        }
    }

    private List<Message> batchOf(int n) {
        List<Message> msgs = new ArrayList<>(n);
        for (int i = 0; i < n; i++) {
            msgs.add(new Message(topic, body));
        }
        return msgs;
    }

    private void syncLoop(DefaultMQProducer p) {
        while (!done()) {
            pace();
            if (done()) {
                break;
            }
            long t0 = System.nanoTime();
            try {
                SendResult r = batch > 1 ? p.send(batchOf(batch)) : p.send(new Message(topic, body));
                if (r.getSendStatus() == SendStatus.SEND_OK) {
                    completed(batch, t0);
                    trackOffsets(r);
                } else {
                    errors.add(r.getSendStatus().name(), null);
                }
            } catch (Exception e) {
                errors.add(e);
                LockSupport.parkNanos(1_000_000L); // a failing broker is not a reason to spin
            }
        }
    }

    private void onewayLoop(DefaultMQProducer p) {
        while (!done()) {
            pace();
            long t0 = System.nanoTime();
            try {
                p.sendOneway(new Message(topic, body));
                completed(1, t0);
            } catch (Exception e) {
                errors.add(e);
                LockSupport.parkNanos(1_000_000L);
            }
        }
    }

    private void asyncLoop(DefaultMQProducer p, Semaphore permits) {
        while (!done()) {
            pace();
            try {
                if (!permits.tryAcquire(100, TimeUnit.MILLISECONDS)) {
                    continue;
                }
            } catch (InterruptedException e) {
                return;
            }
            final long t0 = System.nanoTime();
            try {
                p.send(new Message(topic, body), new SendCallback() {
                    @Override
                    public void onSuccess(SendResult r) {
                        permits.release();
                        if (r.getSendStatus() == SendStatus.SEND_OK) {
                            completed(1, t0);
                            trackOffsets(r);
                        } else {
                            errors.add(r.getSendStatus().name(), null);
                        }
                    }

                    @Override
                    public void onException(Throwable e) {
                        permits.release();
                        errors.add(e);
                    }
                }, sendTimeoutMs);
            } catch (Exception e) {
                permits.release();
                errors.add(e);
                LockSupport.parkNanos(1_000_000L);
            }
        }
    }

    Map<String, Object> run() throws Exception {
        DefaultMQProducer p = producer();
        // Warm the route (and auto-create the topic where the broker allows it) before the clock starts.
        for (int i = 0; i < 50; i++) {
            try {
                if (!p.fetchPublishMessageQueues(topic).isEmpty()) {
                    break;
                }
            } catch (Exception e) {
                Thread.sleep(100);
            }
        }
        long start = System.nanoTime();
        warmEnd = start + (long) (warmupS * 1e9);
        end = warmEnd + (long) (durationS * 1e9);
        Semaphore permits = new Semaphore(inflight);
        List<Thread> workers = new ArrayList<>();
        Progress progress = new Progress("produce " + mode, okTotal, errors.total,
            () -> String.format("p99 %.2f ms", latency.quantileMs(0.99)), progressStyle, Bench.ERR);
        for (int i = 0; i < threads; i++) {
            Thread t = new Thread(() -> {
                if (mode.equals("async")) {
                    asyncLoop(p, permits);
                } else if (mode.equals("oneway")) {
                    onewayLoop(p);
                } else {
                    syncLoop(p);
                }
            }, "bench-producer-" + i);
            workers.add(t);
            t.start();
        }
        for (Thread t : workers) {
            t.join();
        }
        long stoppedAt = System.nanoTime();
        if (mode.equals("async")) {
            permits.tryAcquire(inflight, sendTimeoutMs + 2000L, TimeUnit.MILLISECONDS); // let in-flight sends finish
        }
        progress.close();
        p.shutdown();
        double seconds = (Math.min(stoppedAt, end) - warmEnd) / 1e9;
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("ok", okMeasured.get() > 0);
        m.put("mode", "produce");
        m.put("send_mode", mode);
        m.put("topic", topic);
        m.put("threads", threads);
        m.put("size", size);
        m.put("batch", batch);
        m.put("rate", rate > 0 ? rate : null);
        m.put("inflight", mode.equals("async") ? inflight : null);
        m.put("warmup_s", warmupS);
        m.put("duration_s", durationS);
        m.put("seconds", Bench.round(seconds, 3));
        m.put("sent", okMeasured.get());
        m.put("sent_total", okTotal.get());
        m.put("requests", requestsMeasured.get());
        m.put("errors", errors.total.get());
        m.put("error_kinds", errors.toJson());
        m.put("msgs_per_s", seconds > 0 ? Bench.round(okMeasured.get() / seconds, 1) : null);
        m.put("mb_per_s", seconds > 0 ? Bench.round(okMeasured.get() * (double) size / seconds / 1e6, 3) : null);
        m.put("commitlog_min_offset", maxOffset.get() >= 0 ? minOffset.get() : null);
        m.put("commitlog_max_offset", maxOffset.get() >= 0 ? maxOffset.get() : null);
        m.put("latency_ms", latency.summary());
        m.put("cdf", latency.cdf());
        m.put("per_second", progress.perSecond());
        return m;
    }
}

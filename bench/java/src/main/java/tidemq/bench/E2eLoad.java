package tidemq.bench;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;
import java.util.concurrent.locks.LockSupport;
import org.apache.rocketmq.client.consumer.DefaultMQPushConsumer;
import org.apache.rocketmq.client.consumer.listener.ConsumeConcurrentlyStatus;
import org.apache.rocketmq.client.consumer.listener.MessageListenerConcurrently;
import org.apache.rocketmq.client.producer.DefaultMQProducer;
import org.apache.rocketmq.client.producer.SendCallback;
import org.apache.rocketmq.client.producer.SendResult;
import org.apache.rocketmq.client.producer.SendStatus;
import org.apache.rocketmq.common.consumer.ConsumeFromWhere;
import org.apache.rocketmq.common.message.Message;
import org.apache.rocketmq.common.message.MessageExt;

/**
 * End-to-end latency at a fixed rate: scheduler threads send message k at start + k/rate (async sends, at most
 * --inflight outstanding), the body carrying that scheduled time (System.nanoTime, same JVM), k and the actual send
 * time; a push consumer in the same JVM records receive time minus scheduled time ("latency_ms": a producer or
 * broker that falls behind cannot hide the delay, no coordinated omission) and receive time minus actual send time
 * ("latency_from_send_ms"). The first --warmup-s seconds of messages are not recorded.
 */
final class E2eLoad {
    private final String namesrv;
    private final String topic;
    private final String group;
    private final double rate;
    private final int threads;
    private final int inflight;
    private final int size;
    private final double durationS;
    private final double warmupS;
    private final int queues;
    private final double idleS;
    private final double timeoutS;
    private final String progressStyle;

    private final Histogram latency = new Histogram();
    private final Histogram fromSend = new Histogram();
    private final Histogram sendLatency = new Histogram();
    private final Histogram lag = new Histogram();
    private final AtomicLong next = new AtomicLong();
    private final AtomicLong sent = new AtomicLong();
    private final AtomicLong received = new AtomicLong();
    private final AtomicLong deliveries = new AtomicLong();
    private final Bench.Errors errors = new Bench.Errors();
    private final long planned;
    private final long warmCount;
    private final AtomicLongArray seen;
    private volatile long start;
    private volatile long hardEnd;

    E2eLoad(Opts o, String progressStyle, double timeoutS) {
        this.namesrv = o.req("namesrv");
        this.topic = o.req("topic");
        this.group = o.req("group");
        this.rate = o.dbl("rate", 1000);
        this.threads = o.integer("threads", 2);
        this.inflight = o.integer("inflight", 4096);
        this.size = Math.max(24, o.integer("size", 128));
        this.durationS = o.dbl("duration-s", 10);
        this.warmupS = o.dbl("warmup-s", 2);
        this.queues = o.integer("queues", 8);
        this.idleS = o.dbl("idle-s", 10);
        this.timeoutS = timeoutS;
        this.progressStyle = progressStyle;
        o.checkAllUsed();
        this.planned = (long) (rate * (warmupS + durationS));
        this.warmCount = (long) (rate * warmupS);
        this.seen = new AtomicLongArray((int) (planned / 64 + 1));
    }

    private void onMessage(MessageExt m) {
        long now = System.nanoTime();
        deliveries.incrementAndGet();
        ByteBuffer b = ByteBuffer.wrap(m.getBody());
        long due = b.getLong();
        long k = b.getLong();
        long sentAt = b.getLong();
        if (k < 0 || k >= planned) {
            return;
        }
        int word = (int) (k >>> 6);
        long bit = 1L << (k & 63);
        long old;
        do {
            old = seen.get(word);
            if ((old & bit) != 0) {
                return; // a redelivery
            }
        } while (!seen.compareAndSet(word, old, old | bit));
        received.incrementAndGet();
        if (k >= warmCount) {
            latency.recordNanos(now - due);
            fromSend.recordNanos(now - sentAt);
        }
    }

    private void produceLoop(DefaultMQProducer p, Semaphore permits) {
        long intervalNanosTimes1e3 = (long) (1e12 / rate); // ns per message, * 1000 for sub-ns precision
        while (System.nanoTime() < hardEnd) {
            long k = next.getAndIncrement();
            if (k >= planned) {
                return;
            }
            long due = start + k * intervalNanosTimes1e3 / 1000;
            long wait;
            while ((wait = due - System.nanoTime()) > 0) {
                LockSupport.parkNanos(wait);
            }
            try {
                while (!permits.tryAcquire(100, TimeUnit.MILLISECONDS)) {
                    if (System.nanoTime() >= hardEnd) {
                        return;
                    }
                }
            } catch (InterruptedException e) {
                return;
            }
            byte[] body = Bench.body(size);
            final long t0 = System.nanoTime();
            ByteBuffer.wrap(body).putLong(due).putLong(k).putLong(t0);
            final boolean measured = k >= warmCount;
            if (measured) {
                lag.recordNanos(t0 - due);
            }
            try {
                p.send(new Message(topic, body), new SendCallback() {
                    @Override
                    public void onSuccess(SendResult r) {
                        permits.release();
                        if (r.getSendStatus() == SendStatus.SEND_OK) {
                            sent.incrementAndGet();
                            if (measured) {
                                sendLatency.recordNanos(System.nanoTime() - t0);
                            }
                        } else {
                            errors.add(r.getSendStatus().name(), null);
                        }
                    }

                    @Override
                    public void onException(Throwable e) {
                        permits.release();
                        errors.add(e);
                    }
                });
            } catch (Exception e) {
                permits.release();
                errors.add(e);
            }
        }
    }

    private static int assignedQueues(DefaultMQPushConsumer c) {
        try {
            return c.getDefaultMQPushConsumerImpl().getRebalanceImpl().getProcessQueueTable().size();
        } catch (RuntimeException e) {
            return -1;
        }
    }

    Map<String, Object> run() throws Exception {
        DefaultMQPushConsumer c = new DefaultMQPushConsumer(group);
        Bench.configure(c, namesrv, "consumer");
        c.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET);
        c.subscribe(topic, "*");
        c.registerMessageListener((MessageListenerConcurrently) (msgs, ctx) -> {
            for (MessageExt m : msgs) {
                onMessage(m);
            }
            return ConsumeConcurrentlyStatus.CONSUME_SUCCESS;
        });
        c.start();
        DefaultMQProducer p = new DefaultMQProducer("tidemq_bench_e2e_producer");
        Bench.configure(p, namesrv, "producer");
        p.setDefaultTopicQueueNums(queues);
        p.setCompressMsgBodyOverHowmuch(Integer.MAX_VALUE);
        p.start();
        for (int i = 0; i < 50; i++) { // the route, before the clock starts (the harness creates the topic first)
            try {
                if (!p.fetchPublishMessageQueues(topic).isEmpty()) {
                    break;
                }
            } catch (Exception e) {
                Thread.sleep(100);
            }
        }
        // the consumer owns its queues before the clock starts (rebalance runs every 20 s, or on a heartbeat)
        long rebalanceDeadline = System.nanoTime() + 15_000_000_000L;
        while (assignedQueues(c) >= 0 && assignedQueues(c) < queues && System.nanoTime() < rebalanceDeadline) {
            Thread.sleep(50);
        }
        int owned = assignedQueues(c);
        start = System.nanoTime();
        long deadline = start + (long) (timeoutS * 1e9);
        hardEnd = start + (long) ((warmupS + durationS) * 1e9) + 5_000_000_000L;
        Progress progress = new Progress("e2e " + (long) rate + "/s", received, errors.total,
            () -> String.format("p99 %.2f ms", latency.quantileMs(0.99)), progressStyle, Bench.ERR);
        List<Thread> workers = new ArrayList<>();
        Semaphore permits = new Semaphore(inflight);
        for (int i = 0; i < threads; i++) {
            Thread t = new Thread(() -> produceLoop(p, permits), "bench-e2e-producer-" + i);
            workers.add(t);
            t.start();
        }
        for (Thread t : workers) {
            t.join();
        }
        long producedAt = System.nanoTime();
        permits.tryAcquire(inflight, 10, TimeUnit.SECONDS); // every send answered
        long lastSeen = received.get();
        long lastChange = System.nanoTime();
        String stopReason = "all received";
        while (received.get() < sent.get()) {
            long now = System.nanoTime();
            if (received.get() != lastSeen) {
                lastSeen = received.get();
                lastChange = now;
            }
            if (now - lastChange > idleS * 1e9) {
                stopReason = "idle";
                break;
            }
            if (now > deadline) {
                stopReason = "timeout";
                break;
            }
            Thread.sleep(10);
        }
        progress.close();
        p.shutdown();
        c.shutdown();
        double produceSeconds = (producedAt - start) / 1e9;
        long measuredSent = Math.max(0, sent.get() - warmCount);
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("ok", received.get() > 0 && received.get() >= sent.get());
        m.put("mode", "e2e");
        m.put("topic", topic);
        m.put("rate", rate);
        m.put("threads", threads);
        m.put("inflight", inflight);
        m.put("size", size);
        m.put("warmup_s", warmupS);
        m.put("duration_s", durationS);
        m.put("queues_owned_at_start", owned);
        m.put("planned", planned);
        m.put("sent", sent.get());
        m.put("received", received.get());
        m.put("deliveries", deliveries.get());
        m.put("lost", sent.get() - received.get());
        m.put("errors", errors.total.get());
        m.put("error_kinds", errors.toJson());
        m.put("stop_reason", stopReason);
        m.put("seconds", Bench.round(produceSeconds, 3));
        m.put("achieved_rate", produceSeconds > warmupS
            ? Bench.round(measuredSent / (produceSeconds - warmupS), 1) : null);
        m.put("msgs_per_s", rate);
        m.put("latency_ms", latency.summary());
        m.put("cdf", latency.cdf());
        m.put("latency_from_send_ms", fromSend.summary());
        m.put("send_latency_ms", sendLatency.summary());
        m.put("schedule_lag_ms", lag.summary());
        m.put("per_second", progress.perSecond());
        return m;
    }
}

package tidemq.bench;

import java.util.BitSet;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.rocketmq.client.consumer.DefaultMQPushConsumer;
import org.apache.rocketmq.client.consumer.listener.ConsumeConcurrentlyStatus;
import org.apache.rocketmq.client.consumer.listener.MessageListenerConcurrently;
import org.apache.rocketmq.common.consumer.ConsumeFromWhere;
import org.apache.rocketmq.common.message.MessageExt;

/**
 * A push consumer (new group, from the first offset) draining a backlog until --expect distinct messages
 * (queue id, queue offset) arrived, or nothing arrived for --idle-s, or --timeout-s passed. The rate is distinct
 * messages over the time from the first message to the last.
 */
final class ConsumeLoad {
    private final String namesrv;
    private final String topic;
    private final String group;
    private final long expect;
    private final int consumeThreads;
    private final int pullBatch;
    private final double idleS;
    private final double timeoutS;
    private final String progressStyle;

    private final AtomicLong deliveries = new AtomicLong();
    private final AtomicLong distinct = new AtomicLong();
    private final AtomicLong bytes = new AtomicLong();
    private final AtomicLong firstNanos = new AtomicLong();
    private final AtomicLong lastNanos = new AtomicLong();
    private final Map<Integer, BitSet> seen = new ConcurrentHashMap<>();
    private final Bench.Errors errors = new Bench.Errors();

    ConsumeLoad(Opts o, String progressStyle, double timeoutS) {
        this.namesrv = o.req("namesrv");
        this.topic = o.req("topic");
        this.group = o.req("group");
        this.expect = o.lng("expect", Long.MAX_VALUE);
        this.consumeThreads = o.integer("consume-threads", 20);
        this.pullBatch = o.integer("pull-batch", 32);
        this.idleS = o.dbl("idle-s", 15);
        this.timeoutS = timeoutS;
        this.progressStyle = progressStyle;
        o.checkAllUsed();
    }

    private void onMessage(MessageExt m) {
        long now = System.nanoTime();
        deliveries.incrementAndGet();
        firstNanos.compareAndSet(0, now);
        BitSet bits = seen.computeIfAbsent(m.getQueueId(), q -> new BitSet(1 << 17));
        boolean fresh;
        synchronized (bits) {
            int off = (int) m.getQueueOffset();
            fresh = !bits.get(off);
            bits.set(off);
        }
        if (fresh) {
            distinct.incrementAndGet();
            bytes.addAndGet(m.getBody() == null ? 0 : m.getBody().length);
        }
        lastNanos.set(now);
    }

    Map<String, Object> run() throws Exception {
        DefaultMQPushConsumer c = new DefaultMQPushConsumer(group);
        Bench.configure(c, namesrv, "consumer");
        c.setConsumeFromWhere(ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET);
        c.setConsumeThreadMin(consumeThreads);
        c.setConsumeThreadMax(consumeThreads);
        c.setPullBatchSize(pullBatch);
        c.subscribe(topic, "*");
        c.registerMessageListener((MessageListenerConcurrently) (msgs, ctx) -> {
            for (MessageExt m : msgs) {
                onMessage(m);
            }
            return ConsumeConcurrentlyStatus.CONSUME_SUCCESS;
        });
        long start = System.nanoTime();
        long deadline = start + (long) (timeoutS * 1e9);
        Progress progress = new Progress("consume", distinct, errors.total,
            () -> String.format("%.1f%%", expect == Long.MAX_VALUE ? 0.0 : 100.0 * distinct.get() / expect),
            progressStyle, Bench.ERR);
        c.start();
        String stopReason = "expect";
        while (distinct.get() < expect) {
            long now = System.nanoTime();
            if (now > deadline) {
                stopReason = "timeout";
                break;
            }
            long ref = lastNanos.get() != 0 ? lastNanos.get() : start;
            // before the first message, allow for a rebalance that missed the first heartbeat (the next is 20 s on)
            if (now - ref > idleS * 1e9 && (lastNanos.get() != 0 || now - start > Math.max(idleS, 60) * 1e9)) {
                stopReason = "idle";
                break;
            }
            Thread.sleep(20);
        }
        progress.close();
        c.shutdown();
        long first = firstNanos.get();
        long last = lastNanos.get();
        double seconds = first == 0 ? 0 : (last - first) / 1e9;
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("ok", expect == Long.MAX_VALUE ? distinct.get() > 0 : distinct.get() >= expect);
        m.put("mode", "consume");
        m.put("topic", topic);
        m.put("group", group);
        m.put("consume_threads", consumeThreads);
        m.put("pull_batch", pullBatch);
        m.put("expect", expect == Long.MAX_VALUE ? null : expect);
        m.put("stop_reason", stopReason);
        m.put("received", distinct.get());
        m.put("deliveries", deliveries.get());
        m.put("duplicates", deliveries.get() - distinct.get());
        m.put("time_to_first_s", first == 0 ? null : Bench.round((first - start) / 1e9, 3));
        m.put("seconds", Bench.round(seconds, 3));
        m.put("msgs_per_s", seconds > 0 ? Bench.round(distinct.get() / seconds, 1) : null);
        m.put("mb_per_s", seconds > 0 ? Bench.round(bytes.get() / seconds / 1e6, 3) : null);
        m.put("per_second", progress.perSecond());
        return m;
    }
}

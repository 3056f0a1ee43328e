package tidemq.interop;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.Semaphore;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.rocketmq.client.producer.DefaultMQProducer;
import org.apache.rocketmq.client.producer.MessageQueueSelector;
import org.apache.rocketmq.client.producer.SendCallback;
import org.apache.rocketmq.client.producer.SendResult;
import org.apache.rocketmq.client.producer.SendStatus;
import org.apache.rocketmq.common.message.Message;
import org.apache.rocketmq.common.message.MessageQueue;

/**
 * produce --namesrv A --topic T --count N --mode sync|async|oneway|batch [--tag X] [--keys K] [--prop k=v ...]
 * [--body TEXT | --body-b64 B64 | --body-size B] [--group G] [--threads T] [--inflight I] [--batch-size S]
 * [--queue-id Q | --shard-keys K] [--delay-level L[,L...]] [--send-timeout-ms MS (default 10000)] [--retries R]
 * [--compress-over BYTES] [--transaction commit|rollback|unknown-then-commit|unknown-then-rollback
 * [--await-checks C] [--check-linger-ms MS]] [--quiet]
 *
 * <p>"{i}" in --body, --keys, --tag and --prop values is replaced by the message index (0-based). One "sent" line per
 * message (batch: per message of the batch; oneway: none), then a "summary" line. Exit 1 if any send failed.
 *
 * <p>--shard-keys K: message i carries the sharding key "key-(i % K)" and the sequence number i / K (user properties
 * "shardKey" and "seq") and is sent through a MessageQueueSelector that maps the key to a queue (sync and async
 * modes): each key's messages go to one queue; with --mode sync and one thread, in sending order. --delay-level with a list: message i gets the
 * (i % n)-th level. --transaction: a TransactionMQProducer instead, see {@link TxProduce}.
 */
final class Produce {
    private final Args args;
    private final String topic;
    private final int count;
    private final String mode;
    private final String tag;
    private final String keys;
    private final List<String> props;
    private final byte[] fixedBody;
    private final String bodyTemplate;
    private final boolean quiet;
    private final int queueId;
    private final int[] delayLevels;
    private final int shardKeys;
    private final AtomicLong ok = new AtomicLong();
    private final AtomicLong failed = new AtomicLong();

    Produce(Args args) {
        this.args = args;
        this.topic = args.req("topic");
        this.count = args.integer("count", 1);
        this.mode = args.str("mode", "sync");
        this.tag = args.str("tag", null);
        this.keys = args.str("keys", null);
        this.props = args.all("prop");
        this.quiet = args.bool("quiet", false);
        this.queueId = args.integer("queue-id", -1);
        this.delayLevels = levels(args.str("delay-level", "0"));
        this.shardKeys = args.integer("shard-keys", 0);
        if (shardKeys > 0 && queueId >= 0) {
            throw new Args.UsageException("--shard-keys and --queue-id exclude each other");
        }
        String b64 = args.str("body-b64", null);
        String text = args.str("body", null);
        int size = args.integer("body-size", -1);
        if (b64 != null) {
            fixedBody = Base64.getDecoder().decode(b64);
            bodyTemplate = null;
        } else if (text != null) {
            fixedBody = null;
            bodyTemplate = text;
        } else if (size >= 0) {
            byte[] b = new byte[size];
            for (int i = 0; i < size; i++) {
                b[i] = (byte) ('a' + (i % 26));
            }
            fixedBody = b;
            bodyTemplate = null;
        } else {
            fixedBody = null;
            bodyTemplate = "tidemq message {i}";
        }
    }

    private static int[] levels(String text) {
        String[] parts = text.split(",");
        int[] out = new int[parts.length];
        for (int k = 0; k < parts.length; k++) {
            try {
                out[k] = Integer.parseInt(parts[k].trim());
            } catch (NumberFormatException e) {
                throw new Args.UsageException("--delay-level wants levels like 3 or 1,2,3, got " + text);
            }
        }
        return out;
    }

    /** The sharding key of message i with --shard-keys (null without). */
    String shardKey(int i) {
        return shardKeys > 0 ? "key-" + (i % shardKeys) : null;
    }

    private static String subst(String s, int i) {
        return s == null ? null : s.replace("{i}", Integer.toString(i));
    }

    Message message(int i) {
        byte[] body = fixedBody != null ? fixedBody : subst(bodyTemplate, i).getBytes(StandardCharsets.UTF_8);
        Message m = new Message(topic, body);
        if (tag != null) {
            m.setTags(subst(tag, i));
        }
        if (keys != null) {
            m.setKeys(subst(keys, i));
        }
        for (String p : props) {
            int eq = p.indexOf('=');
            if (eq <= 0) {
                throw new Args.UsageException("--prop wants k=v, got " + p);
            }
            m.putUserProperty(p.substring(0, eq), subst(p.substring(eq + 1), i));
        }
        int delayLevel = delayLevels[i % delayLevels.length];
        if (delayLevel > 0) {
            m.setDelayTimeLevel(delayLevel);
        }
        if (shardKeys > 0) {
            m.putUserProperty("shardKey", shardKey(i));
            m.putUserProperty("seq", Integer.toString(i / shardKeys));
        }
        return m;
    }

    private static final MessageQueueSelector BY_INDEX = new MessageQueueSelector() {
        @Override
        public MessageQueue select(List<MessageQueue> mqs, Message msg, Object arg) {
            return mqs.get(((Integer) arg) % mqs.size());
        }
    };

    /** A sharding key to a queue, the same way for every send of the run (the usual hash-modulo selector). */
    private static final MessageQueueSelector BY_KEY = new MessageQueueSelector() {
        @Override
        public MessageQueue select(List<MessageQueue> mqs, Message msg, Object arg) {
            return mqs.get(Math.floorMod(arg.hashCode(), mqs.size()));
        }
    };

    void report(int index, SendResult r) {
        report(index, r, null, null, null);
    }

    /** Counts and prints a send; a transactional one also carries its local state and transaction id. */
    void report(int index, SendResult r, String localTransactionState, String transactionId, String txMode) {
        if (r.getSendStatus() == SendStatus.SEND_OK) {
            ok.incrementAndGet();
        } else {
            failed.incrementAndGet();
        }
        if (!quiet) {
            Map<String, Object> o = sent(index, r, r.getMsgId(), r.getOffsetMsgId(), r.getQueueOffset());
            if (localTransactionState != null) {
                o.put("localTransactionState", localTransactionState);
                o.put("transactionId", transactionId);
                o.put("txMode", txMode);
            }
            if (shardKeys > 0) {
                o.put("shardKey", shardKey(index));
                o.put("seq", index / shardKeys);
            }
            Out.emit(o);
        }
    }

    static Map<String, Object> sent(int index, SendResult r, String msgId, String offsetMsgId, long offset) {
        Map<String, Object> o = Out.obj("sent");
        o.put("index", index);
        o.put("msgId", msgId);
        o.put("offsetMsgId", offsetMsgId);
        o.put("topic", r.getMessageQueue().getTopic());
        o.put("brokerName", r.getMessageQueue().getBrokerName());
        o.put("queueId", r.getMessageQueue().getQueueId());
        o.put("queueOffset", offset);
        o.put("status", r.getSendStatus().name());
        o.put("regionId", r.getRegionId());
        o.put("traceOn", r.isTraceOn());
        return o;
    }

    void error(int index, Throwable t) {
        failed.incrementAndGet();
        Map<String, Object> o = Out.obj("send_error");
        o.put("index", index);
        o.put("error", Out.describe(t));
        Out.emit(o);
        Out.log("send %d failed: %s", index, Out.describe(t));
    }

    int count() {
        return count;
    }

    boolean quiet() {
        return quiet;
    }

    long okCount() {
        return ok.get();
    }

    long failedCount() {
        return failed.get();
    }

    int run() throws Exception {
        String transaction = args.str("transaction", null);
        if (transaction != null) {
            return new TxProduce(this, args, transaction).run();
        }
        DefaultMQProducer producer = new DefaultMQProducer(args.str("group", "tidemq_driver_producer"));
        Clients.configure(producer, args);
        producer.setSendMsgTimeout(args.integer("send-timeout-ms", 10000)); // not 3 s: a loaded 2-core CI box can take that for a first send (route + connect + JIT)
        producer.setRetryTimesWhenSendFailed(args.integer("retries", 2));
        producer.setRetryTimesWhenSendAsyncFailed(args.integer("retries", 2));
        producer.setCompressMsgBodyOverHowmuch(args.integer("compress-over", 4096));
        int threads = args.integer("threads", 1);
        int inflight = args.integer("inflight", 256);
        int batchSize = args.integer("batch-size", 16);
        args.checkAllUsed();
        if (!"sync".equals(mode) && !"async".equals(mode) && !"oneway".equals(mode) && !"batch".equals(mode)) {
            throw new Args.UsageException("--mode wants sync|async|oneway|batch, got " + mode);
        }
        if (shardKeys > 0 && !"sync".equals(mode) && !"async".equals(mode)) {
            throw new Args.UsageException("--shard-keys works with --mode sync or async");
        }

        producer.start();
        long t0 = System.nanoTime();
        try {
            if ("sync".equals(mode)) {
                runSync(producer, threads);
            } else if ("async".equals(mode)) {
                runAsync(producer, inflight);
            } else if ("oneway".equals(mode)) {
                for (int i = 0; i < count; i++) {
                    try {
                        if (queueId >= 0) {
                            producer.sendOneway(message(i), BY_INDEX, queueId);
                        } else {
                            producer.sendOneway(message(i));
                        }
                        ok.incrementAndGet();
                    } catch (Exception e) {
                        error(i, e);
                    }
                }
            } else {
                runBatch(producer, batchSize);
            }
        } finally {
            long elapsedNs = System.nanoTime() - t0;
            Map<String, Object> s = Out.obj("summary");
            s.put("command", "produce");
            s.put("mode", mode);
            s.put("clientVersion", Clients.version());
            s.put("requested", count);
            s.put("sent", ok.get());
            s.put("failed", failed.get());
            s.put("elapsedMs", elapsedNs / 1e6);
            s.put("msgPerSec", elapsedNs > 0 ? ok.get() / (elapsedNs / 1e9) : 0.0);
            Out.emit(s);
            Driver.shutdownQuietly(producer::shutdown);
        }
        return failed.get() == 0 && ok.get() == count ? 0 : 1;
    }

    private void runSync(final DefaultMQProducer producer, int threads) throws InterruptedException {
        final AtomicLong next = new AtomicLong();
        List<Thread> workers = new ArrayList<Thread>();
        for (int t = 0; t < threads; t++) {
            Thread w = new Thread(() -> {
                for (int i = (int) next.getAndIncrement(); i < count; i = (int) next.getAndIncrement()) {
                    try {
                        SendResult r = queueId >= 0
                            ? producer.send(message(i), BY_INDEX, queueId)
                            : shardKeys > 0
                            ? producer.send(message(i), BY_KEY, shardKey(i))
                            : producer.send(message(i));
                        report(i, r);
                    } catch (Exception e) {
                        error(i, e);
                    }
                }
            }, "produce-" + t);
            w.start();
            workers.add(w);
        }
        for (Thread w : workers) {
            w.join();
        }
    }

    private void runAsync(DefaultMQProducer producer, int inflight) throws Exception {
        final Semaphore window = new Semaphore(inflight);
        final CountDownLatch done = new CountDownLatch(count);
        for (int i = 0; i < count; i++) {
            final int index = i;
            window.acquire();
            SendCallback cb = new SendCallback() {
                @Override
                public void onSuccess(SendResult r) {
                    report(index, r);
                    window.release();
                    done.countDown();
                }

                @Override
                public void onException(Throwable e) {
                    error(index, e);
                    window.release();
                    done.countDown();
                }
            };
            try {
                if (queueId >= 0) {
                    producer.send(message(i), BY_INDEX, queueId, cb);
                } else if (shardKeys > 0) {
                    producer.send(message(i), BY_KEY, shardKey(i), cb);
                } else {
                    producer.send(message(i), cb);
                }
            } catch (Exception e) {
                cb.onException(e);
            }
        }
        if (!done.await(Driver.remainingMs(), TimeUnit.MILLISECONDS)) {
            Out.log("async sends still pending at the deadline: %d", done.getCount());
        }
    }

    private void runBatch(DefaultMQProducer producer, int batchSize) {
        for (int start = 0; start < count; start += batchSize) {
            int end = Math.min(count, start + batchSize);
            List<Message> batch = new ArrayList<Message>(end - start);
            for (int i = start; i < end; i++) {
                batch.add(message(i));
            }
            try {
                SendResult r = queueId >= 0
                    ? producer.send(batch, pick(producer, queueId))
                    : producer.send(batch);
                // A batch result joins the ids of its messages with ','; queueOffset is the first message's.
                String[] ids = r.getMsgId() == null ? new String[0] : r.getMsgId().split(",");
                String[] offIds = r.getOffsetMsgId() == null ? new String[0] : r.getOffsetMsgId().split(",");
                boolean good = r.getSendStatus() == SendStatus.SEND_OK;
                for (int k = 0; k < end - start; k++) {
                    if (good) {
                        ok.incrementAndGet();
                    } else {
                        failed.incrementAndGet();
                    }
                    if (!quiet) {
                        Out.emit(sent(start + k, r, k < ids.length ? ids[k] : null,
                            k < offIds.length ? offIds[k] : null, r.getQueueOffset() + k));
                    }
                }
            } catch (Exception e) {
                for (int i = start; i < end; i++) {
                    error(i, e);
                }
            }
        }
    }

    private MessageQueue pick(DefaultMQProducer producer, int q) throws Exception {
        List<MessageQueue> mqs = producer.fetchPublishMessageQueues(topic);
        return mqs.get(q % mqs.size());
    }
}

package tidemq.interop;

import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.rocketmq.client.producer.LocalTransactionState;
import org.apache.rocketmq.client.producer.SendStatus;
import org.apache.rocketmq.client.producer.TransactionListener;
import org.apache.rocketmq.client.producer.TransactionMQProducer;
import org.apache.rocketmq.client.producer.TransactionSendResult;
import org.apache.rocketmq.common.message.Message;
import org.apache.rocketmq.common.message.MessageExt;

/**
 * produce --transaction MODE[,MODE...] [--await-checks C] [--check-linger-ms MS] plus the message options of
 * {@link Produce} (--mode is sync: sendMessageInTransaction). A MODE is commit, rollback, unknown-then-commit or
 * unknown-then-rollback; with a list, message i gets the (i % n)-th, and carries it as the user property "txMode".
 *
 * <p>A TransactionMQProducer whose TransactionListener answers executeLocalTransaction with the first part of the
 * message's mode (COMMIT_MESSAGE, ROLLBACK_MESSAGE or UNKNOW) and checkLocalTransaction, the broker's check-back,
 * with the second ("commit", "rollback": the same answer again, should a check come). One "sent" line per message
 * (with "localTransactionState" and "transactionId"), one "check" line per check-back received (transactionId,
 * topic, checkTimes, answer, ...), then a "summary" line.
 *
 * <p>After the sends the producer stays up until check-backs arrived for C distinct transactions (default: every
 * unknown-then-* message), then --check-linger-ms more (default 0) to show further checks; exit 3 if the deadline
 * passed first.
 */
final class TxProduce {
    static final String MODE_PROPERTY = "txMode";

    private final Produce produce;
    private final Args args;
    private final String[] modes;
    private final Set<String> checked = ConcurrentHashMap.newKeySet();
    private final AtomicLong checks = new AtomicLong();

    TxProduce(Produce produce, Args args, String modeList) {
        this.produce = produce;
        this.args = args;
        this.modes = modeList.split(",");
        for (String mode : modes) {
            onCheck(mode);
        }
    }

    private static LocalTransactionState first(String mode) {
        switch (mode) {
            case "commit":
                return LocalTransactionState.COMMIT_MESSAGE;
            case "rollback":
                return LocalTransactionState.ROLLBACK_MESSAGE;
            default:
                return LocalTransactionState.UNKNOW;
        }
    }

    private static LocalTransactionState onCheck(String mode) {
        switch (mode) {
            case "commit":
            case "unknown-then-commit":
                return LocalTransactionState.COMMIT_MESSAGE;
            case "rollback":
            case "unknown-then-rollback":
                return LocalTransactionState.ROLLBACK_MESSAGE;
            default:
                throw new Args.UsageException(
                    "--transaction wants commit|rollback|unknown-then-commit|unknown-then-rollback, got " + mode);
        }
    }

    private String modeOf(int i) {
        return modes[i % modes.length];
    }

    int run() throws Exception {
        TransactionMQProducer producer = new TransactionMQProducer(args.str("group", "tidemq_driver_tx_producer"));
        Clients.configure(producer, args);
        producer.setSendMsgTimeout(args.integer("send-timeout-ms", 10000)); // not 3 s: a loaded 2-core CI box can take that for a first send (route + connect + JIT)
        producer.setRetryTimesWhenSendFailed(args.integer("retries", 2));
        producer.setCompressMsgBodyOverHowmuch(args.integer("compress-over", 4096));
        String mode = args.str("mode", "sync");
        int count = produce.count();
        int unknown = 0;
        for (int i = 0; i < count; i++) {
            unknown += first(modeOf(i)) == LocalTransactionState.UNKNOW ? 1 : 0;
        }
        int awaitChecks = args.integer("await-checks", unknown);
        long lingerMs = args.lng("check-linger-ms", 0);
        args.checkAllUsed();
        if (!"sync".equals(mode)) {
            throw new Args.UsageException("--transaction sends with sendMessageInTransaction: --mode sync only");
        }
        producer.setTransactionListener(new TransactionListener() {
            @Override
            public LocalTransactionState executeLocalTransaction(Message msg, Object arg) {
                return first(modeOf((Integer) arg));
            }

            @Override
            public LocalTransactionState checkLocalTransaction(MessageExt msg) {
                String mode = msg.getUserProperty(MODE_PROPERTY);
                LocalTransactionState answer = mode == null ? LocalTransactionState.UNKNOW : onCheck(mode);
                // msgId is the broker's offset id here (the check body decodes as a plain MessageExt, as with
                // Apache's broker); the producer's id is the transactionId (UNIQ_KEY).
                Map<String, Object> o = Out.obj("check");
                o.put("msgId", msg.getMsgId());
                o.put("transactionId", msg.getTransactionId());
                o.put("topic", msg.getTopic());
                o.put("tags", msg.getTags());
                o.put("keys", msg.getKeys());
                o.put("body", new String(msg.getBody() == null ? new byte[0] : msg.getBody(),
                    java.nio.charset.StandardCharsets.UTF_8));
                o.put("queueOffset", msg.getQueueOffset());
                o.put("commitLogOffset", msg.getCommitLogOffset());
                o.put("checkTimes", msg.getProperty("TRANSACTION_CHECK_TIMES"));
                o.put("properties", new java.util.TreeMap<String, String>(msg.getProperties()));
                o.put("txMode", mode);
                o.put("answer", answer.name());
                o.put("recvTimestamp", System.currentTimeMillis());
                Out.emit(o);
                synchronized (checked) {
                    checks.incrementAndGet();
                    checked.add(String.valueOf(msg.getTransactionId()));
                    checked.notifyAll();
                }
                return answer;
            }
        });
        producer.start();
        long t0 = System.nanoTime();
        boolean met = true;
        try {
            for (int i = 0; i < count; i++) {
                try {
                    Message m = produce.message(i);
                    m.putUserProperty(MODE_PROPERTY, modeOf(i));
                    TransactionSendResult r = producer.sendMessageInTransaction(m, i);
                    if (r.getSendStatus() != SendStatus.SEND_OK) {
                        produce.error(i, new IllegalStateException("send status " + r.getSendStatus()));
                        continue;
                    }
                    produce.report(i, r, r.getLocalTransactionState().name(), r.getTransactionId(), modeOf(i));
                } catch (Exception e) {
                    produce.error(i, e);
                }
            }
            synchronized (checked) {
                while (checked.size() < awaitChecks) {
                    long left = Driver.remainingMs();
                    if (left <= 0) {
                        met = false;
                        break;
                    }
                    checked.wait(Math.min(left, 200));
                }
            }
            long linger = Math.min(lingerMs, Driver.remainingMs());
            if (met && linger > 0) {
                Thread.sleep(linger);
            }
        } finally {
            long elapsedNs = System.nanoTime() - t0;
            Map<String, Object> s = Out.obj("summary");
            s.put("command", "produce");
            s.put("mode", "transaction");
            s.put("clientVersion", Clients.version());
            s.put("requested", count);
            s.put("sent", produce.okCount());
            s.put("failed", produce.failedCount());
            s.put("checks", checks.get());
            s.put("checkedMessages", checked.size());
            s.put("timedOut", !met);
            s.put("elapsedMs", elapsedNs / 1e6);
            Out.emit(s);
            Driver.shutdownQuietly(producer::shutdown);
        }
        if (produce.failedCount() != 0 || produce.okCount() != count) {
            return Driver.EXIT_FAILED;
        }
        return met ? 0 : Driver.EXIT_TIMEOUT;
    }
}

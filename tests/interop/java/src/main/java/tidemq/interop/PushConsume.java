package tidemq.interop;

import java.util.List;
import org.apache.rocketmq.client.consumer.DefaultMQPushConsumer;
import org.apache.rocketmq.client.consumer.listener.ConsumeConcurrentlyContext;
import org.apache.rocketmq.client.consumer.listener.ConsumeConcurrentlyStatus;
import org.apache.rocketmq.client.consumer.listener.ConsumeOrderlyContext;
import org.apache.rocketmq.client.consumer.listener.ConsumeOrderlyStatus;
import org.apache.rocketmq.client.consumer.listener.MessageListenerConcurrently;
import org.apache.rocketmq.client.consumer.listener.MessageListenerOrderly;
import org.apache.rocketmq.common.message.MessageExt;

/**
 * push-consume --namesrv A --topic T --group G [--expr "TagA || TagB" | --sql EXPR] [--model CLUSTERING|BROADCASTING]
 * --expect N --timeout-s S [--orderly] [--from first|last|timestamp] [--reconsume-times R] [--linger-ms MS]
 * [--consume-threads N] [--batch-max N] [--pull-batch N] [--count-deliveries] [--quiet]
 * [--fail-prop k=v] [--max-reconsume-times M] [--retry-delay-level L] [--suspend-ms MS]
 *
 * <p>DefaultMQPushConsumer. One "received" line per delivery, then a "summary" line. Exits 0 once N distinct
 * messages (with --count-deliveries: N deliveries, redeliveries included) arrived (after --linger-ms), 3 if the
 * deadline passed first. --reconsume-times R answers RECONSUME_LATER
 * (concurrent) / SUSPEND_CURRENT_QUEUE_A_MOMENT (orderly) until a message's reconsumeTimes reaches R; with
 * --fail-prop k=v only messages whose property k is v are failed so. --max-reconsume-times M is
 * setMaxReconsumeTimes (then DLQ); --retry-delay-level L is the concurrent context's delayLevelWhenNextConsume (0:
 * the broker's 3 + reconsumeTimes); --suspend-ms is the orderly pause after SUSPEND_CURRENT_QUEUE_A_MOMENT.
 */
final class PushConsume {
    private final Args args;

    PushConsume(Args args) {
        this.args = args;
    }

    int run() throws Exception {
        String topic = args.req("topic");
        DefaultMQPushConsumer consumer = new DefaultMQPushConsumer(args.req("group"));
        Clients.configure(consumer, args);
        consumer.subscribe(topic, Clients.selector(args));
        Clients.setMessageModel(consumer, args.str("model", "CLUSTERING"));
        consumer.setConsumeFromWhere(Clients.fromWhere(args));
        int threads = args.integer("consume-threads", 0);
        if (threads > 0) {
            consumer.setConsumeThreadMin(threads);
            consumer.setConsumeThreadMax(threads);
        }
        consumer.setConsumeMessageBatchMaxSize(args.integer("batch-max", 1));
        consumer.setPullBatchSize(args.integer("pull-batch", 32));
        final int reconsumeTimes = args.integer("reconsume-times", 0);
        String failProp = args.str("fail-prop", null);
        final String failKey;
        final String failValue;
        if (failProp != null) {
            int eq = failProp.indexOf('=');
            if (eq <= 0) {
                throw new Args.UsageException("--fail-prop wants k=v, got " + failProp);
            }
            failKey = failProp.substring(0, eq);
            failValue = failProp.substring(eq + 1);
        } else {
            failKey = null;
            failValue = null;
        }
        int maxReconsume = args.integer("max-reconsume-times", Integer.MIN_VALUE);
        if (maxReconsume != Integer.MIN_VALUE) {
            consumer.setMaxReconsumeTimes(maxReconsume);
        }
        final int retryDelayLevel = args.integer("retry-delay-level", 0);
        long suspendMs = args.lng("suspend-ms", -1);
        if (suspendMs >= 0) {
            consumer.setSuspendCurrentQueueTimeMillis(suspendMs);
        }
        boolean orderly = args.bool("orderly", false);
        long lingerMs = args.lng("linger-ms", 0);
        final Receiver receiver = new Receiver(orderly ? "push-orderly" : "push", args);
        args.checkAllUsed();

        if (orderly) {
            consumer.registerMessageListener(new MessageListenerOrderly() {
                @Override
                public ConsumeOrderlyStatus consumeMessage(List<MessageExt> msgs, ConsumeOrderlyContext ctx) {
                    boolean retry = false;
                    for (MessageExt m : msgs) {
                        receiver.onMessage(m);
                        retry |= m.getReconsumeTimes() < reconsumeTimes
                            && (failKey == null || failValue.equals(m.getProperty(failKey)));
                    }
                    return retry ? ConsumeOrderlyStatus.SUSPEND_CURRENT_QUEUE_A_MOMENT : ConsumeOrderlyStatus.SUCCESS;
                }
            });
        } else {
            consumer.registerMessageListener(new MessageListenerConcurrently() {
                @Override
                public ConsumeConcurrentlyStatus consumeMessage(List<MessageExt> msgs, ConsumeConcurrentlyContext c) {
                    boolean retry = false;
                    for (MessageExt m : msgs) {
                        receiver.onMessage(m);
                        retry |= m.getReconsumeTimes() < reconsumeTimes
                            && (failKey == null || failValue.equals(m.getProperty(failKey)));
                    }
                    if (retry && retryDelayLevel != 0) {
                        c.setDelayLevelWhenNextConsume(retryDelayLevel);
                    }
                    return retry ? ConsumeConcurrentlyStatus.RECONSUME_LATER
                        : ConsumeConcurrentlyStatus.CONSUME_SUCCESS;
                }
            });
        }
        consumer.start();
        boolean met = false;
        try {
            met = receiver.await(lingerMs);
        } finally {
            Driver.shutdownQuietly(consumer::shutdown);
            Out.emit(receiver.summary("push-consume", met));
        }
        return met ? 0 : Driver.EXIT_TIMEOUT;
    }
}

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
 *
 * <p>DefaultMQPushConsumer. One "received" line per delivery, then a "summary" line. Exits 0 once N distinct
 * messages (with --count-deliveries: N deliveries, redeliveries included) arrived (after --linger-ms), 3 if the
 * deadline passed first. --reconsume-times R answers RECONSUME_LATER
 * (concurrent) / SUSPEND_CURRENT_QUEUE_A_MOMENT (orderly) until a message's reconsumeTimes reaches R.
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
                        retry |= m.getReconsumeTimes() < reconsumeTimes;
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
                        retry |= m.getReconsumeTimes() < reconsumeTimes;
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

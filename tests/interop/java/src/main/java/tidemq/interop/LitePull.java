package tidemq.interop;

import org.apache.rocketmq.client.consumer.DefaultLitePullConsumer;
import org.apache.rocketmq.common.message.MessageExt;

/**
 * lite-pull --namesrv A --topic T --group G [--expr E | --sql S] [--model M] --expect N --timeout-s S
 * [--from first|last|timestamp] [--linger-ms MS] [--pull-batch N] [--quiet]
 *
 * <p>DefaultLitePullConsumer in subscribe mode with auto-commit; same output as push-consume.
 */
final class LitePull {
    private final Args args;

    LitePull(Args args) {
        this.args = args;
    }

    int run() throws Exception {
        String topic = args.req("topic");
        DefaultLitePullConsumer consumer = new DefaultLitePullConsumer(args.req("group"));
        Clients.configure(consumer, args);
        consumer.subscribe(topic, Clients.selector(args));
        Clients.setMessageModel(consumer, args.str("model", "CLUSTERING"));
        consumer.setConsumeFromWhere(Clients.fromWhere(args));
        consumer.setAutoCommit(true);
        consumer.setPullBatchSize(args.integer("pull-batch", 32));
        long lingerMs = args.lng("linger-ms", 0);
        int expect = args.integer("expect", 0);
        Receiver receiver = new Receiver("lite-pull", args);
        args.checkAllUsed();

        consumer.start();
        boolean met = true;
        try {
            while (expect > 0 && receiver.progress() < expect) {
                if (Driver.remainingMs() <= 0) {
                    met = false;
                    break;
                }
                for (MessageExt m : consumer.poll(Math.max(1, Math.min(1000, Driver.remainingMs())))) {
                    receiver.onMessage(m);
                }
            }
            // --linger-ms: keep polling for extra (or, with --expect 0, for any) messages; bounded by the deadline
            long lingerEnd = System.currentTimeMillis() + (met ? Math.min(lingerMs, Driver.remainingMs()) : 0);
            while (System.currentTimeMillis() < lingerEnd) {
                for (MessageExt m : consumer.poll(Math.max(1, lingerEnd - System.currentTimeMillis()))) {
                    receiver.onMessage(m);
                }
            }
        } finally {
            Driver.shutdownQuietly(consumer::shutdown);
            Out.emit(receiver.summary("lite-pull", met));
        }
        return met ? 0 : Driver.EXIT_TIMEOUT;
    }
}

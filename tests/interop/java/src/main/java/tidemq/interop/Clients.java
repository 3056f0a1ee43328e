package tidemq.interop;

import java.lang.reflect.Method;
import java.net.InetSocketAddress;
import java.net.SocketAddress;
import java.nio.charset.StandardCharsets;
import java.util.Map;
import java.util.TreeMap;
import org.apache.rocketmq.client.ClientConfig;
import org.apache.rocketmq.client.consumer.MessageSelector;
import org.apache.rocketmq.common.MixAll;
import org.apache.rocketmq.common.consumer.ConsumeFromWhere;
import org.apache.rocketmq.common.message.MessageExt;

/** What every sub-command shares: client settings, version-neutral helpers, MessageExt to JSON. */
final class Clients {
    private Clients() {
    }

    /** Options every client sub-command accepts. */
    static void configure(ClientConfig cfg, Args args) {
        cfg.setNamesrvAddr(args.req("namesrv"));
        // The client's own address, used only in its clientId (ip@instance); the default is the first non-loopback
        // interface. Loopback keeps clientIds stable and meaningful on a test machine.
        cfg.setClientIP(args.str("client-ip", "127.0.0.1"));
        cfg.setInstanceName(args.str("instance", "tidemq-driver-" + pid()));
        String vip = args.str("vip-channel", null);
        if (vip != null) {
            cfg.setVipChannelEnabled(Boolean.parseBoolean(vip));
        }
        String ns = args.str("namespace", null);
        if (ns != null) {
            cfg.setNamespace(ns);
        }
    }

    static String pid() {
        String name = java.lang.management.ManagementFactory.getRuntimeMXBean().getName();
        int at = name.indexOf('@');
        return at > 0 ? name.substring(0, at) : name;
    }

    static ConsumeFromWhere fromWhere(Args args) {
        String v = args.str("from", "first");
        if ("first".equalsIgnoreCase(v)) {
            return ConsumeFromWhere.CONSUME_FROM_FIRST_OFFSET;
        } else if ("last".equalsIgnoreCase(v)) {
            return ConsumeFromWhere.CONSUME_FROM_LAST_OFFSET;
        } else if ("timestamp".equalsIgnoreCase(v)) {
            return ConsumeFromWhere.CONSUME_FROM_TIMESTAMP;
        }
        throw new Args.UsageException("--from wants first|last|timestamp, got " + v);
    }

    /** --expr "TagA || TagB" (tag expression, default *) or --sql "a > 5" (SQL92: needs enablePropertyFilter). */
    static MessageSelector selector(Args args) {
        String sql = args.str("sql", null);
        String expr = args.str("expr", "*");
        return sql != null ? MessageSelector.bySql(sql) : MessageSelector.byTag(expr);
    }

    /**
     * Calls setMessageModel with CLUSTERING or BROADCASTING by reflection: the MessageModel enum moved from
     * org.apache.rocketmq.common.protocol.heartbeat (4.x) to org.apache.rocketmq.remoting.protocol.heartbeat (5.x).
     */
    @SuppressWarnings({"unchecked", "rawtypes"})
    static void setMessageModel(Object consumer, String model) {
        for (Method m : consumer.getClass().getMethods()) {
            if (m.getName().equals("setMessageModel") && m.getParameterTypes().length == 1
                && m.getParameterTypes()[0].isEnum()) {
                Class<? extends Enum> type = (Class<? extends Enum>) m.getParameterTypes()[0];
                Object value;
                try {
                    value = Enum.valueOf(type, model.toUpperCase());
                } catch (IllegalArgumentException e) {
                    throw new Args.UsageException("--model wants CLUSTERING|BROADCASTING, got " + model);
                }
                try {
                    m.invoke(consumer, value);
                } catch (ReflectiveOperationException e) {
                    throw new IllegalStateException("setMessageModel failed", e);
                }
                return;
            }
        }
        throw new IllegalStateException("no setMessageModel on " + consumer.getClass());
    }

    static String version() {
        try {
            Class<?> c = Class.forName("org.apache.rocketmq.common.MQVersion");
            Object current = c.getField("CURRENT_VERSION").get(null);
            Method name = c.getMethod("getVersionDesc", int.class);
            return String.valueOf(name.invoke(null, ((Number) current).intValue()));
        } catch (ReflectiveOperationException e) {
            return "unknown";
        }
    }

    static String host(SocketAddress addr) {
        if (addr instanceof InetSocketAddress) {
            InetSocketAddress in = (InetSocketAddress) addr;
            String ip = in.getAddress() != null ? in.getAddress().getHostAddress() : in.getHostString();
            return ip + ":" + in.getPort();
        }
        return String.valueOf(addr);
    }

    static Map<String, Object> received(MessageExt m, String consumer) {
        Map<String, Object> o = Out.obj("received");
        o.put("consumer", consumer);
        o.put("recvTimestamp", System.currentTimeMillis());
        o.put("msgId", m.getMsgId());
        o.put("offsetMsgId", safeOffsetMsgId(m));
        o.put("topic", m.getTopic());
        o.put("tags", m.getTags());
        o.put("keys", m.getKeys());
        o.put("properties", new TreeMap<String, String>(m.getProperties()));
        byte[] body = m.getBody() == null ? new byte[0] : m.getBody();
        o.put("body", new String(body, StandardCharsets.UTF_8));
        o.put("bodyB64", java.util.Base64.getEncoder().encodeToString(body));
        o.put("bodyLen", body.length);
        o.put("brokerName", m.getBrokerName());
        o.put("queueId", m.getQueueId());
        o.put("queueOffset", m.getQueueOffset());
        o.put("commitLogOffset", m.getCommitLogOffset());
        o.put("reconsumeTimes", m.getReconsumeTimes());
        o.put("bornHost", host(m.getBornHost()));
        o.put("storeHost", host(m.getStoreHost()));
        o.put("bornTimestamp", m.getBornTimestamp());
        o.put("storeTimestamp", m.getStoreTimestamp());
        o.put("sysFlag", m.getSysFlag());
        o.put("bodyCRC", m.getBodyCRC());
        o.put("storeSize", m.getStoreSize());
        o.put("flag", m.getFlag());
        o.put("delayTimeLevel", m.getDelayTimeLevel());
        o.put("retryTopic", m.getTopic() != null && m.getTopic().startsWith(MixAll.RETRY_GROUP_TOPIC_PREFIX));
        return o;
    }

    private static String safeOffsetMsgId(MessageExt m) {
        try {
            return m.getClass().getMethod("getOffsetMsgId").invoke(m).toString();
        } catch (ReflectiveOperationException | RuntimeException e) {
            return null;
        }
    }
}

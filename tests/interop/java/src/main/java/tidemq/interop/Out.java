package tidemq.interop;

import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Output: one JSON object per line on stdout (machine-readable results only), human logs on stderr.
 *
 * <p>Every JSON line has a "type" field: "sent", "received", "summary", "error", ... System.out is redirected to
 * stderr at start-up so nothing else (a library's println) can corrupt the JSON stream.
 */
final class Out {
    private static final PrintStream JSON = open(FileDescriptor.out, false);
    private static final PrintStream LOG = open(FileDescriptor.err, true);

    private Out() {
    }

    private static PrintStream open(FileDescriptor fd, boolean autoFlush) {
        try {
            return new PrintStream(new FileOutputStream(fd), autoFlush, StandardCharsets.UTF_8.name());
        } catch (java.io.UnsupportedEncodingException e) {
            throw new IllegalStateException(e);
        }
    }

    static void install() {
        System.setOut(LOG);
    }

    /** The throwable and its causes, "a; caused by: b; ...": the client's own message hides the broker's answer. */
    static String describe(Throwable t) {
        StringBuilder text = new StringBuilder(String.valueOf(t));
        Throwable cause = t == null ? null : t.getCause();
        for (int depth = 0; cause != null && depth < 5; depth++, cause = cause.getCause()) {
            text.append("; caused by: ").append(cause);
        }
        return text.toString();
    }

    static Map<String, Object> obj(String type) {
        Map<String, Object> m = new LinkedHashMap<String, Object>();
        m.put("type", type);
        return m;
    }

    static void emit(Map<String, Object> obj) {
        String line = Json.write(obj);
        synchronized (JSON) {
            JSON.print(line);
            JSON.print('\n');
            JSON.flush();
        }
    }

    static void log(String fmt, Object... args) {
        LOG.println("[driver] " + String.format(fmt, args));
    }
}

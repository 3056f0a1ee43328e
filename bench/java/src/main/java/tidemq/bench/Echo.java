package tidemq.bench;

import java.io.DataInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;

/**
 * Raw loopback limits, no broker. "rtt": --threads client threads, each with its own TCP connection, ping-pong
 * --size bytes (round trips per second in total: the ceiling of that many synchronous senders). "bulk": one
 * connection streaming 256 KiB writes one way (MB/s).
 */
final class Echo {
    private final String kind;
    private final int size;
    private final int threads;
    private final double durationS;

    Echo(Opts o) {
        this.kind = o.str("kind", "rtt");
        this.size = o.integer("size", 128);
        this.threads = kind.equals("rtt") ? o.integer("threads", 1) : 1;
        this.durationS = o.dbl("duration-s", 3);
        o.checkAllUsed();
    }

    Map<String, Object> run() throws Exception {
        try (ServerSocket server = new ServerSocket(0, threads + 8, InetAddress.getLoopbackAddress())) {
            AtomicLong serverBytes = new AtomicLong();
            AtomicLong serverNanos = new AtomicLong();
            Thread acceptor = new Thread(() -> accept(server, serverBytes, serverNanos), "echo-accept");
            acceptor.setDaemon(true);
            acceptor.start();
            Map<String, Object> m = new LinkedHashMap<>();
            m.put("mode", "echo");
            m.put("kind", kind);
            if (kind.equals("rtt")) {
                rtt(server.getLocalPort(), m);
            } else {
                try (Socket s = new Socket(InetAddress.getLoopbackAddress(), server.getLocalPort())) {
                    s.setTcpNoDelay(true);
                    OutputStream out = s.getOutputStream();
                    byte[] chunk = new byte[256 * 1024];
                    long end = System.nanoTime() + (long) (durationS * 1e9);
                    while (System.nanoTime() < end) {
                        out.write(chunk);
                    }
                    s.shutdownOutput();
                    s.getInputStream().read(); // the server closes after reading everything
                }
                double secs = serverNanos.get() / 1e9;
                m.put("bytes", serverBytes.get());
                m.put("seconds", Bench.round(secs, 3));
                m.put("mb_per_s", secs > 0 ? Bench.round(serverBytes.get() / secs / 1e6, 1) : null);
            }
            m.put("ok", true);
            return m;
        }
    }

    private void rtt(int port, Map<String, Object> m) throws Exception {
        Histogram h = new Histogram();
        AtomicLong total = new AtomicLong();
        long warm = System.nanoTime() + 500_000_000L;
        long t0 = warm;
        long end = t0 + (long) (durationS * 1e9);
        List<Thread> clients = new ArrayList<>();
        for (int i = 0; i < threads; i++) {
            Thread t = new Thread(() -> {
                try (Socket s = new Socket(InetAddress.getLoopbackAddress(), port)) {
                    s.setTcpNoDelay(true);
                    OutputStream out = s.getOutputStream();
                    DataInputStream in = new DataInputStream(s.getInputStream());
                    byte[] buf = new byte[size];
                    long now = System.nanoTime();
                    while (now < end) {
                        out.write(buf);
                        in.readFully(buf);
                        long after = System.nanoTime();
                        if (now >= warm) {
                            h.recordNanos(after - now);
                            total.incrementAndGet();
                        }
                        now = after;
                    }
                } catch (IOException e) {
                    Bench.ERR.println("[echo] " + e);
                }
            }, "echo-client-" + i);
            clients.add(t);
            t.start();
        }
        for (Thread t : clients) {
            t.join();
        }
        double secs = (end - t0) / 1e9;
        m.put("size", size);
        m.put("threads", threads);
        m.put("round_trips", total.get());
        m.put("seconds", Bench.round(secs, 3));
        m.put("round_trips_per_s", Bench.round(total.get() / secs, 1));
        m.put("latency_ms", h.summary());
    }

    private void accept(ServerSocket server, AtomicLong bytes, AtomicLong nanos) {
        try {
            while (true) {
                Socket c = server.accept();
                Thread t = new Thread(() -> serve(c, bytes, nanos), "echo-server");
                t.setDaemon(true);
                t.start();
            }
        } catch (IOException e) {
            // the server socket closed: the run is over
        }
    }

    private void serve(Socket c, AtomicLong bytes, AtomicLong nanos) {
        try (c) {
            c.setTcpNoDelay(true);
            InputStream in = c.getInputStream();
            OutputStream out = c.getOutputStream();
            if (kind.equals("rtt")) {
                DataInputStream din = new DataInputStream(in);
                byte[] buf = new byte[size];
                while (true) {
                    din.readFully(buf);
                    out.write(buf);
                }
            }
            byte[] buf = new byte[256 * 1024];
            long first = 0;
            int r;
            while ((r = in.read(buf)) > 0) {
                if (first == 0) {
                    first = System.nanoTime();
                }
                bytes.addAndGet(r);
            }
            nanos.set(System.nanoTime() - first);
        } catch (IOException e) {
            // the client closed: the run is over
        }
    }
}

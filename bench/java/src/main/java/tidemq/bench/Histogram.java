package tidemq.bench;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicLongArray;

/**
 * A lock-free latency histogram in microseconds, log-linear like HdrHistogram with ~0.2% precision: exact below
 * 1024 us, then 512 buckets per power of two (up to 2^49 us). Safe to record from many threads.
 */
final class Histogram {
    private static final int LINEAR = 1024;
    private static final int SUB = 512;
    private static final int OCTAVES = 40;
    /** Quantiles written as the CDF (latency at each), dense in the tail. */
    static final double[] CDF_QUANTILES = {
        0.001, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.925, 0.95, 0.96, 0.97, 0.98,
        0.99, 0.995, 0.997, 0.999, 0.9995, 0.9999, 1.0,
    };

    private final AtomicLongArray counts = new AtomicLongArray(LINEAR + OCTAVES * SUB);
    private final AtomicLong total = new AtomicLong();
    private final AtomicLong sumUs = new AtomicLong();
    private final AtomicLong maxUs = new AtomicLong();

    static int index(long v) {
        if (v < LINEAR) {
            return v < 0 ? 0 : (int) v;
        }
        int msb = 63 - Long.numberOfLeadingZeros(v);
        int shift = msb - 9;
        int idx = LINEAR + (shift - 1) * SUB + (int) (v >>> shift) - SUB;
        return Math.min(idx, LINEAR + OCTAVES * SUB - 1);
    }

    /** The middle of bucket idx, in microseconds. */
    static double value(int idx) {
        if (idx < LINEAR) {
            return idx;
        }
        int octave = (idx - LINEAR) / SUB;
        int sub = (idx - LINEAR) % SUB;
        int shift = octave + 1;
        return (double) (((long) (sub + SUB)) << shift) + ((1L << shift) - 1) / 2.0;
    }

    void recordNanos(long nanos) {
        long us = Math.max(0, nanos / 1000);
        counts.incrementAndGet(index(us));
        total.incrementAndGet();
        sumUs.addAndGet(us);
        long m;
        while (us > (m = maxUs.get()) && !maxUs.compareAndSet(m, us)) {
            // retry
        }
    }

    long count() {
        return total.get();
    }

    /** Latency at quantile q (0..1) in milliseconds; NaN when empty. */
    double quantileMs(double q) {
        long n = total.get();
        if (n == 0) {
            return Double.NaN;
        }
        if (q >= 1.0) {
            return maxUs.get() / 1000.0;
        }
        long rank = Math.max(1, (long) Math.ceil(q * n));
        long seen = 0;
        for (int i = 0; i < counts.length(); i++) {
            seen += counts.get(i);
            if (seen >= rank) {
                return Math.min(value(i), maxUs.get()) / 1000.0;
            }
        }
        return maxUs.get() / 1000.0;
    }

    private static double round3(double v) {
        return Double.isNaN(v) ? v : Math.round(v * 1000.0) / 1000.0;
    }

    /** {"count", "mean", "p50", "p90", "p99", "p999", "p9999", "max"} in ms. */
    Map<String, Object> summary() {
        Map<String, Object> m = new LinkedHashMap<>();
        long n = total.get();
        m.put("count", n);
        m.put("mean", n == 0 ? null : round3(sumUs.get() / 1000.0 / n));
        m.put("p50", round3(quantileMs(0.5)));
        m.put("p90", round3(quantileMs(0.9)));
        m.put("p99", round3(quantileMs(0.99)));
        m.put("p999", round3(quantileMs(0.999)));
        m.put("p9999", round3(quantileMs(0.9999)));
        m.put("max", n == 0 ? null : round3(maxUs.get() / 1000.0));
        return m;
    }

    /** [[quantile, ms], ...] for a CDF plot. */
    List<Object> cdf() {
        List<Object> out = new ArrayList<>();
        if (total.get() == 0) {
            return out;
        }
        for (double q : CDF_QUANTILES) {
            List<Object> point = new ArrayList<>();
            point.add(q);
            point.add(round3(quantileMs(q)));
            out.add(point);
        }
        return out;
    }
}

package dev.securestore;

import java.util.Arrays;

/**
 * Used by {@code securestore-bench}: gets one item over the socket in a loop for a warm-up, then
 * for a measured span, and prints {@code p50_ns p99_ns ops_per_sec}.
 *
 * <p>Usage: {@code BenchMain SOCKET PROJECT KEY WARMUP_MS LENGTH_MS}
 */
public final class BenchMain {
    private BenchMain() {}

    public static void main(String[] args) {
        long warmupNanos = Long.parseLong(args[3]) * 1_000_000L;
        long lengthNanos = Long.parseLong(args[4]) * 1_000_000L;
        try (SecureStore store = SecureStore.connect(args[0], args[1])) {
            long start = System.nanoTime() + warmupNanos;
            long end = start + lengthNanos;
            long[] samples = new long[1 << 16];
            int count = 0;
            while (System.nanoTime() < end) {
                long began = System.nanoTime();
                if (store.getItem(args[2]) == null) {
                    throw new IllegalStateException("the item is missing");
                }
                long now = System.nanoTime();
                if (began >= start && now <= end) {
                    if (count == samples.length) {
                        samples = Arrays.copyOf(samples, count * 2);
                    }
                    samples[count++] = now - began;
                }
            }
            if (count == 0) {
                throw new IllegalStateException("no get completed in the window");
            }
            long[] sorted = Arrays.copyOf(samples, count);
            Arrays.sort(sorted);
            long p50 = sorted[Math.max(0, (int) Math.ceil(0.50 * count) - 1)];
            long p99 = sorted[Math.max(0, (int) Math.ceil(0.99 * count) - 1)];
            double opsPerSec = count / (lengthNanos / 1e9);
            System.out.println(p50 + " " + p99 + " " + opsPerSec);
        }
    }
}

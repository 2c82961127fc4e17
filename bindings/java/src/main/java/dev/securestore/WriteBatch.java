package dev.securestore;

import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * Operations for {@link SecureStore#writeBatch}: applied in order, all or nothing. Each
 * conditional operation sees the operations before it. Not thread-safe; build it on one thread.
 */
public final class WriteBatch {
    private static final int SET = 0;
    private static final int DELETE = 1;
    private static final int NO_CONDITION = 0;
    private static final int ABSENT = 1;
    private static final int EQUALS = 2;

    private final List<Integer> kinds = new ArrayList<>();
    private final List<String> keys = new ArrayList<>();
    private final List<String> values = new ArrayList<>();
    private final List<String> services = new ArrayList<>();
    private final List<Integer> accessible = new ArrayList<>();
    private final List<Integer> conditions = new ArrayList<>();
    private final List<String> expected = new ArrayList<>();

    private WriteBatch add(int kind, String key, String value, SecureStoreOptions options, int condition,
            String expectedValue) {
        Objects.requireNonNull(options, "options");
        kinds.add(kind);
        keys.add(key);
        values.add(value);
        services.add(options.keychainService());
        accessible.add(options.keychainAccessible().value());
        conditions.add(condition);
        expected.add(expectedValue);
        return this;
    }

    /** Stores {@code value} under {@code key}. */
    public WriteBatch set(String key, String value, SecureStoreOptions options) {
        return add(SET, key, value, options, NO_CONDITION, null);
    }

    /** Stores {@code value} only if the current value is {@code expected} ({@code null}: only if absent). */
    public WriteBatch setIf(String key, String expected, String value, SecureStoreOptions options) {
        return add(SET, key, value, options, expected == null ? ABSENT : EQUALS, expected);
    }

    /** Deletes the item under {@code key}. */
    public WriteBatch delete(String key, SecureStoreOptions options) {
        return add(DELETE, key, null, options, NO_CONDITION, null);
    }

    /** Deletes the item only if its current value is {@code expected} ({@code null}: only if absent). */
    public WriteBatch deleteIf(String key, String expected, SecureStoreOptions options) {
        return add(DELETE, key, null, options, expected == null ? ABSENT : EQUALS, expected);
    }

    /** How many operations were added. */
    public int size() {
        return kinds.size();
    }

    void send(long session) {
        int n = kinds.size();
        int[] k = new int[n];
        int[] a = new int[n];
        int[] c = new int[n];
        for (int i = 0; i < n; i++) {
            k[i] = kinds.get(i);
            a[i] = accessible.get(i);
            c[i] = conditions.get(i);
        }
        Native.sessionWriteBatch(session, k, keys.toArray(new String[0]), values.toArray(new String[0]),
                services.toArray(new String[0]), a, c, expected.toArray(new String[0]));
    }
}

package dev.securestore;

import java.nio.charset.StandardCharsets;
import java.util.Objects;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.Executor;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Supplier;

/**
 * A connection to the securestore daemon, bound to one project: Expo SecureStore's
 * {@code getItem}, {@code setItem} and {@code deleteItem}.
 *
 * <p>Thread-safe: one instance may be used from many threads at once; the calls share the
 * connection. The plain methods block until the daemon answers (a write returns once it is
 * durable), so on Android call them off the main thread, or use the {@code ...Async} forms, which
 * run on a small pool of daemon threads (or on an {@link Executor} you pass).
 *
 * <p>The {@code ...Async} calls of one instance take effect in the order they were made, as Expo's
 * unawaited {@code setItemAsync} then {@code getItemAsync} expect: each starts once the one made
 * before it has finished (succeeded or failed). Blocking calls made at the same time from other
 * threads are concurrent with them, with no order between the two.
 *
 * <p>Values cross JNI as Java {@link String}s, which cannot be wiped and stay in the heap until the
 * garbage collector reuses their memory. {@link #getItemBytes} and {@link #setItemBytes} take and
 * return UTF-8 {@code byte[]}s instead, which the caller can overwrite with zeros when done.
 */
public final class SecureStore implements AutoCloseable {
    private static final ExecutorService IO = Executors.newCachedThreadPool(new DaemonThreads());

    private final NativeHandle handle;
    private final String project;
    /** The async call made last; the next one starts when it has finished. Guarded by {@code this}. */
    private CompletableFuture<?> lastAsync = CompletableFuture.completedFuture(null);

    SecureStore(long handle, String project) {
        this.handle = new NativeHandle(handle, "SecureStore");
        this.project = project;
    }

    /**
     * Connects to the daemon at {@code socketPath} and binds the connection to {@code project}.
     *
     * @throws SecureStoreException.InvalidProject for a bad project id
     * @throws SecureStoreException.Unreachable when no daemon answers at the socket
     * @throws SecureStoreException.Refused when the project is registered (a token is needed) or
     *     the daemon does not serve this caller
     */
    public static SecureStore connect(String socketPath, String project) {
        return connect(socketPath, project, null);
    }

    /** As {@link #connect(String, String)}, presenting the project's access token. */
    public static SecureStore connect(String socketPath, String project, String token) {
        return connect(socketPath, project, token, 0);
    }

    /**
     * As {@link #connect(String, String, String)}, with the longest wait for connecting and for
     * each call ({@code 0} keeps the default, 10 s).
     */
    public static SecureStore connect(String socketPath, String project, String token, long timeoutMillis) {
        Native.ensureLoaded();
        long handle = Native.sessionConnect(socketPath, project, token, timeoutMillis);
        return new SecureStore(handle, project);
    }

    /** The project this connection is bound to. */
    public String project() {
        return project;
    }

    /** The daemon's value limit in bytes (UTF-8), as announced when connecting. */
    public int maxValueBytes() {
        return handle.use(Native::sessionMaxValueBytes);
    }

    /** {@code getItem} in the default service: the value, or {@code null} when there is none. */
    public String getItem(String key) {
        return getItem(key, SecureStoreOptions.DEFAULT);
    }

    /**
     * {@code getItem}: the value under {@code key} in {@code options.keychainService()}, or
     * {@code null} when there is none.
     *
     * @throws SecureStoreException.InvalidKey for a key Expo would refuse (Expo's message)
     * @throws SecureStoreException.InvalidService for a bad service name
     */
    public String getItem(String key, SecureStoreOptions options) {
        Objects.requireNonNull(options, "options");
        return handle.use(h -> Native.sessionGet(h, key, options.keychainService()));
    }

    /** {@code getItem}, returning the value's UTF-8 bytes, which the caller can wipe; {@code null} when absent. */
    public byte[] getItemBytes(String key, SecureStoreOptions options) {
        Objects.requireNonNull(options, "options");
        return handle.use(h -> Native.sessionGetBytes(h, key, options.keychainService()));
    }

    /** {@code setItem} in the default service, {@link KeychainAccessible#WHEN_UNLOCKED}. */
    public void setItem(String key, String value) {
        setItem(key, value, SecureStoreOptions.DEFAULT);
    }

    /**
     * {@code setItem}: stores {@code value}; returns once the daemon has made it durable.
     *
     * @throws SecureStoreException.ValueTooLarge when the value's UTF-8 form is over
     *     {@link #maxValueBytes()}
     * @throws SecureStoreException with {@link SecureStoreException.Code#INVALID_ARGUMENT} when the
     *     value holds an unpaired surrogate, which has no UTF-8 form (it is never stored altered)
     */
    public void setItem(String key, String value, SecureStoreOptions options) {
        Objects.requireNonNull(options, "options");
        if (value != null && !isWellFormed(value)) {
            throw new SecureStoreException(SecureStoreException.Code.INVALID_ARGUMENT,
                    "the value holds an unpaired surrogate, so it has no UTF-8 form");
        }
        handle.use(h -> {
            Native.sessionSet(h, key, value, options.keychainService(), options.keychainAccessible().value());
            return null;
        });
    }

    /** Whether {@code text} has no unpaired surrogate (JNI would otherwise replace it silently). */
    private static boolean isWellFormed(String text) {
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i);
            if (Character.isHighSurrogate(c)) {
                if (i + 1 == text.length() || !Character.isLowSurrogate(text.charAt(i + 1))) {
                    return false;
                }
                i++;
            } else if (Character.isLowSurrogate(c)) {
                return false;
            }
        }
        return true;
    }

    /** {@code setItem} with the value as UTF-8 bytes; the caller may wipe the array afterwards. */
    public void setItemBytes(String key, byte[] utf8Value, SecureStoreOptions options) {
        Objects.requireNonNull(options, "options");
        handle.use(h -> {
            Native.sessionSetBytes(
                    h, key, utf8Value, options.keychainService(), options.keychainAccessible().value());
            return null;
        });
    }

    /** {@code deleteItem} in the default service. */
    public void deleteItem(String key) {
        deleteItem(key, SecureStoreOptions.DEFAULT);
    }

    /** {@code deleteItem}: removes the item; removing a missing item succeeds. */
    public void deleteItem(String key, SecureStoreOptions options) {
        Objects.requireNonNull(options, "options");
        handle.use(h -> {
            Native.sessionDelete(h, key, options.keychainService());
            return null;
        });
    }

    /**
     * Whether an item is stored under {@code key} in {@code options.keychainService()}; the value
     * never leaves the daemon.
     *
     * @throws SecureStoreException.Unsupported when the daemon is too old for this call
     */
    public boolean contains(String key, SecureStoreOptions options) {
        Objects.requireNonNull(options, "options");
        return handle.use(h -> Native.sessionContains(h, key, options.keychainService()));
    }

    /** The keys of {@code options.keychainService()}, sorted. */
    public java.util.List<String> listKeys(SecureStoreOptions options) {
        Objects.requireNonNull(options, "options");
        return names(handle.use(h -> Native.sessionList(h, options.keychainService(), false)));
    }

    /** The services that hold at least one item, sorted. */
    public java.util.List<String> listServices() {
        return names(handle.use(h -> Native.sessionList(h, null, true)));
    }

    /** Deletes every item of {@code options.keychainService()}; returns how many there were. */
    public long clear(SecureStoreOptions options) {
        Objects.requireNonNull(options, "options");
        return handle.use(h -> Native.sessionClear(h, options.keychainService(), false));
    }

    /** Deletes every item of every service of this project; returns how many there were. */
    public long clearAll() {
        return handle.use(h -> Native.sessionClear(h, null, true));
    }

    /**
     * Stores {@code value} only if the current value equals {@code expected} ({@code null}: only if
     * there is no item).
     *
     * @throws SecureStoreException.Conflict when it does not; nothing was changed
     */
    public void setItemIf(String key, String expected, String value, SecureStoreOptions options) {
        Objects.requireNonNull(options, "options");
        handle.use(h -> {
            Native.sessionSetIf(
                    h, key, expected, value, options.keychainService(), options.keychainAccessible().value());
            return null;
        });
    }

    /**
     * Deletes the item only if its current value equals {@code expected}.
     *
     * @throws SecureStoreException.Conflict when it does not; nothing was changed
     */
    public void deleteItemIf(String key, String expected, SecureStoreOptions options) {
        Objects.requireNonNull(options, "options");
        handle.use(h -> {
            Native.sessionDeleteIf(h, key, expected, options.keychainService());
            return null;
        });
    }

    /**
     * Starts watching this project's changes in {@code service} (every service when null) to
     * {@code key} (every key when null); returns the watcher's id on this connection. It sees every
     * change made durable from now on, in commit order, names only; it ends with {@link #close()}.
     */
    public long watch(String service, String key) {
        return handle.use(h -> Native.sessionWatch(h, service, key));
    }

    /** The watcher's next events, waiting up to {@code waitMillis} (at most 30 s) for one. */
    public ChangeEvent.Batch pollEvents(long watcher, long waitMillis) {
        return ChangeEvent.parse(handle.use(h -> Native.sessionPollEvents(h, watcher, waitMillis)));
    }

    /** Ends a watcher. */
    public void unwatch(long watcher) {
        handle.use(h -> {
            Native.sessionUnwatch(h, watcher);
            return null;
        });
    }

    /**
     * Applies every operation of {@code batch}, in order, all or nothing, in one durable
     * transaction (at most 128 operations whose bytes fit {@link #maxValueBytes()}).
     *
     * @throws SecureStoreException.Conflict when a condition fails (the message names the
     *     operation's index); nothing was applied
     */
    public void writeBatch(WriteBatch batch) {
        Objects.requireNonNull(batch, "batch");
        handle.use(h -> {
            batch.send(h);
            return null;
        });
    }

    /**
     * A backup of this project's items (of {@code service}, or of every service when null), sealed
     * under {@code passphrase} with Argon2id and XChaCha20-Poly1305: the same file
     * {@code securestore export} writes, for {@link #importBackup} or {@code securestore import}.
     * Items of a {@code *_THIS_DEVICE_ONLY} class never leave the device and are not included.
     * Deriving the key takes a moment and 64 MiB of memory: call it off the main thread.
     *
     * <p>{@code passphrase} is copied and the native copies are wiped; wipe your array
     * ({@code Arrays.fill(passphrase, '\0')}) when you no longer need it.
     *
     * @throws SecureStoreException.Locked when an item to export is unavailable in the device's
     *     state (export while unlocked)
     * @throws SecureStoreException with {@link SecureStoreException.Code#INVALID_ARGUMENT} for an
     *     empty passphrase
     */
    public byte[] exportBackup(String service, char[] passphrase) {
        Objects.requireNonNull(passphrase, "passphrase");
        return handle.use(h -> Native.sessionExportBackup(h, service, passphrase));
    }

    /**
     * Restores a backup made by {@link #exportBackup} or {@code securestore export} into this
     * project, which may be on another device with another master key. The whole file is checked
     * first: a wrong passphrase, a damaged or altered file, a newer format, or an item that must
     * never leave its device imports nothing. An item that exists is kept unless {@code replace}.
     *
     * @throws SecureStoreException.BadBackup when the file cannot be opened; nothing was imported
     * @throws SecureStoreException.Locked when the device's state does not allow an item's class
     */
    public ImportReport importBackup(byte[] file, char[] passphrase, boolean replace) {
        Objects.requireNonNull(file, "file");
        Objects.requireNonNull(passphrase, "passphrase");
        long[] counts = handle.use(h -> Native.sessionImportBackup(h, file, passphrase, replace));
        return new ImportReport(counts[0], counts[1], counts[2]);
    }

    /** Names joined by the native side with {@code \n}, which no key or service holds. */
    private static java.util.List<String> names(String joined) {
        if (joined == null || joined.isEmpty()) {
            return java.util.Collections.emptyList();
        }
        return java.util.Collections.unmodifiableList(java.util.Arrays.asList(joined.split("\n", -1)));
    }

    /** {@code getItemAsync}, on the bindings' own threads. */
    public CompletableFuture<String> getItemAsync(String key, SecureStoreOptions options) {
        return getItemAsync(key, options, IO);
    }

    /** {@code getItemAsync}, on {@code executor}. */
    public CompletableFuture<String> getItemAsync(String key, SecureStoreOptions options, Executor executor) {
        return async(() -> getItem(key, options), executor);
    }

    /** {@code setItemAsync}, on the bindings' own threads. */
    public CompletableFuture<Void> setItemAsync(String key, String value, SecureStoreOptions options) {
        return setItemAsync(key, value, options, IO);
    }

    /** {@code setItemAsync}, on {@code executor}. */
    public CompletableFuture<Void> setItemAsync(
            String key, String value, SecureStoreOptions options, Executor executor) {
        return async(() -> {
            setItem(key, value, options);
            return null;
        }, executor);
    }

    /** {@code deleteItemAsync}, on the bindings' own threads. */
    public CompletableFuture<Void> deleteItemAsync(String key, SecureStoreOptions options) {
        return deleteItemAsync(key, options, IO);
    }

    /** {@code deleteItemAsync}, on {@code executor}. */
    public CompletableFuture<Void> deleteItemAsync(String key, SecureStoreOptions options, Executor executor) {
        return async(() -> {
            deleteItem(key, options);
            return null;
        }, executor);
    }

    private <T> CompletableFuture<T> async(Supplier<T> call, Executor executor) {
        Objects.requireNonNull(executor, "executor");
        synchronized (this) {
            // Chained, not merely submitted: pool threads would otherwise reach the connection in
            // whatever order they happen to run.
            CompletableFuture<T> next = lastAsync
                    .handle((ignoredResult, ignoredError) -> null)
                    .thenApplyAsync(ignored -> call.get(), executor);
            lastAsync = next;
            return next;
        }
    }

    /** Whether {@link #close()} has not been called yet. */
    public boolean isOpen() {
        return handle.isOpen();
    }

    /** Closes the connection, after calls under way return. Later calls throw {@link IllegalStateException}. */
    @Override
    public void close() {
        handle.destroy(Native::sessionDestroy);
    }

    /** Daemon threads, so pending async calls never keep the JVM alive. */
    private static final class DaemonThreads implements java.util.concurrent.ThreadFactory {
        private final AtomicInteger count = new AtomicInteger();

        @Override
        public Thread newThread(Runnable task) {
            Thread thread = new Thread(task, "securestore-io-" + count.incrementAndGet());
            thread.setDaemon(true);
            return thread;
        }
    }

    /** UTF-8 bytes of {@code text}, for callers building a value for {@link #setItemBytes}. */
    public static byte[] utf8(String text) {
        return text.getBytes(StandardCharsets.UTF_8);
    }
}

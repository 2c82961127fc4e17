package dev.securestore;

/**
 * Every native method of the bindings, in one class, so the library is loaded once and the JNI
 * surface is in one place (the Rust side is {@code crates/jni/src/lib.rs}). Not for callers: use
 * {@link SecureStore} and {@link SecureStoreHost}.
 *
 * <p>The library is {@code libsecurestore_jni.so}, found on {@code java.library.path} (an Android
 * app ships it in its APK's {@code lib/<abi>/}); the system property {@code securestore.library}
 * names an exact file instead.
 *
 * <p>Handles are opaque {@code long}s; each has exactly one destroy function. Failures arrive as
 * {@link SecureStoreException}s thrown from the native side.
 */
final class Native {
    static {
        String path = System.getProperty("securestore.library");
        if (path != null && !path.isEmpty()) {
            System.load(path);
        } else {
            System.loadLibrary("securestore_jni");
        }
    }

    private Native() {}

    /** Forces the library to load (and fail early, with the JVM's own error, if it cannot). */
    static void ensureLoaded() {}

    static native long sessionConnect(String socketPath, String project, String token, long timeoutMillis);

    static native long sessionConnectInProcess(long host, String project, String token, long timeoutMillis);

    static native String sessionGet(long session, String key, String service);

    static native byte[] sessionGetBytes(long session, String key, String service);

    static native void sessionSet(long session, String key, String value, String service, int accessible);

    static native void sessionSetBytes(long session, String key, byte[] utf8Value, String service, int accessible);

    static native void sessionDelete(long session, String key, String service);

    static native boolean sessionContains(long session, String key, String service);

    static native String sessionList(long session, String service, boolean services);

    static native long sessionClear(long session, String service, boolean allServices);

    static native void sessionSetIf(
            long session, String key, String expected, String value, String service, int accessible);

    static native void sessionDeleteIf(long session, String key, String expected, String service);

    static native long sessionWatch(long session, String service, String key);

    static native String sessionPollEvents(long session, long watcher, long waitMillis);

    static native void sessionUnwatch(long session, long watcher);

    static native void sessionWriteBatch(long session, int[] kinds, String[] keys, String[] values,
            String[] services, int[] accessible, int[] conditions, String[] expected);

    static native int sessionMaxValueBytes(long session);

    static native void sessionDestroy(long session);

    static native long hostStart(String socketPath, String dataDir, String keyFile, String backend,
            int maxValueBytes, String policy, String lockState, boolean passcodeSet);

    /**
     * Signal 0 reads the device state, 1 lock, 2 unlock (with {@code secret}, or null), 3 passcode
     * set, 4 passcode removed; returns the state after it: lock number (0 before the first unlock,
     * 1 locked, 2 unlocked) times two, plus 1 when a passcode is set.
     */
    static native int hostDevice(long host, int signal, byte[] secret);

    static native byte[] sessionExportBackup(long session, String service, char[] passphrase);

    /** Returns {@code {added, replaced, skipped}}. */
    static native long[] sessionImportBackup(long session, byte[] file, char[] passphrase, boolean replace);

    static native String hostRegisterProject(long host, String project);

    static native void hostStop(long host);
}

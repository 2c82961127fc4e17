package dev.securestore;

import java.util.Objects;

/**
 * The securestore daemon, run inside this JVM process on threads of its own: it serves its Unix
 * socket (other processes connect with {@link SecureStore#connect}) and this process without a
 * socket ({@link #connect(String)}), through the same service and the same rules: each connection
 * bound to one project, tokens checked.
 *
 * <p>On Android, host it in one dedicated process (a {@code Service} with
 * {@code android:process=":securestore"}) and put the socket in the app's private files folder; see
 * {@code docs/android.md}.
 *
 * <p>One host per socket and per data folder, in this or any process: starting a second one is a
 * {@link SecureStoreException.HostFailed}. {@link #stop()} lets requests under way finish, closes
 * the store and removes the socket.
 */
public final class SecureStoreHost implements AutoCloseable {
    /** Where values are stored. */
    public enum Backend {
        /** Encrypted SQLite with a master key file (the default). */
        SQLITE("sqlite"),
        /**
         * Keys in the Java KeyStore of this JVM: {@code AndroidKeyStore} on Android, a PKCS12 file
         * in the data folder on a desktop JVM. Values are sealed with them and kept in SQLite.
         */
        ANDROID("android");

        private final String name;

        Backend(String name) {
            this.name = name;
        }
    }

    /** Which projects clients may open. */
    public enum Policy {
        /** Any unregistered project; registered ones only with their token. */
        OPEN("open"),
        /** Only registered projects, with their token. */
        STRICT("strict");

        private final String name;

        Policy(String name) {
            this.name = name;
        }
    }

    /** Where the host serves and keeps its data. */
    public static final class Config {
        private final String socketPath;
        private final String dataDir;
        private final String keyFile;
        private Backend backend = Backend.SQLITE;
        private int maxValueBytes;
        private Policy policy = Policy.OPEN;
        private DeviceStatus device = new DeviceStatus(DeviceStatus.LockState.UNLOCKED, true);

        /**
         * @param socketPath the Unix socket (its folder is created 0700, and must be private)
         * @param dataDir the data folder (database, registry, lock, desktop keystore)
         * @param keyFile the master key file of the SQLite backend, kept apart from the data folder
         */
        public Config(String socketPath, String dataDir, String keyFile) {
            this.socketPath = Objects.requireNonNull(socketPath, "socketPath");
            this.dataDir = Objects.requireNonNull(dataDir, "dataDir");
            this.keyFile = Objects.requireNonNull(keyFile, "keyFile");
        }

        /** The backend (default {@link Backend#SQLITE}). */
        public Config backend(Backend backend) {
            this.backend = Objects.requireNonNull(backend, "backend");
            return this;
        }

        /** The value limit in bytes; 0 keeps the daemon's default (64 KiB). */
        public Config maxValueBytes(int maxValueBytes) {
            this.maxValueBytes = maxValueBytes;
            return this;
        }

        /**
         * The device state the host starts in. The default, unlocked with a passcode, keeps every
         * class available, for a host that never signals. An app that forwards its lock callbacks
         * ({@link #unlock}, {@link #lock} and the others) starts from
         * {@code new DeviceStatus(LockState.BEFORE_FIRST_UNLOCK, false)}, or what it knows, so no
         * {@code WHEN_UNLOCKED} item is readable before the user has unlocked the device.
         */
        public Config deviceState(DeviceStatus device) {
            this.device = Objects.requireNonNull(device, "device");
            return this;
        }

        /** Which projects clients may open (default {@link Policy#OPEN}). */
        public Config policy(Policy policy) {
            this.policy = Objects.requireNonNull(policy, "policy");
            return this;
        }
    }

    private final NativeHandle handle;
    private final String socketPath;

    private SecureStoreHost(long handle, String socketPath) {
        this.handle = new NativeHandle(handle, "SecureStoreHost");
        this.socketPath = socketPath;
    }

    /**
     * Starts the daemon and returns once it serves. Blocks while the store opens: not on Android's
     * main thread.
     *
     * @throws SecureStoreException.HostFailed when the socket or data folder is in use or the store
     *     will not open
     */
    public static SecureStoreHost start(Config config) {
        Objects.requireNonNull(config, "config");
        Native.ensureLoaded();
        long handle = Native.hostStart(
                config.socketPath,
                config.dataDir,
                config.keyFile,
                config.backend.name,
                config.maxValueBytes,
                config.policy.name,
                config.device.lock().wireName(),
                config.device.passcodeSet());
        return new SecureStoreHost(handle, config.socketPath);
    }

    /** The socket this host serves. */
    public String socketPath() {
        return socketPath;
    }

    /** A connection to this host from this process, without a socket, bound to {@code project}. */
    public SecureStore connect(String project) {
        return connect(project, null);
    }

    /** As {@link #connect(String)}, presenting the project's access token. */
    public SecureStore connect(String project, String token) {
        long session = handle.use(h -> Native.sessionConnectInProcess(h, project, token, 0));
        return new SecureStore(session, project);
    }

    /**
     * Registers {@code project} and returns its access token, shown this once; from then on every
     * connection to the project must present it.
     */
    public String registerProject(String project) {
        return handle.use(h -> Native.hostRegisterProject(h, project));
    }

    /**
     * The device locked (call it from the app's lock callback): {@code WHEN_UNLOCKED*} items answer
     * {@link SecureStoreException.Locked} until {@link #unlock}. Taken in order with the writes
     * before and after it. Returns the state it led to.
     */
    public DeviceStatus lock() {
        return device(1, null);
    }

    /**
     * The device unlocked. {@code secretOrNull} is the app's unlock secret as UTF-8 bytes (e.g.
     * derived from the user's credential; encode a binary one as hex), or null for none: the first
     * one given binds the keys of the classes that need an unlocked device, and every later unlock
     * must give the same one. The array is not kept; wipe it when done.
     *
     * @throws SecureStoreException.Refused for a wrong or missing secret; the state does not change
     */
    public DeviceStatus unlock(byte[] secretOrNull) {
        return device(2, secretOrNull);
    }

    /** The user set a passcode: {@code WHEN_PASSCODE_SET_THIS_DEVICE_ONLY} items may be stored. */
    public DeviceStatus passcodeSet() {
        return device(3, null);
    }

    /**
     * The user removed the passcode: every {@code WHEN_PASSCODE_SET_THIS_DEVICE_ONLY} item of every
     * project is deleted, as the Keychain does.
     */
    public DeviceStatus passcodeRemoved() {
        return device(4, null);
    }

    /** The device state the host last received. */
    public DeviceStatus deviceStatus() {
        return device(0, null);
    }

    private DeviceStatus device(int signal, byte[] secret) {
        int packed = handle.use(h -> Native.hostDevice(h, signal, secret));
        return DeviceStatus.fromNative(packed);
    }

    /** Stops the daemon: requests under way finish, the store closes, the socket is removed. */
    public void stop() {
        handle.destroy(Native::hostStop);
    }

    /** Same as {@link #stop()}. */
    @Override
    public void close() {
        stop();
    }
}

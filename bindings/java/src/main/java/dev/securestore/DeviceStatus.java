package dev.securestore;

/**
 * The device state a {@link SecureStoreHost} enforces: whether the device is locked, as the host
 * last signalled, and whether a passcode is set. Which {@link KeychainAccessible} classes can be
 * read or written depends only on it: {@code ALWAYS*} always; {@code AFTER_FIRST_UNLOCK*} once the
 * device has been unlocked since the host started; {@code WHEN_UNLOCKED*} and
 * {@code WHEN_PASSCODE_SET_THIS_DEVICE_ONLY} only while it is unlocked. The others answer
 * {@link SecureStoreException.Locked}.
 */
public final class DeviceStatus {
    /** Whether the device is locked. */
    public enum LockState {
        /** Started, and not unlocked since: only {@code ALWAYS*} items are available. */
        BEFORE_FIRST_UNLOCK("before-first-unlock"),
        /** Unlocked once since start, locked now: {@code ALWAYS*} and {@code AFTER_FIRST_UNLOCK*}. */
        LOCKED("locked"),
        /** Unlocked: every class. */
        UNLOCKED("unlocked");

        private final String wireName;

        LockState(String wireName) {
            this.wireName = wireName;
        }

        /** The name {@code securestore device status} prints, e.g. {@code before-first-unlock}. */
        public String wireName() {
            return wireName;
        }
    }

    private final LockState lock;
    private final boolean passcodeSet;

    /**
     * @param lock the lock state
     * @param passcodeSet whether a passcode is set
     */
    public DeviceStatus(LockState lock, boolean passcodeSet) {
        this.lock = java.util.Objects.requireNonNull(lock, "lock");
        this.passcodeSet = passcodeSet;
    }

    /** From the native side's packing: lock number times two, plus 1 for a passcode. */
    static DeviceStatus fromNative(int packed) {
        return new DeviceStatus(LockState.values()[packed / 2], (packed & 1) == 1);
    }

    /** Locked or not. */
    public LockState lock() {
        return lock;
    }

    /** Whether a passcode is set. */
    public boolean passcodeSet() {
        return passcodeSet;
    }

    @Override
    public boolean equals(Object other) {
        if (!(other instanceof DeviceStatus)) {
            return false;
        }
        DeviceStatus that = (DeviceStatus) other;
        return lock == that.lock && passcodeSet == that.passcodeSet;
    }

    @Override
    public int hashCode() {
        return lock.hashCode() * 2 + (passcodeSet ? 1 : 0);
    }

    @Override
    public String toString() {
        return lock.wireName() + ", passcode " + (passcodeSet ? "set" : "not set");
    }
}

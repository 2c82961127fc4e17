package dev.securestore;

/**
 * When an item may be read, as iOS's {@code kSecAttrAccessible}: Expo SecureStore's names and
 * numbers. The daemon stores the class with each item; backends that can enforce it do.
 */
public enum KeychainAccessible {
    /** Readable after the first unlock following a restart. */
    AFTER_FIRST_UNLOCK(0),
    /** As {@code AFTER_FIRST_UNLOCK}, and never migrated to another device. */
    AFTER_FIRST_UNLOCK_THIS_DEVICE_ONLY(1),
    /** Always readable. Deprecated by Apple; the least protective class. */
    ALWAYS(2),
    /** Readable while unlocked, only on a device with a passcode; never migrated. */
    WHEN_PASSCODE_SET_THIS_DEVICE_ONLY(3),
    /** As {@code ALWAYS}, and never migrated. Deprecated by Apple. */
    ALWAYS_THIS_DEVICE_ONLY(4),
    /** Readable only while the device is unlocked. Expo's default. */
    WHEN_UNLOCKED(5),
    /** As {@code WHEN_UNLOCKED}, and never migrated to another device. */
    WHEN_UNLOCKED_THIS_DEVICE_ONLY(6);

    private final int value;

    KeychainAccessible(int value) {
        this.value = value;
    }

    /** Expo's number for the class (0 to 6). */
    public int value() {
        return value;
    }

    /** The class with Expo's number {@code value}. */
    public static KeychainAccessible fromValue(int value) {
        for (KeychainAccessible k : values()) {
            if (k.value == value) {
                return k;
            }
        }
        throw new IllegalArgumentException("unknown keychainAccessible class " + value + "; expected 0 to 6");
    }
}

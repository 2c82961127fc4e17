package dev.securestore;

import java.util.Objects;

/**
 * Expo SecureStore's options: {@code keychainService} (a namespace inside the project; {@code null}
 * is the default service) and {@code keychainAccessible} (used by {@code setItem}). Immutable.
 */
public final class SecureStoreOptions {
    /** The default service, {@link KeychainAccessible#WHEN_UNLOCKED}. */
    public static final SecureStoreOptions DEFAULT = new SecureStoreOptions(null, KeychainAccessible.WHEN_UNLOCKED);

    private final String keychainService;
    private final KeychainAccessible keychainAccessible;

    private SecureStoreOptions(String keychainService, KeychainAccessible keychainAccessible) {
        this.keychainService = keychainService;
        this.keychainAccessible = Objects.requireNonNull(keychainAccessible, "keychainAccessible");
    }

    /** Options with the given service and the default accessibility. */
    public static SecureStoreOptions service(String keychainService) {
        return DEFAULT.withKeychainService(keychainService);
    }

    /** A copy with {@code keychainService} ({@code null} for the default service). */
    public SecureStoreOptions withKeychainService(String keychainService) {
        return new SecureStoreOptions(keychainService, keychainAccessible);
    }

    /** A copy with {@code keychainAccessible}. */
    public SecureStoreOptions withKeychainAccessible(KeychainAccessible keychainAccessible) {
        return new SecureStoreOptions(keychainService, keychainAccessible);
    }

    /** The service, or {@code null} for the default one. */
    public String keychainService() {
        return keychainService;
    }

    /** The accessibility class a {@code setItem} stores. */
    public KeychainAccessible keychainAccessible() {
        return keychainAccessible;
    }
}

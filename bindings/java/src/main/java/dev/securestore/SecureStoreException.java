package dev.securestore;

/**
 * Every failure of the bindings. {@link #code()} is stable (its numbers match the C ABI's
 * {@code securestore_result}); each code has its own subclass, so callers can catch exactly the
 * failures they handle. Messages name keys, services and projects, never values or tokens.
 */
public class SecureStoreException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    /** What kind of failure. Numbers are stable and only ever added to. */
    public enum Code {
        /** The key is empty, too long, or holds a character other than {@code A-Za-z0-9 . - _}. */
        INVALID_KEY(1),
        /** The keychainService is empty, too long, or holds a control character. */
        INVALID_SERVICE(2),
        /** The project id is empty, too long, or holds a character outside {@code A-Za-z0-9 . _ - @ /}. */
        INVALID_PROJECT(3),
        /** The value is larger than the daemon's limit; the message names the limit. */
        VALUE_TOO_LARGE(4),
        /** The daemon will not serve this caller or project (token, policy, uid, protocol, busy). */
        REFUSED(5),
        /** No daemon answers at the socket, or the connection to it was lost. */
        UNREACHABLE(6),
        /** No answer in time; a write may or may not have been applied. */
        TIMED_OUT(7),
        /** The store failed: full, damaged, or a value that does not decrypt. */
        STORAGE(8),
        /** An argument the bindings reject: null, not UTF-8, out of range. */
        INVALID_ARGUMENT(9),
        /** The daemon could not start in this process (socket or data folder in use, store will not open). */
        HOST_FAILED(10),
        /** A bug inside securestore (a panic caught at the boundary). */
        INTERNAL(11),
        /** A conditional write found another value than the expected one; nothing was changed. */
        CONFLICT(12),
        /** The daemon speaks an older protocol without this call; upgrade it. Nothing was sent. */
        UNSUPPORTED(13),
        /**
         * The device is locked (or not unlocked since the host started) and the item's
         * {@link KeychainAccessible} class is not available until it is unlocked; nothing was read
         * or changed. Never reported as "absent".
         */
        LOCKED(14),
        /** A {@code WHEN_PASSCODE_SET_THIS_DEVICE_ONLY} item cannot be stored: no passcode is set. */
        PASSCODE_NOT_SET(15),
        /**
         * A backup cannot be opened: a wrong passphrase, a damaged or altered file, a newer format,
         * or an item that must never leave its device. Nothing was imported.
         */
        BAD_BACKUP(16);

        private final int value;

        Code(int value) {
            this.value = value;
        }

        /** The stable number. */
        public int value() {
            return value;
        }

        static Code fromValue(int value) {
            for (Code c : values()) {
                if (c.value == value) {
                    return c;
                }
            }
            return INTERNAL;
        }
    }

    private final Code code;

    SecureStoreException(Code code, String message) {
        super(message);
        this.code = code;
    }

    /** The stable kind of this failure. */
    public Code code() {
        return code;
    }

    /** Called by the native library to build the exception it throws. */
    static SecureStoreException fromNative(int value, String message) {
        Code code = Code.fromValue(value);
        switch (code) {
            case INVALID_KEY:
                return new InvalidKey(message);
            case INVALID_SERVICE:
                return new InvalidService(message);
            case INVALID_PROJECT:
                return new InvalidProject(message);
            case VALUE_TOO_LARGE:
                return new ValueTooLarge(message);
            case REFUSED:
                return new Refused(message);
            case UNREACHABLE:
                return new Unreachable(message);
            case TIMED_OUT:
                return new TimedOut(message);
            case STORAGE:
                return new Storage(message);
            case HOST_FAILED:
                return new HostFailed(message);
            case CONFLICT:
                return new Conflict(message);
            case UNSUPPORTED:
                return new Unsupported(message);
            case LOCKED:
                return new Locked(message);
            case PASSCODE_NOT_SET:
                return new PasscodeNotSet(message);
            case BAD_BACKUP:
                return new BadBackup(message);
            default:
                return new SecureStoreException(code, message);
        }
    }

    /** {@link Code#INVALID_KEY}, with Expo's own message. */
    public static final class InvalidKey extends SecureStoreException {
        private static final long serialVersionUID = 1L;

        InvalidKey(String message) {
            super(Code.INVALID_KEY, message);
        }
    }

    /** {@link Code#INVALID_SERVICE}. */
    public static final class InvalidService extends SecureStoreException {
        private static final long serialVersionUID = 1L;

        InvalidService(String message) {
            super(Code.INVALID_SERVICE, message);
        }
    }

    /** {@link Code#INVALID_PROJECT}. */
    public static final class InvalidProject extends SecureStoreException {
        private static final long serialVersionUID = 1L;

        InvalidProject(String message) {
            super(Code.INVALID_PROJECT, message);
        }
    }

    /** {@link Code#VALUE_TOO_LARGE}; the message names the size and the limit. */
    public static final class ValueTooLarge extends SecureStoreException {
        private static final long serialVersionUID = 1L;

        ValueTooLarge(String message) {
            super(Code.VALUE_TOO_LARGE, message);
        }
    }

    /** {@link Code#REFUSED}. */
    public static final class Refused extends SecureStoreException {
        private static final long serialVersionUID = 1L;

        Refused(String message) {
            super(Code.REFUSED, message);
        }
    }

    /** {@link Code#UNREACHABLE}. */
    public static final class Unreachable extends SecureStoreException {
        private static final long serialVersionUID = 1L;

        Unreachable(String message) {
            super(Code.UNREACHABLE, message);
        }
    }

    /** {@link Code#TIMED_OUT}. */
    public static final class TimedOut extends SecureStoreException {
        private static final long serialVersionUID = 1L;

        TimedOut(String message) {
            super(Code.TIMED_OUT, message);
        }
    }

    /** {@link Code#STORAGE}. */
    public static final class Storage extends SecureStoreException {
        private static final long serialVersionUID = 1L;

        Storage(String message) {
            super(Code.STORAGE, message);
        }
    }

    /** {@link Code#HOST_FAILED}. */
    public static final class HostFailed extends SecureStoreException {
        private static final long serialVersionUID = 1L;

        HostFailed(String message) {
            super(Code.HOST_FAILED, message);
        }
    }

    /** {@link Code#CONFLICT}. */
    public static final class Conflict extends SecureStoreException {
        private static final long serialVersionUID = 1L;

        Conflict(String message) {
            super(Code.CONFLICT, message);
        }
    }

    /** {@link Code#UNSUPPORTED}. */
    public static final class Unsupported extends SecureStoreException {
        private static final long serialVersionUID = 1L;

        Unsupported(String message) {
            super(Code.UNSUPPORTED, message);
        }
    }

    /** {@link Code#LOCKED}: retry after the device is unlocked. */
    public static final class Locked extends SecureStoreException {
        private static final long serialVersionUID = 1L;

        Locked(String message) {
            super(Code.LOCKED, message);
        }
    }

    /** {@link Code#PASSCODE_NOT_SET}. */
    public static final class PasscodeNotSet extends SecureStoreException {
        private static final long serialVersionUID = 1L;

        PasscodeNotSet(String message) {
            super(Code.PASSCODE_NOT_SET, message);
        }
    }

    /** {@link Code#BAD_BACKUP}. */
    public static final class BadBackup extends SecureStoreException {
        private static final long serialVersionUID = 1L;

        BadBackup(String message) {
            super(Code.BAD_BACKUP, message);
        }
    }
}

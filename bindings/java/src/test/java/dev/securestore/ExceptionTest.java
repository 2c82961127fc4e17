package dev.securestore;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.ServerSocketChannel;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/** The exception types and their codes, a timeout, and a store that will not open. */
class ExceptionTest {
    @Test
    void everyCodeHasItsTypeAndTheCApisNumber() {
        Object[][] expected = {
            {1, SecureStoreException.InvalidKey.class},
            {2, SecureStoreException.InvalidService.class},
            {3, SecureStoreException.InvalidProject.class},
            {4, SecureStoreException.ValueTooLarge.class},
            {5, SecureStoreException.Refused.class},
            {6, SecureStoreException.Unreachable.class},
            {7, SecureStoreException.TimedOut.class},
            {8, SecureStoreException.Storage.class},
            {9, SecureStoreException.class},
            {10, SecureStoreException.HostFailed.class},
            {11, SecureStoreException.class},
            {12, SecureStoreException.Conflict.class},
            {13, SecureStoreException.Unsupported.class},
            {14, SecureStoreException.Locked.class},
            {15, SecureStoreException.PasscodeNotSet.class},
            {16, SecureStoreException.BadBackup.class},
        };
        for (Object[] row : expected) {
            int value = (Integer) row[0];
            SecureStoreException e = SecureStoreException.fromNative(value, "message " + value);
            assertEquals(row[1], e.getClass(), "code " + value);
            assertEquals(value, e.code().value());
            assertEquals("message " + value, e.getMessage());
        }
        assertEquals(SecureStoreException.Code.INTERNAL, SecureStoreException.fromNative(99, "?").code());
        for (KeychainAccessible k : KeychainAccessible.values()) {
            assertEquals(k, KeychainAccessible.fromValue(k.value()));
        }
        assertEquals(5, KeychainAccessible.WHEN_UNLOCKED.value());
        assertEquals(0, KeychainAccessible.AFTER_FIRST_UNLOCK.value());
        assertEquals(6, KeychainAccessible.WHEN_UNLOCKED_THIS_DEVICE_ONLY.value());
    }

    @Test
    void aSocketThatNeverAnswersTimesOut() throws Exception {
        Path dir = TestSupport.tempDir();
        Path socket = dir.resolve("silent.sock");
        try (ServerSocketChannel silent = ServerSocketChannel.open(StandardProtocolFamily.UNIX)) {
            silent.bind(UnixDomainSocketAddress.of(socket));
            // Connections queue in the backlog and are never answered: the handshake cannot finish.
            SecureStoreException.TimedOut err = assertThrows(SecureStoreException.TimedOut.class,
                    () -> SecureStore.connect(socket.toString(), "@java/timeout", null, 300));
            assertEquals(SecureStoreException.Code.TIMED_OUT, err.code());
        } finally {
            TestSupport.deleteTree(dir);
        }
    }

    @Test
    void aMasterKeyThatDoesNotOpenTheStoreIsAHostFailure() throws Exception {
        Path dir = TestSupport.tempDir();
        try {
            SecureStoreHost.Config config = TestSupport.config(dir);
            SecureStoreHost.start(config).stop();
            // The master key no longer opens the database: the store refuses to start.
            java.nio.file.Files.write(dir.resolve("state/master.key"), new byte[32]);
            SecureStoreException.HostFailed err =
                    assertThrows(SecureStoreException.HostFailed.class, () -> SecureStoreHost.start(config));
            assertTrue(err.getMessage().contains("cannot open the store"), err.getMessage());
            assertInstanceOf(SecureStoreException.class, err);
        } finally {
            TestSupport.deleteTree(dir);
        }
    }
}

package dev.securestore;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;

/**
 * The Android backend through the host, on this desktop JVM: keys in a PKCS12 KeyStore file made
 * through this very JVM (the host must not start another), values sealed with them.
 */
class AndroidBackendTest {
    @Test
    void theAndroidBackendServesTheContractAndKeepsItsDataAcrossRestarts() throws Exception {
        Path dir = TestSupport.tempDir();
        try {
            SecureStoreHost.Config config = TestSupport.config(dir).backend(SecureStoreHost.Backend.ANDROID);
            try (SecureStoreHost host = SecureStoreHost.start(config);
                    SecureStore inProcess = host.connect("@java/android");
                    SecureStore overSocket = SecureStore.connect(host.socketPath(), "@java/android")) {
                inProcess.setItem("token", "sealed by the keystore");
                overSocket.setItem("k", "v", SecureStoreOptions.service("svc"));
                assertEquals("sealed by the keystore", overSocket.getItem("token"));
                assertEquals("v", inProcess.getItem("k", SecureStoreOptions.service("svc")));
                assertNull(inProcess.getItem("k"));
                assertThrows(SecureStoreException.InvalidKey.class, () -> inProcess.getItem("bad key!"));
                inProcess.deleteItem("k", SecureStoreOptions.service("svc"));
                assertNull(overSocket.getItem("k", SecureStoreOptions.service("svc")));
            }
            assertTrue(Files.exists(dir.resolve("data/keystore.p12")), "the PKCS12 keystore is in the data folder");
            assertTrue(Files.exists(dir.resolve("data/securestore-android.db")));
            byte[] database = Files.readAllBytes(dir.resolve("data/securestore-android.db"));
            assertEquals(-1, new String(database, java.nio.charset.StandardCharsets.ISO_8859_1)
                    .indexOf("sealed by the keystore"), "no value is stored in clear");

            try (SecureStoreHost again = SecureStoreHost.start(config);
                    SecureStore store = again.connect("@java/android")) {
                assertEquals("sealed by the keystore", store.getItem("token"));
            }
        } finally {
            TestSupport.deleteTree(dir);
        }
    }
}

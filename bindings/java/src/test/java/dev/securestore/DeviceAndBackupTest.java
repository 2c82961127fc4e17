package dev.securestore;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Device signals from the host (lock, unlock, passcode set and removed) and sealed backups moved
 * between two hosts with different master keys, against real daemons hosted in this JVM.
 */
class DeviceAndBackupTest {
    static final String PROJECT = "@java/device";
    static final SecureStoreOptions WHEN_UNLOCKED =
            SecureStoreOptions.DEFAULT.withKeychainAccessible(KeychainAccessible.WHEN_UNLOCKED);
    static final SecureStoreOptions AFTER_FIRST_UNLOCK =
            SecureStoreOptions.DEFAULT.withKeychainAccessible(KeychainAccessible.AFTER_FIRST_UNLOCK);
    static final SecureStoreOptions PASSCODE =
            SecureStoreOptions.DEFAULT.withKeychainAccessible(KeychainAccessible.WHEN_PASSCODE_SET_THIS_DEVICE_ONLY);

    Path dir;
    Path otherDir;

    @BeforeEach
    void makeDirs() throws Exception {
        dir = TestSupport.tempDir();
        otherDir = TestSupport.tempDir();
    }

    @AfterEach
    void removeDirs() throws Exception {
        TestSupport.deleteTree(dir);
        TestSupport.deleteTree(otherDir);
    }

    static SecureStoreHost embedded(Path dir) {
        return SecureStoreHost.start(TestSupport.config(dir)
                .deviceState(new DeviceStatus(DeviceStatus.LockState.BEFORE_FIRST_UNLOCK, false)));
    }

    @Test
    void aLockedDeviceAnswersLockedForWhenUnlockedItemsOnly() {
        try (SecureStoreHost host = embedded(dir)) {
            assertEquals(new DeviceStatus(DeviceStatus.LockState.BEFORE_FIRST_UNLOCK, false), host.deviceStatus());
            try (SecureStore store = host.connect(PROJECT);
                    SecureStore overSocket = SecureStore.connect(host.socketPath(), PROJECT)) {
                SecureStoreException.Locked early = assertThrows(SecureStoreException.Locked.class,
                        () -> store.setItem("afu", "x", AFTER_FIRST_UNLOCK));
                assertEquals(SecureStoreException.Code.LOCKED, early.code());

                DeviceStatus unlocked = host.unlock(null);
                assertEquals(DeviceStatus.LockState.UNLOCKED, unlocked.lock());
                store.setItem("wu", "when-unlocked", WHEN_UNLOCKED);
                store.setItem("afu", "after-first-unlock", AFTER_FIRST_UNLOCK);

                assertEquals(DeviceStatus.LockState.LOCKED, host.lock().lock());
                assertEquals(DeviceStatus.LockState.LOCKED, host.deviceStatus().lock());
                for (SecureStore s : new SecureStore[] {store, overSocket}) {
                    SecureStoreException.Locked locked =
                            assertThrows(SecureStoreException.Locked.class, () -> s.getItem("wu"));
                    assertEquals(SecureStoreException.Code.LOCKED, locked.code());
                    assertTrue(locked.getMessage().contains("wu"), locked.getMessage());
                    assertEquals("after-first-unlock", s.getItem("afu"));
                }
                assertThrows(SecureStoreException.Locked.class,
                        () -> store.setItem("wu", "changed", WHEN_UNLOCKED));

                host.unlock(null);
                assertEquals("when-unlocked", store.getItem("wu"));
                assertEquals("when-unlocked", overSocket.getItem("wu"));
            }
        }
    }

    @Test
    void anUnlockSecretBindsAndAWrongOneIsRefused() {
        try (SecureStoreHost host = embedded(dir)) {
            byte[] secret = "the app's unlock secret".getBytes(StandardCharsets.UTF_8);
            host.unlock(secret);
            host.lock();
            SecureStoreException.Refused wrong = assertThrows(SecureStoreException.Refused.class,
                    () -> host.unlock("another".getBytes(StandardCharsets.UTF_8)));
            assertEquals(SecureStoreException.Code.REFUSED, wrong.code());
            assertEquals(DeviceStatus.LockState.LOCKED, host.deviceStatus().lock());
            assertEquals(DeviceStatus.LockState.UNLOCKED, host.unlock(secret).lock());
        }
    }

    @Test
    void removingThePasscodeDeletesPasscodeItems() {
        try (SecureStoreHost host = embedded(dir)) {
            host.unlock(null);
            try (SecureStore store = host.connect(PROJECT)) {
                SecureStoreException.PasscodeNotSet none = assertThrows(SecureStoreException.PasscodeNotSet.class,
                        () -> store.setItem("pin", "1234", PASSCODE));
                assertEquals(SecureStoreException.Code.PASSCODE_NOT_SET, none.code());

                assertTrue(host.passcodeSet().passcodeSet());
                store.setItem("pin", "1234", PASSCODE);
                store.setItem("plain", "stays", WHEN_UNLOCKED);
                assertEquals("1234", store.getItem("pin"));

                DeviceStatus removed = host.passcodeRemoved();
                assertFalse(removed.passcodeSet());
                assertEquals(DeviceStatus.LockState.UNLOCKED, removed.lock());
                assertNull(store.getItem("pin"), "deleted with the passcode");
                assertFalse(store.contains("pin", SecureStoreOptions.DEFAULT));
                assertEquals("stays", store.getItem("plain"));
            }
        }
    }

    @Test
    void aHostWithoutSignalsStaysUnlockedAsBefore() {
        try (SecureStoreHost host = SecureStoreHost.start(TestSupport.config(dir))) {
            assertEquals(new DeviceStatus(DeviceStatus.LockState.UNLOCKED, true), host.deviceStatus());
            try (SecureStore store = host.connect(PROJECT)) {
                store.setItem("pin", "1234", PASSCODE);
                assertEquals("1234", store.getItem("pin"));
            }
        }
    }

    @Test
    void aBackupRestoresOnAnotherHostAndAWrongPassphraseImportsNothing() {
        char[] passphrase = "correct horse battery".toCharArray();
        byte[] file;
        try (SecureStoreHost first = SecureStoreHost.start(TestSupport.config(dir));
                SecureStore store = first.connect(PROJECT)) {
            store.setItem("a", "alpha \u00e9\u2713", WHEN_UNLOCKED);
            store.setItem("b", "beta", SecureStoreOptions.service("other").withKeychainAccessible(
                    KeychainAccessible.AFTER_FIRST_UNLOCK));
            store.setItem("local", "never leaves",
                    SecureStoreOptions.DEFAULT.withKeychainAccessible(KeychainAccessible.WHEN_UNLOCKED_THIS_DEVICE_ONLY));
            file = store.exportBackup(null, passphrase);
            byte[] otherOnly = store.exportBackup("other", passphrase);
            assertTrue(otherOnly.length < file.length, otherOnly.length + " < " + file.length);
            String raw = new String(file, StandardCharsets.ISO_8859_1);
            assertFalse(raw.contains("beta"), "the file is sealed");
            assertTrue(raw.startsWith("SSBACKUP"), "the CLI's format");
        }

        // Another data folder and master key file: another master key.
        try (SecureStoreHost second = SecureStoreHost.start(TestSupport.config(otherDir));
                SecureStore store = second.connect(PROJECT)) {
            SecureStoreException.BadBackup wrong = assertThrows(SecureStoreException.BadBackup.class,
                    () -> store.importBackup(file, "wrong horse".toCharArray(), false));
            assertEquals(SecureStoreException.Code.BAD_BACKUP, wrong.code());
            assertTrue(store.listServices().isEmpty(), "nothing imported: " + store.listServices());
            byte[] altered = Arrays.copyOf(file, file.length);
            altered[altered.length - 1] ^= 1;
            assertThrows(SecureStoreException.BadBackup.class, () -> store.importBackup(altered, passphrase, false));
            assertTrue(store.listServices().isEmpty());

            store.setItem("a", "kept", WHEN_UNLOCKED);
            ImportReport report = store.importBackup(file, passphrase, false);
            assertEquals(1, report.added(), report.toString());
            assertEquals(1, report.skipped(), report.toString());
            assertEquals(0, report.replaced(), report.toString());
            assertEquals("kept", store.getItem("a"));
            assertEquals("beta", store.getItem("b", SecureStoreOptions.service("other")));
            assertNull(store.getItem("local"), "this-device-only items are not exported");

            ImportReport replaced = store.importBackup(file, passphrase, true);
            assertEquals(2, replaced.replaced(), replaced.toString());
            assertEquals("alpha \u00e9\u2713", store.getItem("a"));

            SecureStoreException empty = assertThrows(SecureStoreException.class,
                    () -> store.exportBackup(null, new char[0]));
            assertEquals(SecureStoreException.Code.INVALID_ARGUMENT, empty.code());
        }
        Arrays.fill(passphrase, '\0');
    }

    @Test
    void aLockedDeviceRefusesAnExport() {
        try (SecureStoreHost host = embedded(dir)) {
            host.unlock(null);
            try (SecureStore store = host.connect(PROJECT)) {
                store.setItem("wu", "v", WHEN_UNLOCKED);
                host.lock();
                assertThrows(SecureStoreException.Locked.class,
                        () -> store.exportBackup(null, "pw".toCharArray()));
            }
        }
    }

    /** Runs the Rust CLI on {@code socket}'s project; returns {exit code, stdout}. */
    static Object[] cli(String socket, String... args) throws Exception {
        List<String> command = new ArrayList<>(List.of(TestSupport.cli(), "--socket", socket, "--project", PROJECT));
        command.addAll(Arrays.asList(args));
        Process p = new ProcessBuilder(command).redirectError(ProcessBuilder.Redirect.INHERIT).start();
        p.getOutputStream().close();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
        assertTrue(p.waitFor(60, TimeUnit.SECONDS));
        return new Object[] {p.exitValue(), out};
    }

    @Test
    void backupsAndDeviceSignalsInteroperateWithTheCli() throws Exception {
        // A passphrase outside ASCII and the BMP: Java's UTF-16 char[] must become the CLI's UTF-8.
        String phrase = "p\u00e4ssw\u00f6rd \ud83d\udd10";
        Path passFile = otherDir.resolve("pass.txt");
        Files.write(passFile, phrase.getBytes(StandardCharsets.UTF_8));
        Path javaFile = otherDir.resolve("from-java.ssbackup");
        Path cliFile = otherDir.resolve("from-cli.ssbackup");
        try (SecureStoreHost host = embedded(dir)) {
            String socket = host.socketPath();
            // A device signal from the CLI reaches the host's state, and the host's reaches the CLI.
            assertEquals(0, cli(socket, "device", "unlock")[0]);
            assertEquals(DeviceStatus.LockState.UNLOCKED, host.deviceStatus().lock());
            try (SecureStore store = host.connect(PROJECT)) {
                store.setItem("j", "from java", WHEN_UNLOCKED);
                Files.write(javaFile, store.exportBackup(null, phrase.toCharArray()));
                host.lock();
                Object[] locked = cli(socket, "get", "j");
                assertEquals(7, locked[0], "the CLI's exit code for locked");
                assertEquals(0, cli(socket, "device", "unlock")[0]);
                assertEquals("from java", store.getItem("j"));

                // The CLI imports Java's file, and Java imports the CLI's.
                store.deleteItem("j");
                Object[] imported = cli(socket, "import", javaFile.toString(), "--passphrase-file", passFile.toString());
                assertEquals(0, imported[0], String.valueOf(imported[1]));
                assertEquals("from java", store.getItem("j"));
                store.setItem("c", "from cli", WHEN_UNLOCKED);
                Object[] exported = cli(socket, "export", "--output", cliFile.toString(),
                        "--passphrase-file", passFile.toString());
                assertEquals(0, exported[0], String.valueOf(exported[1]));
                store.clearAll();
                ImportReport report = store.importBackup(Files.readAllBytes(cliFile), phrase.toCharArray(), false);
                assertEquals(2, report.added(), report.toString());
                assertEquals("from cli", store.getItem("c"));
                assertEquals("from java", store.getItem("j"));
            }
            assertEquals(0, cli(socket, "device", "passcode", "removed")[0]);
            assertFalse(host.deviceStatus().passcodeSet());
        }
    }
}

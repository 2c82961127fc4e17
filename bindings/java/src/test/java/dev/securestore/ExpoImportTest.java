package dev.securestore;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.securestore.ExpoSecureStoreImport.Outcome;
import dev.securestore.ExpoSecureStoreImport.Reason;
import dev.securestore.ExpoSecureStoreImport.Report;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Importing expo-secure-store's Android data ({@link ExpoFixture}: the preferences file and a
 * PKCS12 keystore written as {@code AESEncryptor} would) into a project of a real host, read back
 * through the Java API and through the Rust {@code securestore} CLI over the host's socket.
 */
class ExpoImportTest {
    static final String PROJECT = "@java/expo";

    Path dir;

    @BeforeEach
    void setUp() throws Exception {
        dir = TestSupport.tempDir();
    }

    @AfterEach
    void tearDown() throws Exception {
        TestSupport.deleteTree(dir);
    }

    /** Runs the CLI against {@code socket}; returns {exit code, stdout}. */
    static Object[] cli(String socket, String... args) throws Exception {
        return cliWithInput(socket, "", args);
    }

    /** As {@link #cli}, writing {@code input} to its stdin (a value for {@code set}). */
    static Object[] cliWithInput(String socket, String input, String... args) throws Exception {
        List<String> command = new ArrayList<>(List.of(TestSupport.cli(), "--socket", socket, "--project", PROJECT));
        command.addAll(Arrays.asList(args));
        Process p = new ProcessBuilder(command).redirectError(ProcessBuilder.Redirect.INHERIT).start();
        try (java.io.OutputStream in = p.getOutputStream()) {
            in.write(input.getBytes(StandardCharsets.UTF_8));
        }
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
        assertTrue(p.waitFor(60, TimeUnit.SECONDS));
        return new Object[] {p.exitValue(), out};
    }

    /** The CLI's {@code get --json} line for an item. */
    static String cliJson(String service, String key, String value, String accessible) {
        return "{\"key\":\"" + key + "\",\"service\":\"" + service + "\",\"value\":" + value
                + ",\"accessible\":\"" + accessible + "\"}";
    }

    static void assertReasons(Report report, Map<String, Reason> expected) {
        assertEquals(expected.size(), report.items().size(), report.toString());
        for (Map.Entry<String, Reason> e : expected.entrySet()) {
            ExpoSecureStoreImport.Item item = report.item(e.getKey());
            assertNotNull(item, "no report for " + e.getKey() + ": " + report);
            assertEquals(e.getValue(), item.reason(), item.toString());
            assertEquals(e.getValue().outcome(), item.outcome());
            assertFalse(item.message().contains("user-42") || item.message().contains("4321"),
                    "a message holds a value: " + item);
        }
    }

    /** The reasons of the full fixture's entries, with the imported ones as given. */
    static Map<String, Reason> fullReasons(Reason imported, Reason authenticated) {
        Map<String, Reason> m = new LinkedHashMap<>();
        m.put(ExpoFixture.DEFAULT_TOKEN, imported);
        m.put(ExpoFixture.DEFAULT_USER, imported);
        m.put(ExpoFixture.CUSTOM_PIN, imported);
        m.put(ExpoFixture.DASHED, imported);
        m.put(ExpoFixture.HYBRID, imported);
        m.put(ExpoFixture.AUTHENTICATED, authenticated);
        m.put(ExpoFixture.CORRUPTED, Reason.DECRYPT_FAILED);
        m.put(ExpoFixture.KEY_GONE, Reason.KEY_MISSING);
        m.put(ExpoFixture.NOT_JSON, Reason.MALFORMED);
        return m;
    }

    @Test
    void importsWhatItCanReportsTheRestAndIsHarmlessToRunAgain() throws Exception {
        ExpoFixture fixture = ExpoFixture.writeFull(dir.resolve("expo"));
        byte[] prefsBefore = Files.readAllBytes(fixture.prefsFile);
        SecureStoreHost.Config config = TestSupport.config(dir).backend(SecureStoreHost.Backend.ANDROID);
        try (SecureStoreHost host = SecureStoreHost.start(config);
                SecureStore store = host.connect(PROJECT)) {
            String socket = host.socketPath();
            ExpoSecureStoreImport importer = ExpoSecureStoreImport
                    .fromPreferencesFile(fixture.prefsFile.toFile())
                    .keyStore(fixture.loadKeyStore(), ExpoFixture.PASSWORD)
                    .deleteSourceAfterFullImport(true);

            // First run: every readable entry imported; the rest skipped or failed, with why.
            Report first = importer.run(store);
            System.out.println("first run: " + first);
            assertReasons(first, fullReasons(Reason.STORED, Reason.NEEDS_AUTHENTICATION));
            assertEquals(5, first.count(Outcome.IMPORTED));
            assertEquals(1, first.count(Outcome.SKIPPED));
            assertEquals(3, first.count(Outcome.FAILED));
            assertFalse(first.fullyImported());
            assertFalse(first.sourceDeleted(), "a partial import must not delete the source");
            assertTrue(first.item(ExpoFixture.KEY_GONE).message().contains(ExpoFixture.aesAlias("orphan", false)));
            ExpoSecureStoreImport.Item dashed = first.item(ExpoFixture.DASHED);
            assertEquals("my-app", dashed.expoService());
            assertEquals("a-b", dashed.key());
            assertNull(first.item(ExpoFixture.DEFAULT_TOKEN).service(), "key_v1 is our default service");
            assertEquals("payments", first.item(ExpoFixture.CUSTOM_PIN).service());
            assertTrue(first.item(ExpoFixture.AUTHENTICATED).requireAuthentication());
            assertArrayEquals(prefsBefore, Files.readAllBytes(fixture.prefsFile), "the source was changed");

            // The values, through the Java API...
            SecureStoreOptions payments = SecureStoreOptions.service("payments");
            assertEquals("rt-\u0436\u0435\u0442\u043e\u043d \u2713 \"quoted\" </map>", store.getItem("refresh_token"));
            assertEquals("user-42", store.getItem("user.id"));
            assertEquals("4321", store.getItem("card_pin", payments));
            assertEquals("dash/ed+value==", store.getItem("a-b", SecureStoreOptions.service("my-app")));
            assertEquals("0000", store.getItem("legacy_pin"));
            assertNull(store.getItem("bio_secret"));
            assertNull(store.getItem("broken"));
            assertNull(store.getItem("session", SecureStoreOptions.service("orphan")));
            assertEquals(List.of("app", "my-app", "payments"), store.listServices());
            assertEquals(List.of("legacy_pin", "refresh_token", "user.id"), store.listKeys(SecureStoreOptions.DEFAULT));

            // ...and through the CLI, with the class the import gives.
            String cls = ExpoSecureStoreImport.DEFAULT_ACCESSIBLE.name();
            assertEquals(List.of(0, cliJson("app", "user.id", "\"user-42\"", cls)),
                    List.of(cli(socket, "get", "--json", "user.id")));
            assertEquals(List.of(0, cliJson("payments", "card_pin", "\"4321\"", cls)),
                    List.of(cli(socket, "--service", "payments", "get", "--json", "card_pin")));
            assertEquals(List.of(0, "dash/ed+value=="),
                    List.of(cli(socket, "--service", "my-app", "get", "a-b")));
            assertEquals(List.of(0, "0000"), List.of(cli(socket, "get", "legacy_pin")));
            assertEquals(List.of(0, "rt-\u0436\u0435\u0442\u043e\u043d \u2713 \"quoted\" </map>"),
                    List.of(cli(socket, "get", "refresh_token")));
            assertEquals(1, cli(socket, "get", "bio_secret")[0], "a skipped entry is not there");
            assertEquals(1, cli(socket, "--service", "orphan", "get", "session")[0]);

            // Second run: nothing changes; the imported entries are reported already present.
            Report second = importer.run(store);
            assertReasons(second, fullReasons(Reason.ALREADY_PRESENT, Reason.NEEDS_AUTHENTICATION));
            assertEquals("user-42", store.getItem("user.id"));
            assertArrayEquals(prefsBefore, Files.readAllBytes(fixture.prefsFile));

            // A value changed in securestore since is left alone, unless overwriting is asked for.
            assertEquals(0, cliWithInput(socket, "changed by the app", "set", "user.id")[0]);
            Report third = importer.run(store);
            assertEquals(Reason.DIFFERENT_VALUE_PRESENT, third.item(ExpoFixture.DEFAULT_USER).reason());
            assertEquals(Reason.ALREADY_PRESENT, third.item(ExpoFixture.DEFAULT_TOKEN).reason());
            assertEquals("changed by the app", store.getItem("user.id"));
            Report overwriting = ExpoSecureStoreImport.fromPreferencesFile(fixture.prefsFile.toFile())
                    .keyStore(fixture.loadKeyStore(), ExpoFixture.PASSWORD)
                    .overwriteDifferentValues(true)
                    .run(store);
            assertEquals(Reason.REPLACED, overwriting.item(ExpoFixture.DEFAULT_USER).reason());
            assertEquals(List.of(0, "user-42"), List.of(cli(socket, "get", "user.id")));

            // The authenticated entry: a user who cancels leaves it skipped; one who authenticates
            // lets it in. The authenticator is asked for that entry only.
            Report cancelled = importer.authenticator((cipher, service, key) -> {
                throw new IllegalStateException("the user cancelled");
            }).run(store);
            assertEquals(Reason.NEEDS_AUTHENTICATION, cancelled.item(ExpoFixture.AUTHENTICATED).reason());
            assertTrue(cancelled.item(ExpoFixture.AUTHENTICATED).message().contains("the user cancelled"));
            List<String> asked = new ArrayList<>();
            Report authenticated = importer.authenticator((cipher, service, key) -> {
                asked.add(service + "/" + key);
                return cipher;
            }).run(store);
            assertEquals(List.of("key_v1/bio_secret"), asked);
            assertReasons(authenticated, fullReasons(Reason.ALREADY_PRESENT, Reason.STORED));
            assertEquals(List.of(0, "behind a fingerprint"), List.of(cli(socket, "get", "bio_secret")));
            assertFalse(authenticated.sourceDeleted(), "still three failures: the source stays");
            assertTrue(Files.exists(fixture.prefsFile));
        }
    }

    @Test
    void theSourceIsDeletedOnlyWhenAskedAndEveryEntryIsImported() throws Exception {
        ExpoFixture fixture = ExpoFixture.create(dir.resolve("expo"), false);
        fixture.setItem("key_v1", "token", "t-1", false);
        fixture.setItem("payments", "card_pin", "4321", false);
        fixture.write();
        // A write cut short: the backup is the good copy and the file is half written; Android
        // would restore the backup, and so does the import.
        Path backup = Path.of(fixture.prefsFile + ".bak");
        Files.move(fixture.prefsFile, backup);
        Files.write(fixture.prefsFile, "<?xml version='1.0' encoding='utf-8' standalone='yes' ?>\n<map>\n    <str"
                .getBytes(StandardCharsets.UTF_8));
        try (SecureStoreHost host = SecureStoreHost.start(TestSupport.config(dir));
                SecureStore store = host.connect(PROJECT)) {
            Report kept = ExpoSecureStoreImport.fromPreferencesFile(fixture.prefsFile.toFile())
                    .keyStore(fixture.loadKeyStore(), ExpoFixture.PASSWORD)
                    .run(store);
            assertTrue(kept.fullyImported(), kept.toString());
            assertEquals(2, kept.count(Outcome.IMPORTED), "the backup copy was read");
            assertFalse(kept.sourceDeleted());
            assertTrue(Files.exists(fixture.prefsFile), "not asked to delete");
            assertTrue(Files.exists(backup));

            Report deleted = ExpoSecureStoreImport.fromPreferencesFile(fixture.prefsFile.toFile())
                    .keyStore(fixture.loadKeyStore(), ExpoFixture.PASSWORD)
                    .deleteSourceAfterFullImport(true)
                    .run(store);
            assertTrue(deleted.fullyImported());
            assertEquals(2, deleted.count(Outcome.IMPORTED));
            assertEquals(Reason.ALREADY_PRESENT, deleted.item("key_v1-token").reason());
            assertTrue(deleted.sourceDeleted(), deleted.toString());
            assertFalse(Files.exists(fixture.prefsFile));
            assertFalse(Files.exists(backup));
            assertEquals("t-1", store.getItem("token"));
            assertEquals("4321", store.getItem("card_pin", SecureStoreOptions.service("payments")));

            Report none = ExpoSecureStoreImport.fromPreferencesFile(fixture.prefsFile.toFile())
                    .keyStore(fixture.loadKeyStore(), ExpoFixture.PASSWORD)
                    .deleteSourceAfterFullImport(true)
                    .run(store);
            assertTrue(none.items().isEmpty());
            assertFalse(none.sourceDeleted());
            assertTrue(none.sourceNote().startsWith("no preferences file"), none.sourceNote());
        }
    }

    @Test
    void valuesHandedOverByTheAppImportAndTheirRemoverRunsOnlyAfterAFullImport() throws Exception {
        ExpoFixture fixture = ExpoFixture.create(dir.resolve("expo"), false);
        fixture.setItem("key_v1", "token", "t-1", false);
        fixture.setItem("auth", "pin", "9999", false);
        Map<String, Object> values = new LinkedHashMap<>(fixture.preferences);
        values.put("key_v1-garbled", "not json");
        values.put("a_flag", Boolean.TRUE); // not a string: not Expo's
        AtomicInteger removed = new AtomicInteger();
        try (SecureStoreHost host = SecureStoreHost.start(TestSupport.config(dir));
                SecureStore store = host.connect(PROJECT)) {
            Report partial = ExpoSecureStoreImport.fromValues(values, removed::incrementAndGet)
                    .keyStore(fixture.keyStore, ExpoFixture.PASSWORD)
                    .mapService("auth", "credentials")
                    .deleteSourceAfterFullImport(true)
                    .run(store);
            assertEquals(Reason.STORED, partial.item("key_v1-token").reason());
            assertEquals(Reason.STORED, partial.item("auth-pin").reason());
            assertEquals("credentials", partial.item("auth-pin").service());
            assertEquals(Reason.MALFORMED, partial.item("key_v1-garbled").reason());
            assertEquals(Reason.NOT_AN_ENTRY, partial.item("a_flag").reason());
            assertEquals(0, removed.get(), "removed after a partial import");
            assertEquals("9999", store.getItem("pin", SecureStoreOptions.service("credentials")));
            assertNull(store.getItem("pin", SecureStoreOptions.service("auth")));

            Report full = ExpoSecureStoreImport.fromValues(fixture.preferences, removed::incrementAndGet)
                    .keyStore(fixture.keyStore, ExpoFixture.PASSWORD)
                    .mapService("auth", "credentials")
                    .deleteSourceAfterFullImport(true)
                    .run(store);
            assertTrue(full.fullyImported(), full.toString());
            assertTrue(full.sourceDeleted());
            assertEquals(1, removed.get());
        }
        assertThrows(IllegalStateException.class,
                () -> ExpoSecureStoreImport.fromValues(values).deleteSourceAfterFullImport(true),
                "a values source without a remover cannot be deleted");
    }

    @Test
    void anOldBareKeyEntryShadowedByACurrentOneIsSuperseded() throws Exception {
        ExpoFixture fixture = ExpoFixture.create(dir.resolve("expo"), false);
        fixture.setItem("key_v1", "token", "current", false);
        // An entry from before 12.8 under the bare key, sealed by the unsuffixed legacy alias.
        ExpoFixture legacy = ExpoFixture.create(dir.resolve("legacy"), false);
        legacy.setItem("key_v1", "token", "old", false);
        String json = legacy.preferences.get("key_v1-token")
                .replace(",\"usesKeystoreSuffix\":true,\"keystoreAlias\":\"key_v1\",\"requireAuthentication\":false", "");
        fixture.keyStore.setEntry(ExpoSecureStoreImport.AES_CIPHER + ":key_v1",
                new java.security.KeyStore.SecretKeyEntry((javax.crypto.SecretKey) legacy.keyStore.getKey(
                        ExpoFixture.aesAlias("key_v1", false), ExpoFixture.PASSWORD)),
                new java.security.KeyStore.PasswordProtection(ExpoFixture.PASSWORD));
        Map<String, Object> values = new LinkedHashMap<>(fixture.preferences);
        values.put("token", json);
        values.put("other", json); // a bare key on its own imports, through the legacy alias
        try (SecureStoreHost host = SecureStoreHost.start(TestSupport.config(dir));
                SecureStore store = host.connect(PROJECT)) {
            Report report = ExpoSecureStoreImport.fromValues(values)
                    .keyStore(fixture.keyStore, ExpoFixture.PASSWORD)
                    .run(store);
            assertEquals(Reason.STORED, report.item("key_v1-token").reason(), report.toString());
            assertEquals(Reason.SUPERSEDED, report.item("token").reason());
            assertEquals(Reason.STORED, report.item("other").reason());
            assertEquals("current", store.getItem("token"));
            assertEquals("old", store.getItem("other"));
        }
    }

    @Test
    void thePreferencesReaderTakesStringsMarksOtherTypesAndRefusesDtdsAndOtherFiles() throws Exception {
        Path prefs = dir.resolve("SecureStore.xml");
        Files.write(prefs, ("<?xml version='1.0' encoding='utf-8' standalone='yes' ?>\n<map>\n"
                + "    <string name=\"key_v1-a\">{&quot;x&quot;:&quot;&lt;&amp;&gt;&quot;}</string>\n"
                + "    <int name=\"count\" value=\"3\" />\n</map>\n").getBytes(StandardCharsets.UTF_8));
        Map<String, Object> read = ExpoSecureStoreImport.readPreferences(prefs.toFile());
        assertEquals("{\"x\":\"<&>\"}", read.get("key_v1-a"));
        assertFalse(read.get("count") instanceof String);

        Path secret = dir.resolve("secret.txt");
        Files.write(secret, "outside".getBytes(StandardCharsets.UTF_8));
        Files.write(prefs, ("<?xml version='1.0'?>\n<!DOCTYPE map [<!ENTITY x SYSTEM \"" + secret.toUri()
                + "\">]>\n<map><string name=\"a\">&x;</string></map>\n").getBytes(StandardCharsets.UTF_8));
        assertThrows(java.io.IOException.class, () -> ExpoSecureStoreImport.readPreferences(prefs.toFile()),
                "a DTD (an external entity) must be refused");
        Files.write(prefs, "<plist><dict/></plist>".getBytes(StandardCharsets.UTF_8));
        assertThrows(java.io.IOException.class, () -> ExpoSecureStoreImport.readPreferences(prefs.toFile()));
    }

    @Test
    void theReadersAcceptWhatExpoWritesAndRefuseTheRest() {
        assertArrayEquals(new byte[] {(byte) 0xfb, (byte) 0xff}, ExpoSecureStoreImport.base64("+/8="));
        assertArrayEquals(new byte[] {(byte) 0xfb, (byte) 0xff}, ExpoSecureStoreImport.base64("+/8"));
        assertArrayEquals("hello".getBytes(StandardCharsets.UTF_8), ExpoSecureStoreImport.base64("aGVs\nbG8="));
        assertThrows(IllegalArgumentException.class, () -> ExpoSecureStoreImport.base64("aGV-"));
        assertThrows(IllegalArgumentException.class, () -> ExpoSecureStoreImport.base64("aGVsb"));
        assertThrows(IllegalArgumentException.class, () -> ExpoSecureStoreImport.base64("aA==aA"));

        Map<String, Object> o = ExpoJson.parseObject(
                "{\"ct\":\"a\\/b\",\"tlen\":128,\"ok\":true,\"n\":null,\"u\":\"\\u00e9\\n\",\"x\":[1,{\"y\":-2.5}]}");
        assertEquals("a/b", o.get("ct"));
        assertEquals(128L, o.get("tlen"));
        assertEquals(Boolean.TRUE, o.get("ok"));
        assertTrue(o.containsKey("n"));
        assertNull(o.get("n"));
        assertEquals("\u00e9\n", o.get("u"));
        for (String bad : List.of("", "[]", "{", "{\"a\":}", "{\"a\":1}x", "{\"a\":\"\\q\"}", "{\"a\":\"\\u12g4\"}",
                "{a:1}", "{\"a\":tru}")) {
            assertThrows(IllegalArgumentException.class, () -> ExpoJson.parseObject(bad), bad);
        }
    }
}

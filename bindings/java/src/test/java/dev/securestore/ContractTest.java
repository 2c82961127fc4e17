package dev.securestore;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * Expo SecureStore's contract through the Java bindings, against a real daemon hosted in this JVM,
 * over its Unix socket and over the in-process transport: every case runs on both.
 */
class ContractTest {
    static final int LIMIT = 1024;
    static final String PROJECT = "@java/contract";

    Path dir;
    SecureStoreHost host;

    @BeforeEach
    void startHost() throws Exception {
        dir = TestSupport.tempDir();
        host = SecureStoreHost.start(TestSupport.config(dir).maxValueBytes(LIMIT));
    }

    @AfterEach
    void stopHost() throws Exception {
        if (host != null) {
            host.stop();
        }
        TestSupport.deleteTree(dir);
    }

    SecureStore open(String transport, String project, String token) {
        return transport.equals("socket")
                ? SecureStore.connect(host.socketPath(), project, token)
                : host.connect(project, token);
    }

    @ParameterizedTest
    @ValueSource(strings = {"socket", "in-process"})
    void roundTripOverwriteDeleteAndNamespaces(String transport) {
        try (SecureStore store = open(transport, PROJECT, null)) {
            assertEquals(PROJECT, store.project());
            store.setItem("token", "s3cr3t");
            assertEquals("s3cr3t", store.getItem("token"));
            assertNull(store.getItem("never_set"));
            store.setItem("token", "second");
            assertEquals("second", store.getItem("token"));
            store.deleteItem("token");
            assertNull(store.getItem("token"));
            store.deleteItem("token");

            store.setItem("k", "in a", SecureStoreOptions.service("svc.a"));
            store.setItem("k", "in b", SecureStoreOptions.service("svc.b")
                    .withKeychainAccessible(KeychainAccessible.AFTER_FIRST_UNLOCK));
            assertEquals("in a", store.getItem("k", SecureStoreOptions.service("svc.a")));
            assertEquals("in b", store.getItem("k", SecureStoreOptions.service("svc.b")));
            assertNull(store.getItem("k"), "the default service is its own namespace");

            String utf8 = "h\u00e9llo \u2713 \u65e5\u672c\u8a9e \ud83d\udd10";
            store.setItem("utf8", utf8);
            assertEquals(utf8, store.getItem("utf8"));
            store.setItem("empty", "");
            assertEquals("", store.getItem("empty"));
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"socket", "in-process"})
    void byteForms(String transport) {
        try (SecureStore store = open(transport, PROJECT, null)) {
            byte[] value = "p\u00e4ssw\u00f6rd".getBytes(StandardCharsets.UTF_8);
            store.setItemBytes("bytes", value, SecureStoreOptions.DEFAULT);
            Arrays.fill(value, (byte) 0);
            byte[] back = store.getItemBytes("bytes", SecureStoreOptions.DEFAULT);
            assertArrayEquals("p\u00e4ssw\u00f6rd".getBytes(StandardCharsets.UTF_8), back);
            assertEquals("p\u00e4ssw\u00f6rd", store.getItem("bytes"));
            assertNull(store.getItemBytes("absent", SecureStoreOptions.DEFAULT));
            SecureStoreException notUtf8 = assertThrows(SecureStoreException.class,
                    () -> store.setItemBytes("bytes", new byte[] {(byte) 0xff, (byte) 0xfe}, SecureStoreOptions.DEFAULT));
            assertEquals(SecureStoreException.Code.INVALID_ARGUMENT, notUtf8.code());
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"socket", "in-process"})
    void everyInvalidInputHasItsException(String transport) {
        try (SecureStore store = open(transport, PROJECT, null)) {
            SecureStoreException.InvalidKey badKey =
                    assertThrows(SecureStoreException.InvalidKey.class, () -> store.setItem("bad key!", "x"));
            assertEquals(SecureStoreException.Code.INVALID_KEY, badKey.code());
            assertTrue(badKey.getMessage().startsWith(
                    "Invalid key provided to SecureStore. Keys must not be empty and contain only alphanumeric"),
                    badKey.getMessage());
            assertThrows(SecureStoreException.InvalidKey.class, () -> store.getItem(""));
            assertThrows(SecureStoreException.InvalidKey.class, () -> store.deleteItem("sl/ash"));
            assertThrows(SecureStoreException.InvalidKey.class, () -> store.getItem("k".repeat(1025)));
            SecureStoreException.InvalidService badService = assertThrows(SecureStoreException.InvalidService.class,
                    () -> store.getItem("k", SecureStoreOptions.service("")));
            assertEquals(SecureStoreException.Code.INVALID_SERVICE, badService.code());
            assertThrows(SecureStoreException.InvalidService.class,
                    () -> store.setItem("k", "v", SecureStoreOptions.service("x".repeat(256))));
            SecureStoreException nullKey = assertThrows(SecureStoreException.class, () -> store.getItem(null));
            assertEquals(SecureStoreException.Code.INVALID_ARGUMENT, nullKey.code());
            SecureStoreException nullValue = assertThrows(SecureStoreException.class, () -> store.setItem("k", null));
            assertEquals(SecureStoreException.Code.INVALID_ARGUMENT, nullValue.code());
        }
        SecureStoreException.InvalidProject badProject = assertThrows(
                SecureStoreException.InvalidProject.class, () -> open(transport, "bad project!", null));
        assertEquals(SecureStoreException.Code.INVALID_PROJECT, badProject.code());
        assertThrows(SecureStoreException.InvalidProject.class, () -> open(transport, "", null));
    }

    @ParameterizedTest
    @ValueSource(strings = {"socket", "in-process"})
    void theValueLimitIsNamed(String transport) {
        try (SecureStore store = open(transport, PROJECT, null)) {
            assertEquals(LIMIT, store.maxValueBytes());
            store.setItem("big", "v".repeat(LIMIT));
            assertEquals(LIMIT, store.getItem("big").length());
            SecureStoreException.ValueTooLarge tooLarge = assertThrows(SecureStoreException.ValueTooLarge.class,
                    () -> store.setItem("big", "v".repeat(LIMIT + 1)));
            assertEquals(SecureStoreException.Code.VALUE_TOO_LARGE, tooLarge.code());
            assertTrue(tooLarge.getMessage().contains("the limit is " + LIMIT + " bytes"), tooLarge.getMessage());
            // The limit is in UTF-8 bytes, not Java chars: 513 two-byte characters are 1026 bytes.
            assertThrows(SecureStoreException.ValueTooLarge.class, () -> store.setItem("big", "\u00e9".repeat(513)));
            assertEquals(LIMIT, store.getItem("big").length(), "a refused write changes nothing");
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"socket", "in-process"})
    void registeredProjectsNeedTheirToken(String transport) {
        String token = host.registerProject("@java/registered");
        SecureStoreException.Refused none =
                assertThrows(SecureStoreException.Refused.class, () -> open(transport, "@java/registered", null));
        assertEquals(SecureStoreException.Code.REFUSED, none.code());
        assertThrows(SecureStoreException.Refused.class, () -> open(transport, "@java/registered", "wrong"));
        try (SecureStore store = open(transport, "@java/registered", token)) {
            store.setItem("k", "registered");
            assertEquals("registered", store.getItem("k"));
        }
        assertThrows(SecureStoreException.Refused.class, () -> host.registerProject("@java/registered"));
    }

    @ParameterizedTest
    @ValueSource(strings = {"socket", "in-process"})
    void projectsAreIsolated(String transport) {
        try (SecureStore a = open(transport, "@java/a", null);
                SecureStore b = open(transport, "@java/b", null)) {
            a.setItem("same", "a's");
            assertNull(b.getItem("same"));
            b.setItem("same", "b's");
            assertEquals("a's", a.getItem("same"));
            b.deleteItem("same");
            assertEquals("a's", a.getItem("same"));
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"socket", "in-process"})
    void eightThreadsShareOneConnection(String transport) throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(8);
        try (SecureStore store = open(transport, PROJECT, null)) {
            List<Future<Integer>> results = new ArrayList<>();
            for (int t = 0; t < 8; t++) {
                int thread = t;
                results.add(pool.submit(() -> {
                    int done = 0;
                    for (int i = 0; i < 40; i++) {
                        String key = "t" + thread + "_" + (i % 5);
                        String value = "thread " + thread + " round " + i;
                        store.setItem(key, value, SecureStoreOptions.service("threads"));
                        assertEquals(value, store.getItem(key, SecureStoreOptions.service("threads")));
                        done++;
                    }
                    return done;
                }));
            }
            int total = 0;
            for (Future<Integer> result : results) {
                total += result.get();
            }
            assertEquals(8 * 40, total);
        } finally {
            pool.shutdownNow();
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"socket", "in-process"})
    void asyncForms(String transport) {
        try (SecureStore store = open(transport, PROJECT, null)) {
            store.setItemAsync("async", "later", SecureStoreOptions.DEFAULT).join();
            assertEquals("later", store.getItemAsync("async", SecureStoreOptions.DEFAULT).join());
            store.deleteItemAsync("async", SecureStoreOptions.DEFAULT).join();
            assertNull(store.getItemAsync("async", SecureStoreOptions.DEFAULT).join());
            CompletionException failed = assertThrows(CompletionException.class,
                    () -> store.getItemAsync("bad key!", SecureStoreOptions.DEFAULT).join());
            assertInstanceOf(SecureStoreException.InvalidKey.class, failed.getCause());
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"socket", "in-process"})
    void aValueWithAnUnpairedSurrogateIsRefusedNotAltered(String transport) {
        try (SecureStore store = open(transport, PROJECT, null)) {
            for (String bad : new String[] {"a\uD800b", "\uDC00", "end\uD83D"}) {
                SecureStoreException err = assertThrows(SecureStoreException.class,
                        () -> store.setItem("surrogate", bad, SecureStoreOptions.DEFAULT));
                assertEquals(SecureStoreException.Code.INVALID_ARGUMENT, err.code());
            }
            assertNull(store.getItem("surrogate"));
            store.setItem("surrogate", "ok \uD83D\uDE00", SecureStoreOptions.DEFAULT);
            assertEquals("ok \uD83D\uDE00", store.getItem("surrogate"));
        }
    }

    /** Unawaited async calls take effect in the order they were made, as Expo's do. */
    @ParameterizedTest
    @ValueSource(strings = {"socket", "in-process"})
    void unawaitedAsyncCallsTakeEffectInOrder(String transport) {
        try (SecureStore store = open(transport, PROJECT, null)) {
            for (int i = 0; i < 200; i++) {
                CompletableFuture<Void> first = store.setItemAsync("ordered", "first" + i, SecureStoreOptions.DEFAULT);
                CompletableFuture<Void> second = store.setItemAsync("ordered", "second" + i, SecureStoreOptions.DEFAULT);
                CompletableFuture<String> read = store.getItemAsync("ordered", SecureStoreOptions.DEFAULT);
                CompletableFuture<Void> deleted = store.deleteItemAsync("ordered", SecureStoreOptions.DEFAULT);
                CompletableFuture<String> gone = store.getItemAsync("ordered", SecureStoreOptions.DEFAULT);
                first.join();
                second.join();
                deleted.join();
                assertEquals("second" + i, read.join(), "round " + i);
                assertNull(gone.join(), "round " + i);
            }
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"socket", "in-process"})
    void containsListClearAndConditionalWrites(String transport) {
        try (SecureStore store = open(transport, PROJECT, null)) {
            SecureStoreOptions a = SecureStoreOptions.service("svc.a");
            store.setItem("b", "1", a);
            store.setItem("a", "2", a);
            store.setItem("x", "3");
            assertTrue(store.contains("a", a));
            assertFalse(store.contains("a", SecureStoreOptions.DEFAULT));
            assertEquals(java.util.Arrays.asList("a", "b"), store.listKeys(a));
            assertEquals(java.util.Arrays.asList("app", "svc.a"), store.listServices());
            assertTrue(store.listKeys(SecureStoreOptions.service("empty")).isEmpty());

            store.setItemIf("new", null, "v", a);
            SecureStoreException.Conflict conflict = assertThrows(SecureStoreException.Conflict.class,
                    () -> store.setItemIf("new", null, "w", a));
            assertEquals(SecureStoreException.Code.CONFLICT, conflict.code());
            store.setItemIf("new", "v", "w", a);
            assertEquals("w", store.getItem("new", a));
            assertThrows(SecureStoreException.Conflict.class, () -> store.deleteItemIf("new", "v", a));
            store.deleteItemIf("new", "w", a);
            assertNull(store.getItem("new", a));

            long watcher = store.watch("svc.a", null);
            store.setItem("w", "secret", a);
            store.setItem("elsewhere", "v");
            store.deleteItem("w", a);
            java.util.List<ChangeEvent> seen = new java.util.ArrayList<>();
            while (seen.size() < 2) {
                ChangeEvent.Batch batch = store.pollEvents(watcher, 5000);
                assertEquals(0L, batch.missed());
                assertFalse(batch.events().isEmpty(), "events come");
                seen.addAll(batch.events());
            }
            assertEquals(ChangeEvent.Kind.SET, seen.get(0).kind());
            assertEquals("w", seen.get(0).key());
            assertEquals("svc.a", seen.get(0).service());
            assertEquals(ChangeEvent.Kind.DELETED, seen.get(1).kind());
            assertTrue(seen.get(0).seq() < seen.get(1).seq());
            assertFalse(seen.toString().contains("secret"), "never values");
            store.unwatch(watcher);

            store.writeBatch(new WriteBatch().set("t1", "1", a).setIf("t2", null, "2", a).setIf("t1", "1", "3", a));
            assertEquals("3", store.getItem("t1", a));
            SecureStoreException.Conflict failed = assertThrows(SecureStoreException.Conflict.class,
                    () -> store.writeBatch(new WriteBatch().delete("t1", a).deleteIf("t2", "wrong", a)));
            assertTrue(failed.getMessage().contains("operation 1"), failed.getMessage());
            assertEquals("3", store.getItem("t1", a), "nothing applied");
            store.writeBatch(new WriteBatch().delete("t1", a).deleteIf("t2", "2", a));
            assertNull(store.getItem("t2", a));

            assertEquals(2L, store.clear(a));
            assertTrue(store.listKeys(a).isEmpty());
            assertEquals(2L, store.clearAll(), "x and elsewhere");
            assertTrue(store.listServices().isEmpty());
        }
    }

    @Test
    void aClosedStoreRefusesCallsAndClosingTwiceIsHarmless() {
        SecureStore store = SecureStore.connect(host.socketPath(), PROJECT);
        store.close();
        assertFalse(store.isOpen());
        assertThrows(IllegalStateException.class, () -> store.getItem("k"));
        store.close();
    }

    @Test
    void nobodyListeningIsUnreachable() {
        SecureStoreException.Unreachable err = assertThrows(SecureStoreException.Unreachable.class,
                () -> SecureStore.connect(dir.resolve("run/nobody.sock").toString(), PROJECT));
        assertEquals(SecureStoreException.Code.UNREACHABLE, err.code());
    }

    @Test
    void aSecondHostOnTheSameSocketOrDataFolderIsAClearError() throws Exception {
        SecureStoreException.HostFailed sameSocket = assertThrows(SecureStoreException.HostFailed.class,
                () -> SecureStoreHost.start(new SecureStoreHost.Config(
                        host.socketPath(), dir.resolve("data2").toString(), dir.resolve("state/k2").toString())));
        assertTrue(sameSocket.getMessage().contains("already"), sameSocket.getMessage());
        SecureStoreException.HostFailed sameData = assertThrows(SecureStoreException.HostFailed.class,
                () -> SecureStoreHost.start(new SecureStoreHost.Config(
                        dir.resolve("run/other.sock").toString(), dir.resolve("data").toString(),
                        dir.resolve("state/master.key").toString())));
        assertTrue(sameData.getMessage().contains("data folder"), sameData.getMessage());
    }

    @Test
    void aStrictHostRefusesUnregisteredProjects() throws Exception {
        Path other = TestSupport.tempDir();
        try (SecureStoreHost strict = SecureStoreHost.start(
                TestSupport.config(other).policy(SecureStoreHost.Policy.STRICT))) {
            assertThrows(SecureStoreException.Refused.class, () -> strict.connect("@java/unregistered"));
            assertThrows(SecureStoreException.Refused.class,
                    () -> SecureStore.connect(strict.socketPath(), "@java/unregistered"));
            String token = strict.registerProject("@java/registered");
            try (SecureStore store = strict.connect("@java/registered", token)) {
                store.setItem("k", "v");
            }
        } finally {
            TestSupport.deleteTree(other);
        }
    }

    @Test
    void stoppingTheHostEndsItsClientsAndFreesTheSocket() throws Exception {
        SecureStore inProcess = host.connect(PROJECT);
        SecureStore overSocket = SecureStore.connect(host.socketPath(), PROJECT);
        inProcess.setItem("k", "durable");
        host.stop();
        assertThrows(SecureStoreException.Unreachable.class, () -> inProcess.getItem("k"));
        assertThrows(SecureStoreException.Unreachable.class, () -> overSocket.getItem("k"));
        assertThrows(IllegalStateException.class, () -> host.connect(PROJECT));
        inProcess.close();
        overSocket.close();
        host = SecureStoreHost.start(TestSupport.config(dir).maxValueBytes(LIMIT));
        try (SecureStore again = SecureStore.connect(host.socketPath(), PROJECT)) {
            assertEquals("durable", again.getItem("k"));
        }
    }
}

package dev.securestore;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.OutputStreamWriter;
import java.io.Writer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The daemon hosted by one JVM process (A, {@link HostMain}), reached by another JVM process (B,
 * {@link ClientMain}), by the Rust {@code securestore} CLI and by this test's JVM: each sees the
 * others' writes, another project sees none, and a SIGKILL of A loses no acknowledged write.
 */
class MultiProcessTest {
    static final String PROJECT = "@java/multi";

    Path dir;
    Process host;
    BufferedReader hostOut;
    Writer hostIn;

    @BeforeEach
    void setUp() throws IOException {
        dir = TestSupport.tempDir();
    }

    @AfterEach
    void tearDown() throws Exception {
        if (host != null && host.isAlive()) {
            host.destroyForcibly().waitFor();
        }
        TestSupport.deleteTree(dir);
    }

    String socket() {
        return dir.resolve("run/securestored.sock").toString();
    }

    static ProcessBuilder java(String mainClass, String... args) {
        List<String> command = new ArrayList<>();
        command.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        command.add("-cp");
        // The console launcher runs with -jar, so the bindings' classes are named by run-tests.sh.
        command.add(System.getProperty("securestore.classpath", System.getProperty("java.class.path")));
        command.add("-Dsecurestore.library=" + System.getProperty("securestore.library"));
        command.add(mainClass);
        command.addAll(Arrays.asList(args));
        return new ProcessBuilder(command).redirectError(ProcessBuilder.Redirect.INHERIT);
    }

    void startHost(String backend) throws IOException {
        host = java("dev.securestore.HostMain", socket(), dir.resolve("data").toString(),
                dir.resolve("state/master.key").toString(), backend, PROJECT).start();
        hostOut = new BufferedReader(new InputStreamReader(host.getInputStream(), StandardCharsets.UTF_8));
        hostIn = new OutputStreamWriter(host.getOutputStream(), StandardCharsets.UTF_8);
        assertEquals("READY", hostOut.readLine(), "process A did not start its host");
    }

    String hostCommand(String line) throws IOException {
        hostIn.write(line + "\n");
        hostIn.flush();
        return hostOut.readLine();
    }

    /** Runs process B to completion and returns its output lines. */
    static List<String> client(String socket, String project, String... args) throws Exception {
        String[] all = new String[args.length + 2];
        all[0] = socket;
        all[1] = project;
        System.arraycopy(args, 0, all, 2, args.length);
        Process b = java("dev.securestore.ClientMain", all).start();
        List<String> lines = new ArrayList<>();
        try (BufferedReader out = new BufferedReader(new InputStreamReader(b.getInputStream(), StandardCharsets.UTF_8))) {
            String line;
            while ((line = out.readLine()) != null) {
                lines.add(line);
            }
        }
        assertTrue(b.waitFor(60, TimeUnit.SECONDS));
        assertEquals(0, b.exitValue(), "process B failed: " + lines);
        return lines;
    }

    /** Runs the Rust CLI; returns {exit code, stdout}. */
    Object[] cli(String project, String... args) throws Exception {
        List<String> command = new ArrayList<>(List.of(
                TestSupport.cli(), "--socket", socket(), "--project", project));
        command.addAll(Arrays.asList(args));
        Process p = new ProcessBuilder(command).redirectError(ProcessBuilder.Redirect.INHERIT).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
        assertTrue(p.waitFor(60, TimeUnit.SECONDS));
        return new Object[] {p.exitValue(), out};
    }

    @Test
    void everyProcessSeesTheOthersWritesAndAnotherProjectSeesNone() throws Exception {
        startHost("SQLITE");
        assertEquals("OK", hostCommand("set from_a written by A"));
        assertEquals(List.of("OK"), client(socket(), PROJECT, "set", "from_b", "written by B"));
        assertEquals(0, cli(PROJECT, "set", "from_cli", "written by the CLI")[0]);

        assertEquals("written by B", hostCommand("get from_b"));
        assertEquals("written by the CLI", hostCommand("get from_cli"));
        assertEquals(List.of("written by A"), client(socket(), PROJECT, "get", "from_a"));
        assertEquals(List.of("written by the CLI"), client(socket(), PROJECT, "get", "from_cli"));
        assertEquals("written by A", cli(PROJECT, "get", "from_a")[1]);
        assertEquals("written by B", cli(PROJECT, "get", "from_b")[1]);
        try (SecureStore here = SecureStore.connect(socket(), PROJECT)) {
            assertEquals("written by A", here.getItem("from_a"));
            assertEquals("written by B", here.getItem("from_b"));
            assertEquals("written by the CLI", here.getItem("from_cli"));
        }

        String other = "@java/other";
        for (String key : List.of("from_a", "from_b", "from_cli")) {
            assertEquals(List.of("<absent>"), client(socket(), other, "get", key));
            Object[] result = cli(other, "get", key);
            assertEquals(1, result[0], "the CLI's not-found status for " + key + ": " + result[1]);
        }

        assertEquals("STOPPED", hostCommand("stop"));
        assertTrue(host.waitFor(30, TimeUnit.SECONDS));
        assertEquals(0, host.exitValue());
    }

    @Test
    void killingTheHostWithSigkillLosesNoAcknowledgedWrite() throws Exception {
        startHost("SQLITE");
        Process writer = java("dev.securestore.ClientMain", socket(), PROJECT, "write", "k", "100000").start();
        List<Integer> acked = new ArrayList<>();
        try (BufferedReader out = new BufferedReader(
                new InputStreamReader(writer.getInputStream(), StandardCharsets.UTF_8))) {
            String line;
            while ((line = out.readLine()) != null) {
                if (line.startsWith("ACK ")) {
                    acked.add(Integer.parseInt(line.substring(4)));
                    if (acked.size() == 200) {
                        host.destroyForcibly(); // SIGKILL, mid-stream
                    }
                }
            }
        }
        assertTrue(writer.waitFor(60, TimeUnit.SECONDS));
        assertTrue(host.waitFor(30, TimeUnit.SECONDS));
        assertEquals(137, host.exitValue(), "process A must have died of SIGKILL");
        assertEquals(3, writer.exitValue(), "the writer must have seen its daemon vanish");
        assertTrue(acked.size() >= 200, "acknowledged writes: " + acked.size());
        System.out.println("acknowledged before SIGKILL: " + acked.size());

        startHost("SQLITE");
        try (SecureStore store = SecureStore.connect(socket(), PROJECT)) {
            for (int i : acked) {
                assertEquals("value-" + i, store.getItem("k" + i), "acknowledged write k" + i + " was lost");
            }
            assertNull(store.getItem("k" + (acked.get(acked.size() - 1) + 2)), "nothing was invented");
        }
        assertEquals("STOPPED", hostCommand("stop"));
    }
}

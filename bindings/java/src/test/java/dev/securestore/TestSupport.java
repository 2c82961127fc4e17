package dev.securestore;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.stream.Stream;

/** Temp folders and host configurations for the tests. */
final class TestSupport {
    private TestSupport() {}

    /** A fresh folder under /tmp (short, so socket paths stay under the 108-byte limit). */
    static Path tempDir() throws IOException {
        return Files.createTempDirectory(Path.of("/tmp"), "ss-java");
    }

    static SecureStoreHost.Config config(Path dir) {
        return new SecureStoreHost.Config(
                dir.resolve("run/securestored.sock").toString(),
                dir.resolve("data").toString(),
                dir.resolve("state/master.key").toString());
    }

    static void deleteTree(Path dir) throws IOException {
        if (dir == null || !Files.exists(dir)) {
            return;
        }
        try (Stream<Path> paths = Files.walk(dir)) {
            paths.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        }
    }

    /** The Rust `securestore` CLI, named by run-tests.sh. */
    static String cli() {
        String cli = System.getProperty("securestore.cli");
        if (cli == null) {
            throw new IllegalStateException("run through bindings/java/run-tests.sh (-Dsecurestore.cli is unset)");
        }
        return cli;
    }
}

package dev.securestore;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;

/**
 * Process A of the multi-process test: hosts the daemon in its JVM, then obeys stdin, one command a
 * line: {@code set KEY VALUE} and {@code get KEY} (in-process, project {@code args[4]}), {@code stop}.
 * Prints {@code READY} once serving, one answer line per command, {@code STOPPED} after a clean stop.
 *
 * <p>Usage: {@code HostMain SOCKET DATA_DIR KEY_FILE BACKEND PROJECT}
 */
public final class HostMain {
    private HostMain() {}

    public static void main(String[] args) throws Exception {
        SecureStoreHost host = SecureStoreHost.start(new SecureStoreHost.Config(args[0], args[1], args[2])
                .backend(SecureStoreHost.Backend.valueOf(args[3])));
        SecureStore store = host.connect(args[4]);
        System.out.println("READY");
        System.out.flush();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        String line;
        while ((line = in.readLine()) != null) {
            String[] words = line.split(" ", 3);
            switch (words[0]) {
                case "set":
                    store.setItem(words[1], words[2]);
                    System.out.println("OK");
                    break;
                case "get":
                    String value = store.getItem(words[1]);
                    System.out.println(value == null ? "<absent>" : value);
                    break;
                case "stop":
                    store.close();
                    host.stop();
                    System.out.println("STOPPED");
                    System.out.flush();
                    return;
                default:
                    System.out.println("unknown command " + words[0]);
            }
            System.out.flush();
        }
    }
}

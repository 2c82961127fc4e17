package dev.securestore;

/**
 * Process B of the multi-process test: a plain client over the socket.
 *
 * <p>Usage: {@code ClientMain SOCKET PROJECT get KEY}, {@code ... set KEY VALUE}, or
 * {@code ... write PREFIX COUNT}: sets PREFIX0..PREFIX(COUNT-1) to "value-i", printing
 * {@code ACK i} after each acknowledged write, and stops at the first failure (exit 3).
 */
public final class ClientMain {
    private ClientMain() {}

    public static void main(String[] args) {
        try (SecureStore store = SecureStore.connect(args[0], args[1])) {
            switch (args[2]) {
                case "get":
                    String value = store.getItem(args[3]);
                    System.out.println(value == null ? "<absent>" : value);
                    break;
                case "set":
                    store.setItem(args[3], args[4]);
                    System.out.println("OK");
                    break;
                case "write":
                    int count = Integer.parseInt(args[4]);
                    for (int i = 0; i < count; i++) {
                        try {
                            store.setItem(args[3] + i, "value-" + i);
                        } catch (SecureStoreException e) {
                            System.out.println("FAILED " + i + " " + e.code());
                            System.out.flush();
                            System.exit(3);
                        }
                        System.out.println("ACK " + i);
                        System.out.flush();
                    }
                    break;
                default:
                    throw new IllegalArgumentException(args[2]);
            }
        }
    }
}

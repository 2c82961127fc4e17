package dev.securestore;

import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyStore;
import java.security.PublicKey;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import javax.crypto.Cipher;
import javax.crypto.KeyGenerator;
import javax.crypto.SecretKey;
import javax.crypto.spec.GCMParameterSpec;

/**
 * Writes what expo-secure-store (57.x) leaves on an Android device, on this desktop JVM: the
 * preferences file {@code shared_prefs/SecureStore.xml} and, in place of {@code AndroidKeyStore}, a
 * PKCS12 file holding the same keys under the same aliases.
 *
 * <p>Encryption is {@code AESEncryptor}'s: one AES-256 key per {@code keychainService} (and per
 * {@code requireAuthentication}) under {@code "AES/GCM/NoPadding:<service>:keystoreUnauthenticated"}
 * (or {@code ...Authenticated}), {@code AES/GCM/NoPadding} with the 12-byte IV the provider picks and
 * a 128-bit tag appended to the ciphertext, both base64 without wrapping ({@code Base64.NO_WRAP},
 * which is {@code java.util.Base64}'s basic encoder). The JSON is what Android's {@code org.json}
 * prints (members in insertion order, {@code /} escaped as {@code \/}); the XML what
 * {@code SharedPreferencesImpl} writes ({@code XmlUtils} over {@code FastXmlSerializer}).
 *
 * <p>Run {@code main(dir)} to write a complete fixture into {@code dir}.
 */
final class ExpoFixture {
    static final char[] PASSWORD = "expo-fixture".toCharArray();

    final Path prefsFile;
    final Path keystoreFile;
    final KeyStore keyStore;
    /** Preference name → its string, in name order, as the app's {@code getAll()} returns them. */
    final Map<String, String> preferences = new TreeMap<>();

    private ExpoFixture(Path dir, KeyStore keyStore) {
        this.prefsFile = dir.resolve("shared_prefs/SecureStore.xml");
        this.keystoreFile = dir.resolve("expo-keystore.p12");
        this.keyStore = keyStore;
    }

    /** An empty fixture in {@code dir}, with an RSA key for the hybrid scheme when asked. */
    static ExpoFixture create(Path dir, boolean withHybridKey) throws Exception {
        Path keystore = dir.resolve("expo-keystore.p12");
        Files.createDirectories(dir);
        if (withHybridKey) {
            // Only keytool makes the certificate a PKCS12 private-key entry needs.
            Process keytool = new ProcessBuilder(
                    Path.of(System.getProperty("java.home"), "bin", "keytool").toString(),
                    "-genkeypair", "-noprompt", "-alias", hybridAlias(ExpoSecureStoreImport.EXPO_DEFAULT_SERVICE),
                    "-keyalg", "RSA", "-keysize", "2048", "-dname", "CN=expo hybrid fixture",
                    "-validity", "3650", "-storetype", "PKCS12", "-keystore", keystore.toString(),
                    "-storepass", new String(PASSWORD), "-keypass", new String(PASSWORD))
                    .redirectErrorStream(true).start();
            String out = new String(keytool.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
            if (!keytool.waitFor(60, TimeUnit.SECONDS) || keytool.exitValue() != 0) {
                throw new IllegalStateException("keytool failed: " + out);
            }
        }
        KeyStore keyStore = KeyStore.getInstance("PKCS12");
        if (withHybridKey) {
            try (InputStream in = Files.newInputStream(keystore)) {
                keyStore.load(in, PASSWORD);
            }
        } else {
            keyStore.load(null, PASSWORD);
        }
        return new ExpoFixture(dir, keyStore);
    }

    static String aesAlias(String service, boolean requireAuthentication) {
        return ExpoSecureStoreImport.AES_CIPHER + ":" + service + ":"
                + (requireAuthentication ? ExpoSecureStoreImport.AUTHENTICATED_SUFFIX
                        : ExpoSecureStoreImport.UNAUTHENTICATED_SUFFIX);
    }

    static String hybridAlias(String service) {
        return ExpoSecureStoreImport.RSA_CIPHER + ":" + service;
    }

    /**
     * {@code SecureStore.setItemAsync(key, value, {keychainService: service, requireAuthentication})}
     * on API 23+: the key made on first use, then {@code AESEncryptor.createEncryptedItem} and
     * {@code saveEncryptedItem}. Returns the preference's name.
     */
    String setItem(String service, String key, String value, boolean requireAuthentication) throws Exception {
        String alias = aesAlias(service, requireAuthentication);
        if (!keyStore.containsAlias(alias)) {
            KeyGenerator generator = KeyGenerator.getInstance("AES");
            generator.init(256);
            keyStore.setEntry(alias, new KeyStore.SecretKeyEntry(generator.generateKey()),
                    new KeyStore.PasswordProtection(PASSWORD));
        }
        SecretKey secretKey = (SecretKey) keyStore.getKey(alias, PASSWORD);
        Map<String, Object> item = encrypted(secretKey, value);
        item.put("scheme", "aes");
        item.put("usesKeystoreSuffix", true);
        item.put("keystoreAlias", service);
        item.put("requireAuthentication", requireAuthentication);
        String name = service + "-" + key;
        preferences.put(name, json(item));
        return name;
    }

    /**
     * An entry from before expo-secure-store 12.8 on API 22: a bare key, the {@code "hybrid"}
     * scheme (a random AES key wrapped by the RSA key {@code "RSA/None/PKCS1Padding:key_v1"}), no
     * {@code keystoreAlias}, no suffix.
     */
    String setLegacyHybridItem(String key, String value) throws Exception {
        KeyGenerator generator = KeyGenerator.getInstance("AES");
        generator.init(256);
        SecretKey secretKey = generator.generateKey();
        PublicKey rsa = keyStore.getCertificate(hybridAlias(ExpoSecureStoreImport.EXPO_DEFAULT_SERVICE)).getPublicKey();
        Cipher wrap = Cipher.getInstance("RSA/ECB/PKCS1Padding"); // Android's "RSA/None/PKCS1Padding"
        wrap.init(Cipher.ENCRYPT_MODE, rsa);
        Map<String, Object> item = encrypted(secretKey, value);
        item.put("esk", Base64.getEncoder().encodeToString(wrap.doFinal(secretKey.getEncoded())));
        item.put("scheme", "hybrid");
        preferences.put(key, json(item));
        return key;
    }

    /** A preference with exactly {@code text}, for corrupted entries. */
    void putRaw(String name, String text) {
        preferences.put(name, text);
    }

    /** Removes a key from the keystore, as a reinstall or a restored backup leaves things. */
    void deleteKey(String alias) throws GeneralSecurityException {
        keyStore.deleteEntry(alias);
    }

    /** {@code createEncryptedItemWithCipher}: {ct, iv, tlen}, the IV chosen by the provider. */
    private static Map<String, Object> encrypted(SecretKey key, String value) throws GeneralSecurityException {
        Cipher cipher = Cipher.getInstance(ExpoSecureStoreImport.AES_CIPHER);
        cipher.init(Cipher.ENCRYPT_MODE, key);
        GCMParameterSpec gcm = cipher.getParameters().getParameterSpec(GCMParameterSpec.class);
        if (gcm.getIV().length != 12 || gcm.getTLen() != 128) {
            throw new IllegalStateException("unexpected GCM parameters " + gcm.getIV().length + "/" + gcm.getTLen());
        }
        byte[] ciphertext = cipher.doFinal(value.getBytes(StandardCharsets.UTF_8));
        Map<String, Object> item = new LinkedHashMap<>();
        item.put("ct", Base64.getEncoder().encodeToString(ciphertext));
        item.put("iv", Base64.getEncoder().encodeToString(gcm.getIV()));
        item.put("tlen", gcm.getTLen());
        return item;
    }

    /** Writes the preferences file and the keystore file. */
    void write() throws Exception {
        Files.createDirectories(prefsFile.getParent());
        StringBuilder xml = new StringBuilder("<?xml version='1.0' encoding='utf-8' standalone='yes' ?>\n<map>\n");
        for (Map.Entry<String, String> e : preferences.entrySet()) {
            xml.append("    <string name=\"").append(xmlEscape(e.getKey())).append("\">")
                    .append(xmlEscape(e.getValue())).append("</string>\n");
        }
        xml.append("</map>\n");
        Files.write(prefsFile, xml.toString().getBytes(StandardCharsets.UTF_8));
        try (OutputStream out = Files.newOutputStream(keystoreFile)) {
            keyStore.store(out, PASSWORD);
        }
    }

    /** The keystore as written, loaded again from its file. */
    KeyStore loadKeyStore() throws Exception {
        KeyStore loaded = KeyStore.getInstance("PKCS12");
        try (InputStream in = Files.newInputStream(keystoreFile)) {
            loaded.load(in, PASSWORD);
        }
        return loaded;
    }

    /** Android's {@code JSONObject.toString()}: no spaces, insertion order, {@code JSONStringer} quoting. */
    static String json(Map<String, Object> members) {
        StringBuilder out = new StringBuilder("{");
        for (Map.Entry<String, Object> e : members.entrySet()) {
            if (out.length() > 1) {
                out.append(',');
            }
            quote(out, e.getKey());
            out.append(':');
            Object v = e.getValue();
            if (v instanceof String) {
                quote(out, (String) v);
            } else {
                out.append(v);
            }
        }
        return out.append('}').toString();
    }

    private static void quote(StringBuilder out, String text) {
        out.append('"');
        for (char c : text.toCharArray()) {
            switch (c) {
                case '"':
                case '\\':
                case '/':
                    out.append('\\').append(c);
                    break;
                case '\t':
                    out.append("\\t");
                    break;
                case '\b':
                    out.append("\\b");
                    break;
                case '\n':
                    out.append("\\n");
                    break;
                case '\r':
                    out.append("\\r");
                    break;
                case '\f':
                    out.append("\\f");
                    break;
                default:
                    if (c <= 0x1f || c == '\u2028' || c == '\u2029') {
                        out.append(String.format("\\u%04x", (int) c));
                    } else {
                        out.append(c);
                    }
            }
        }
        out.append('"');
    }

    /** {@code FastXmlSerializer}'s escaping of text and attribute values. */
    private static String xmlEscape(String text) {
        StringBuilder out = new StringBuilder();
        for (char c : text.toCharArray()) {
            switch (c) {
                case '"':
                    out.append("&quot;");
                    break;
                case '&':
                    out.append("&amp;");
                    break;
                case '<':
                    out.append("&lt;");
                    break;
                case '>':
                    out.append("&gt;");
                    break;
                default:
                    if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
                        out.append("&#").append((int) c).append(';');
                    } else {
                        out.append(c);
                    }
            }
        }
        return out.toString();
    }

    /** The entries of the full fixture, as {@link #writeFull} makes them. */
    static final String DEFAULT_TOKEN = "key_v1-refresh_token";
    static final String DEFAULT_USER = "key_v1-user.id";
    static final String CUSTOM_PIN = "payments-card_pin";
    static final String DASHED = "my-app-a-b";
    static final String AUTHENTICATED = "key_v1-bio_secret";
    static final String CORRUPTED = "key_v1-broken";
    static final String KEY_GONE = "orphan-session";
    static final String NOT_JSON = "key_v1-garbled";
    static final String HYBRID = "legacy_pin";

    /**
     * Every kind of entry: two in the default service (one with non-ASCII text), one in a custom
     * service, one in a service holding '-', one with {@code requireAuthentication}, one whose
     * ciphertext was altered, one whose key is gone, one that is not JSON, and an old bare-key
     * hybrid one.
     */
    static ExpoFixture writeFull(Path dir) throws Exception {
        ExpoFixture f = create(dir, true);
        f.setItem("key_v1", "refresh_token", "rt-\u0436\u0435\u0442\u043e\u043d \u2713 \"quoted\" </map>", false);
        f.setItem("key_v1", "user.id", "user-42", false);
        f.setItem("payments", "card_pin", "4321", false);
        f.setItem("my-app", "a-b", "dash/ed+value==", false);
        f.setItem("key_v1", "bio_secret", "behind a fingerprint", true);
        String broken = f.setItem("key_v1", "broken", "will not open", false);
        f.putRaw(broken, flipCiphertextBit(f.preferences.get(broken)));
        f.setItem("orphan", "session", "its key is gone", false);
        f.deleteKey(aesAlias("orphan", false));
        f.putRaw(NOT_JSON, "{\"ct\":\"AAAA\",\"iv\":");
        f.setLegacyHybridItem(HYBRID, "0000");
        f.write();
        return f;
    }

    /** The entry with one bit of its ciphertext flipped: still base64, still JSON. */
    private static String flipCiphertextBit(String json) {
        int start = json.indexOf("\"ct\":\"") + 6;
        int end = json.indexOf('"', start);
        byte[] ct = Base64.getDecoder().decode(json.substring(start, end).replace("\\/", "/"));
        ct[0] ^= 1;
        String altered = Base64.getEncoder().encodeToString(ct).replace("/", "\\/");
        return json.substring(0, start) + altered + json.substring(end);
    }

    /** Writes the full fixture into {@code args[0]} and lists its preferences. */
    public static void main(String[] args) throws Exception {
        ExpoFixture f = writeFull(Path.of(args[0]));
        System.out.println(f.prefsFile + "\n" + f.keystoreFile);
        List<String> names = List.copyOf(f.preferences.keySet());
        names.forEach(System.out::println);
    }
}

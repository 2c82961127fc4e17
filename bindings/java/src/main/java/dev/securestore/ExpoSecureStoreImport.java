package dev.securestore;

import java.io.ByteArrayOutputStream;
import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.Key;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.UnrecoverableKeyException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Set;
import java.util.TreeMap;
import javax.crypto.AEADBadTagException;
import javax.crypto.BadPaddingException;
import javax.crypto.Cipher;
import javax.crypto.SecretKey;
import javax.crypto.spec.GCMParameterSpec;
import javax.crypto.spec.SecretKeySpec;
import javax.xml.XMLConstants;
import javax.xml.parsers.DocumentBuilder;
import javax.xml.parsers.DocumentBuilderFactory;
import javax.xml.parsers.ParserConfigurationException;
import org.w3c.dom.Document;
import org.w3c.dom.Element;
import org.w3c.dom.Node;
import org.w3c.dom.NodeList;
import org.xml.sax.ErrorHandler;
import org.xml.sax.SAXException;
import org.xml.sax.SAXParseException;

/**
 * Imports what an app stored with expo-secure-store on Android into a securestore project, inside
 * the app: run it in the process that hosts securestore (it has the app's uid, so it can read the
 * {@code SecureStore} preferences and use the app's {@code AndroidKeyStore} keys).
 *
 * <p>Each preference {@code "<keychainService>-<key>"} holds a JSON entry sealed with AES-256-GCM by
 * the Keystore key {@code "AES/GCM/NoPadding:<keychainService>:keystoreUnauthenticated"} (or
 * {@code ...:keystoreAuthenticated} for {@code requireAuthentication}); the old {@code "hybrid"}
 * scheme wraps an AES key with the RSA key {@code "RSA/None/PKCS1Padding:<keychainService>"}. Each
 * entry is decrypted here with {@code javax.crypto} and stored with {@link SecureStore#setItemIf}
 * under the same key, in the same service except Expo's default {@code key_v1}, which becomes
 * securestore's default service ({@code "app"}, Expo's iOS default too). See
 * {@code docs/android.md}.
 *
 * <p>Safe to run again: an item already holding the same value is reported
 * {@link Reason#ALREADY_PRESENT} (an {@link Outcome#IMPORTED} outcome); an item holding a
 * different value is left as it is ({@link Reason#DIFFERENT_VALUE_PRESENT}) unless
 * {@link #overwriteDifferentValues(boolean)} asks otherwise. The source is never changed, except
 * that {@link #deleteSourceAfterFullImport(boolean)} removes it after a run in which every entry
 * was imported.
 *
 * <p>Blocks (Keystore, disk, daemon): never on the main thread. Not thread-safe: configure, then
 * call {@link #run} from one thread.
 */
public final class ExpoSecureStoreImport {
    /** Expo's Android default {@code keychainService}. */
    public static final String EXPO_DEFAULT_SERVICE = "key_v1";
    /** The name of Expo's preferences file ({@code shared_prefs/SecureStore.xml}). */
    public static final String PREFERENCES_NAME = "SecureStore";
    /** The class imported items get unless {@link #accessible} says otherwise; see docs/android.md. */
    public static final KeychainAccessible DEFAULT_ACCESSIBLE = KeychainAccessible.AFTER_FIRST_UNLOCK_THIS_DEVICE_ONLY;

    static final String AES_CIPHER = "AES/GCM/NoPadding";
    static final String RSA_CIPHER = "RSA/None/PKCS1Padding";
    static final String UNAUTHENTICATED_SUFFIX = "keystoreUnauthenticated";
    static final String AUTHENTICATED_SUFFIX = "keystoreAuthenticated";
    /** Expo refuses shorter GCM tags when reading. */
    private static final int MIN_TAG_BITS = 96;
    /** How often one item is tried again when another writer changes it between our reads. */
    private static final int STORE_ATTEMPTS = 3;

    /** What happened to an entry. */
    public enum Outcome {
        /** The item holds the entry's value in securestore (stored now, or already). */
        IMPORTED,
        /** Left for later or for the app to decide; the source entry is intact. */
        SKIPPED,
        /** Cannot be imported: the entry cannot be decrypted or the daemon refused it. */
        FAILED
    }

    /** Why, in more detail; each reason belongs to one {@link Outcome}. */
    public enum Reason {
        /** Stored by this run. */
        STORED(Outcome.IMPORTED),
        /** The item already held exactly this value (a run before this one stored it). */
        ALREADY_PRESENT(Outcome.IMPORTED),
        /** A different value was there and {@link #overwriteDifferentValues} replaced it. */
        REPLACED(Outcome.IMPORTED),
        /**
         * {@code requireAuthentication}: no {@link Authenticator} was given, or the user did not
         * authenticate. Import it later, with one.
         */
        NEEDS_AUTHENTICATION(Outcome.SKIPPED),
        /** The item holds a different value; it was left as it is. */
        DIFFERENT_VALUE_PRESENT(Outcome.SKIPPED),
        /**
         * An old bare-key entry for the same service and key as a current entry, which Expo would
         * read instead of it.
         */
        SUPERSEDED(Outcome.SKIPPED),
        /** A preference that is not a string, so not one Expo wrote. */
        NOT_AN_ENTRY(Outcome.SKIPPED),
        /** The Keystore has no key under the entry's alias (app reinstalled, data restored). */
        KEY_MISSING(Outcome.FAILED),
        /** The key is there but unusable (invalidated by a change of biometrics, wrong password). */
        KEY_UNUSABLE(Outcome.FAILED),
        /** The ciphertext does not open with its key (tag mismatch: corrupted or altered). */
        DECRYPT_FAILED(Outcome.FAILED),
        /** Not valid JSON, or a field is missing or malformed. */
        MALFORMED(Outcome.FAILED),
        /** A {@code scheme} other than {@code "aes"} and {@code "hybrid"}. */
        UNSUPPORTED_SCHEME(Outcome.FAILED),
        /** The daemon refused the item (a bad service name, a value over the limit, ...). */
        STORE_REFUSED(Outcome.FAILED);

        private final Outcome outcome;

        Reason(Outcome outcome) {
            this.outcome = outcome;
        }

        /** The outcome this reason belongs to. */
        public Outcome outcome() {
            return outcome;
        }
    }

    /**
     * Lets the user authenticate for a {@code requireAuthentication} entry, as Expo did with a
     * {@code BiometricPrompt}: show the prompt with {@code new CryptoObject(cipher)}, wait for it
     * (this runs on the import's thread, never the main one), and return the result's cipher.
     * Throw, or return {@code null}, when the user cancels: the entry is then skipped.
     */
    public interface Authenticator {
        /**
         * @param cipher initialised to decrypt the entry with its Keystore key
         * @param expoService the entry's Expo {@code keychainService}
         * @param key the entry's key
         * @return the cipher to finish decrypting with, once the user has authenticated
         */
        Cipher authenticate(Cipher cipher, String expoService, String key) throws Exception;
    }

    /** Removes a values source, e.g. {@code () -> prefs.edit().clear().commit()}. */
    public interface SourceRemover {
        /** Removes every entry of the source; throw when it could not. */
        void remove() throws Exception;
    }

    /** One entry of the source and what became of it. Holds no value. */
    public static final class Item {
        private final String preferenceKey;
        private final String expoService;
        private final String key;
        private final String service;
        private final boolean requireAuthentication;
        private final Reason reason;
        private final String message;

        Item(String preferenceKey, String expoService, String key, String service,
                boolean requireAuthentication, Reason reason, String message) {
            this.preferenceKey = preferenceKey;
            this.expoService = expoService;
            this.key = key;
            this.service = service;
            this.requireAuthentication = requireAuthentication;
            this.reason = reason;
            this.message = message;
        }

        /** The preference's name in Expo's file ({@code "<keychainService>-<key>"}, or a bare key). */
        public String preferenceKey() {
            return preferenceKey;
        }

        /** The entry's Expo {@code keychainService}; {@code null} when it could not be read. */
        public String expoService() {
            return expoService;
        }

        /** The item's key; {@code null} when it could not be read. */
        public String key() {
            return key;
        }

        /** The securestore service it goes to; {@code null} is the default service. */
        public String service() {
            return service;
        }

        /** Whether Expo stored it with {@code requireAuthentication}. */
        public boolean requireAuthentication() {
            return requireAuthentication;
        }

        public Outcome outcome() {
            return reason.outcome();
        }

        public Reason reason() {
            return reason;
        }

        /** A sentence for logs and the user; never holds the value. */
        public String message() {
            return message;
        }

        @Override
        public String toString() {
            return preferenceKey + ": " + outcome() + " " + reason + " (" + message + ")";
        }
    }

    /** What a run did, entry by entry. */
    public static final class Report {
        private final List<Item> items;
        private final boolean sourceDeleted;
        private final String sourceNote;

        Report(List<Item> items, boolean sourceDeleted, String sourceNote) {
            this.items = Collections.unmodifiableList(new ArrayList<>(items));
            this.sourceDeleted = sourceDeleted;
            this.sourceNote = sourceNote;
        }

        /**
         * Every entry: those decrypted or tried, current ones then old bare-key ones, then those
         * turned away before (not JSON, an unknown scheme, not a string); each group by name.
         */
        public List<Item> items() {
            return items;
        }

        /** The entry stored under {@code preferenceKey}, or {@code null}. */
        public Item item(String preferenceKey) {
            for (Item item : items) {
                if (item.preferenceKey.equals(preferenceKey)) {
                    return item;
                }
            }
            return null;
        }

        /** How many entries had {@code outcome}. */
        public int count(Outcome outcome) {
            int n = 0;
            for (Item item : items) {
                if (item.outcome() == outcome) {
                    n++;
                }
            }
            return n;
        }

        /** Whether every entry is {@link Outcome#IMPORTED} (true for an empty or missing source). */
        public boolean fullyImported() {
            return count(Outcome.IMPORTED) == items.size();
        }

        /** Whether this run removed the source (asked for, and {@link #fullyImported()}). */
        public boolean sourceDeleted() {
            return sourceDeleted;
        }

        /** What happened to the source as a whole: missing, kept (and why), deleted, or not deletable. */
        public String sourceNote() {
            return sourceNote;
        }

        @Override
        public String toString() {
            StringBuilder out = new StringBuilder();
            out.append(count(Outcome.IMPORTED)).append(" imported, ")
                    .append(count(Outcome.SKIPPED)).append(" skipped, ")
                    .append(count(Outcome.FAILED)).append(" failed; ").append(sourceNote);
            for (Item item : items) {
                out.append('\n').append(item);
            }
            return out.toString();
        }
    }

    /** A preference that is not a string: its XML element name ({@code int}, {@code set}, ...). */
    private static final class OtherValue {
        final String type;

        OtherValue(String type) {
            this.type = type;
        }
    }

    private final File file;
    private final Map<String, ?> values;
    private final SourceRemover remover;
    private KeyStore keyStore;
    private char[] keyPassword;
    private final Map<String, String> services = new HashMap<>();
    private String legacyService = EXPO_DEFAULT_SERVICE;
    private KeychainAccessible accessible = DEFAULT_ACCESSIBLE;
    private boolean overwrite;
    private Authenticator authenticator;
    private boolean deleteSource;

    private ExpoSecureStoreImport(File file, Map<String, ?> values, SourceRemover remover) {
        this.file = file;
        this.values = values;
        this.remover = remover;
        services.put(EXPO_DEFAULT_SERVICE, null);
    }

    /**
     * Reads Expo's preferences file itself, {@code <dataDir>/shared_prefs/SecureStore.xml}. Use it
     * when Expo's module no longer runs in any process of the app (a process that has the
     * preferences loaded would write its own copy back). A missing file is an empty source; when
     * {@code SecureStore.xml.bak} exists (a write was cut short), it is read instead, as Android
     * would.
     */
    public static ExpoSecureStoreImport fromPreferencesFile(File file) {
        return new ExpoSecureStoreImport(Objects.requireNonNull(file, "file"), null, null);
    }

    /**
     * The entries handed over by the app: {@code context.getSharedPreferences("SecureStore",
     * MODE_PRIVATE).getAll()}. Such a source can be removed only through {@code remover}.
     */
    public static ExpoSecureStoreImport fromValues(Map<String, ?> values, SourceRemover remover) {
        return new ExpoSecureStoreImport(null, new TreeMap<String, Object>(values), remover);
    }

    /** As {@link #fromValues(Map, SourceRemover)}, for a source this import never removes. */
    public static ExpoSecureStoreImport fromValues(Map<String, ?> values) {
        return fromValues(values, null);
    }

    /** {@code AndroidKeyStore}, loaded: where Expo keeps its keys on a device. */
    public static KeyStore androidKeyStore() throws IOException, GeneralSecurityException {
        KeyStore keyStore = KeyStore.getInstance("AndroidKeyStore");
        keyStore.load(null);
        return keyStore;
    }

    /**
     * The loaded KeyStore holding Expo's keys, and the password of its entries ({@code null} for
     * {@code AndroidKeyStore}). Default: {@link #androidKeyStore()}. Tests pass a PKCS12 file.
     */
    public ExpoSecureStoreImport keyStore(KeyStore keyStore, char[] entryPassword) {
        this.keyStore = Objects.requireNonNull(keyStore, "keyStore");
        this.keyPassword = entryPassword == null ? null : entryPassword.clone();
        return this;
    }

    /**
     * Entries of Expo's {@code expoService} go to {@code service} ({@code null}: the default
     * service). By default every service keeps its name, except {@code key_v1} → the default one.
     */
    public ExpoSecureStoreImport mapService(String expoService, String service) {
        services.put(Objects.requireNonNull(expoService, "expoService"), service);
        return this;
    }

    /**
     * The Expo service of old bare-key entries, which do not name theirs (default {@code key_v1});
     * Expo read them with whichever service the app passed.
     */
    public ExpoSecureStoreImport legacyService(String expoService) {
        this.legacyService = Objects.requireNonNull(expoService, "expoService");
        return this;
    }

    /** The class imported items get (default {@link #DEFAULT_ACCESSIBLE}). */
    public ExpoSecureStoreImport accessible(KeychainAccessible accessible) {
        this.accessible = Objects.requireNonNull(accessible, "accessible");
        return this;
    }

    /** Whether an item holding a different value is replaced (default: left, and reported). */
    public ExpoSecureStoreImport overwriteDifferentValues(boolean overwrite) {
        this.overwrite = overwrite;
        return this;
    }

    /**
     * Imports {@code requireAuthentication} entries too, letting the user authenticate through
     * {@code authenticator}. Without one they are skipped. Note that securestore does not ask for
     * authentication when the item is read later.
     */
    public ExpoSecureStoreImport authenticator(Authenticator authenticator) {
        this.authenticator = authenticator;
        return this;
    }

    /**
     * Removes the source after a run in which every entry was imported: the file (and its
     * {@code .bak}), or through the {@link SourceRemover}. Never after a partial run. The Keystore
     * keys are left in place. Default false.
     */
    public ExpoSecureStoreImport deleteSourceAfterFullImport(boolean delete) {
        if (delete && file == null && remover == null) {
            throw new IllegalStateException("a values source can be removed only through its SourceRemover");
        }
        this.deleteSource = delete;
        return this;
    }

    /**
     * Imports every entry into {@code target}'s project.
     *
     * @throws IOException when the preferences file cannot be read or is not a preferences file
     * @throws GeneralSecurityException when the default {@code AndroidKeyStore} cannot be loaded
     */
    public Report run(SecureStore target) throws IOException, GeneralSecurityException {
        Objects.requireNonNull(target, "target");
        Map<String, ?> entries;
        String sourceNote;
        if (file != null) {
            // Android's SharedPreferencesImpl: a backup file means a write was cut short, and the
            // backup is the good copy (Android renames it back over the file when it next loads).
            File backup = backupOf(file);
            File read = backup.exists() ? backup : file;
            if (!read.exists()) {
                return new Report(Collections.<Item>emptyList(), false, "no preferences file at " + file);
            }
            entries = new TreeMap<String, Object>(readPreferences(read));
            sourceNote = "kept " + read;
        } else {
            entries = values;
            sourceNote = "kept the values source";
        }
        if (keyStore == null) {
            keyStore = androidKeyStore();
        }

        // Current entries first, so an old bare-key entry for the same item is recognised as
        // superseded, as Expo's getItem would prefer the current one.
        List<Parsed> current = new ArrayList<>();
        List<Parsed> legacy = new ArrayList<>();
        List<Item> items = new ArrayList<>();
        Set<String> currentItems = new HashSet<>();
        for (Map.Entry<String, ?> e : entries.entrySet()) {
            Parsed parsed = parse(e.getKey(), e.getValue());
            if (parsed.done != null) {
                items.add(parsed.done);
            } else if (parsed.legacy) {
                legacy.add(parsed);
            } else {
                current.add(parsed);
                currentItems.add(parsed.expoService + "\n" + parsed.key);
            }
        }
        List<Item> report = new ArrayList<>();
        for (Parsed p : current) {
            report.add(importOne(p, target));
        }
        for (Parsed p : legacy) {
            if (currentItems.contains(p.expoService + "\n" + p.key)) {
                report.add(p.item(Reason.SUPERSEDED, "Expo reads the entry \"" + p.expoService + "-" + p.key
                        + "\" instead of this old bare-key one"));
            } else {
                report.add(importOne(p, target));
            }
        }
        report.addAll(items);

        boolean deleted = false;
        if (deleteSource) {
            if (!new Report(report, false, sourceNote).fullyImported()) {
                sourceNote += " (not every entry was imported)";
            } else {
                try {
                    deleteSource();
                    deleted = true;
                    sourceNote = file != null ? "deleted " + file : "removed the values source";
                } catch (Exception e) {
                    sourceNote += " (could not remove it: " + describe(e) + ")";
                }
            }
        }
        return new Report(report, deleted, sourceNote);
    }

    private void deleteSource() throws Exception {
        if (file == null) {
            remover.remove();
            return;
        }
        File backup = backupOf(file);
        if (backup.exists() && !backup.delete()) {
            throw new IOException("cannot delete " + backup);
        }
        if (file.exists() && !file.delete()) {
            throw new IOException("cannot delete " + file);
        }
    }

    private static File backupOf(File file) {
        return new File(file.getPath() + ".bak");
    }

    /** An entry read from its JSON, or already decided ({@link #done}). */
    private final class Parsed {
        String preferenceKey;
        String expoService;
        String key;
        boolean legacy;
        boolean requireAuthentication;
        boolean usesKeystoreSuffix;
        String scheme;
        Map<String, Object> json;
        Item done;

        Item item(Reason reason, String message) {
            String service = expoService == null ? null : targetService(expoService);
            return new Item(preferenceKey, expoService, key, service, requireAuthentication, reason, message);
        }
    }

    private String targetService(String expoService) {
        return services.containsKey(expoService) ? services.get(expoService) : expoService;
    }

    private Parsed parse(String preferenceKey, Object value) {
        Parsed p = new Parsed();
        p.preferenceKey = preferenceKey;
        if (!(value instanceof String)) {
            String type = value instanceof OtherValue ? ((OtherValue) value).type
                    : value == null ? "null" : value.getClass().getSimpleName();
            p.done = p.item(Reason.NOT_AN_ENTRY, "a " + type + " preference, not an expo-secure-store entry");
            return p;
        }
        try {
            p.json = ExpoJson.parseObject((String) value);
        } catch (IllegalArgumentException e) {
            p.done = p.item(Reason.MALFORMED, "not an expo-secure-store entry: " + e.getMessage());
            return p;
        }
        p.requireAuthentication = bool(p.json.get("requireAuthentication"));
        p.usesKeystoreSuffix = bool(p.json.get("usesKeystoreSuffix"));
        Object alias = p.json.get("keystoreAlias");
        if (alias instanceof String && !((String) alias).isEmpty()) {
            // The preference is "<service>-<key>"; the service may hold '-' too, so it is taken
            // from the entry rather than split from the name.
            p.expoService = (String) alias;
            String prefix = p.expoService + "-";
            if (!preferenceKey.startsWith(prefix) || preferenceKey.length() == prefix.length()) {
                p.done = p.item(Reason.MALFORMED, "the entry names the service \"" + p.expoService
                        + "\" but its preference is not \"" + p.expoService + "-<key>\"");
                return p;
            }
            p.key = preferenceKey.substring(prefix.length());
        } else {
            // Written before expo-secure-store 12.8: a bare key, the service is whichever the app
            // read it with.
            p.legacy = true;
            p.expoService = legacyService;
            p.key = preferenceKey;
        }
        Object scheme = p.json.get("scheme");
        if (!(scheme instanceof String) || ((String) scheme).isEmpty()) {
            p.done = p.item(Reason.MALFORMED, "the entry names no encryption scheme");
            return p;
        }
        p.scheme = (String) scheme;
        if (!p.scheme.equals("aes") && !p.scheme.equals("hybrid")) {
            p.done = p.item(Reason.UNSUPPORTED_SCHEME, "unknown encryption scheme \"" + p.scheme + "\"");
        }
        return p;
    }

    /** {@code org.json}'s {@code optBoolean}: a boolean, or the string "true"/"false"; else false. */
    private static boolean bool(Object value) {
        if (value instanceof Boolean) {
            return (Boolean) value;
        }
        return value instanceof String && ((String) value).equalsIgnoreCase("true");
    }

    private Item importOne(Parsed p, SecureStore target) {
        if (p.requireAuthentication && authenticator == null) {
            return p.item(Reason.NEEDS_AUTHENTICATION,
                    "stored with requireAuthentication: import it with an Authenticator");
        }
        byte[] plaintext;
        try {
            plaintext = decrypt(p);
        } catch (Failure f) {
            return p.item(f.reason, f.getMessage());
        }
        String value = new String(plaintext, StandardCharsets.UTF_8);
        Arrays.fill(plaintext, (byte) 0);
        return store(p, value, target);
    }

    /** A reason an entry cannot be decrypted or imported. */
    private static final class Failure extends Exception {
        private static final long serialVersionUID = 1L;
        final Reason reason;

        Failure(Reason reason, String message) {
            super(message, null, false, false);
            this.reason = reason;
        }
    }

    private byte[] decrypt(Parsed p) throws Failure {
        String suffix = p.requireAuthentication ? AUTHENTICATED_SUFFIX : UNAUTHENTICATED_SUFFIX;
        boolean hybrid = p.scheme.equals("hybrid");
        String alias = (hybrid ? RSA_CIPHER : AES_CIPHER) + ":" + p.expoService
                + (p.usesKeystoreSuffix ? ":" + suffix : "");
        byte[] ciphertext = base64Field(p.json, "ct");
        byte[] iv = base64Field(p.json, "iv");
        int tagBits = intField(p.json, "tlen");
        if (tagBits < MIN_TAG_BITS || tagBits > 128 || tagBits % 8 != 0) {
            throw new Failure(Reason.MALFORMED, "tag length " + tagBits + " bits is not allowed");
        }
        if (iv.length == 0) {
            throw new Failure(Reason.MALFORMED, "the IV is empty");
        }

        Key keystoreKey = keystoreKey(alias);
        SecretKey aesKey;
        if (hybrid) {
            if (!(keystoreKey instanceof PrivateKey)) {
                throw new Failure(Reason.KEY_UNUSABLE, "the Keystore entry \"" + alias + "\" is not an RSA private key");
            }
            aesKey = unwrapHybridKey((PrivateKey) keystoreKey, base64Field(p.json, "esk"));
        } else {
            if (!(keystoreKey instanceof SecretKey)) {
                throw new Failure(Reason.KEY_UNUSABLE, "the Keystore entry \"" + alias + "\" is not a secret key");
            }
            aesKey = (SecretKey) keystoreKey;
        }

        Cipher cipher;
        try {
            cipher = Cipher.getInstance(AES_CIPHER);
            cipher.init(Cipher.DECRYPT_MODE, aesKey, new GCMParameterSpec(tagBits, iv));
        } catch (GeneralSecurityException e) {
            throw cryptoFailure(e, alias);
        }
        if (p.requireAuthentication) {
            try {
                cipher = authenticator.authenticate(cipher, p.expoService, p.key);
            } catch (Exception e) {
                throw new Failure(Reason.NEEDS_AUTHENTICATION, "the user did not authenticate: " + describe(e));
            }
            if (cipher == null) {
                throw new Failure(Reason.NEEDS_AUTHENTICATION, "the user did not authenticate");
            }
        }
        try {
            return cipher.doFinal(ciphertext);
        } catch (GeneralSecurityException | IllegalStateException e) {
            throw cryptoFailure(e, alias);
        }
    }

    private Key keystoreKey(String alias) throws Failure {
        try {
            if (!keyStore.containsAlias(alias)) {
                throw new Failure(Reason.KEY_MISSING, "the Keystore has no key \"" + alias
                        + "\" (the app was reinstalled or its data restored from a backup)");
            }
            Key key = keyStore.getKey(alias, keyPassword);
            if (key == null) {
                throw new Failure(Reason.KEY_MISSING, "the Keystore has no key \"" + alias + "\"");
            }
            return key;
        } catch (UnrecoverableKeyException e) {
            throw new Failure(Reason.KEY_UNUSABLE, "the Keystore key \"" + alias + "\" cannot be read: " + describe(e));
        } catch (GeneralSecurityException e) {
            throw new Failure(Reason.KEY_UNUSABLE, "the Keystore refused the key \"" + alias + "\": " + describe(e));
        }
    }

    /** The hybrid scheme's AES key, RSA-decrypted ({@code "RSA/None/PKCS1Padding"} on Android). */
    private static SecretKey unwrapHybridKey(PrivateKey rsa, byte[] wrapped) throws Failure {
        Cipher cipher;
        try {
            cipher = Cipher.getInstance(RSA_CIPHER);
        } catch (GeneralSecurityException e) {
            try {
                // The desktop JVM names the same padding "ECB" (RSA has no mode).
                cipher = Cipher.getInstance("RSA/ECB/PKCS1Padding");
            } catch (GeneralSecurityException again) {
                throw new Failure(Reason.KEY_UNUSABLE, "no RSA cipher: " + describe(again));
            }
        }
        byte[] keyBytes = null;
        try {
            cipher.init(Cipher.DECRYPT_MODE, rsa);
            keyBytes = cipher.doFinal(wrapped);
            if (keyBytes.length != 16 && keyBytes.length != 24 && keyBytes.length != 32) {
                throw new Failure(Reason.DECRYPT_FAILED, "the wrapped AES key is " + keyBytes.length + " bytes");
            }
            return new SecretKeySpec(keyBytes, "AES");
        } catch (GeneralSecurityException e) {
            throw cryptoFailure(e, "the wrapped AES key");
        } finally {
            if (keyBytes != null) {
                Arrays.fill(keyBytes, (byte) 0);
            }
        }
    }

    /** Sorts a failure of the Keystore or the cipher by its class (Android's classes by name). */
    private static Failure cryptoFailure(Exception e, String what) {
        String name = e.getClass().getName();
        if (name.endsWith("KeyPermanentlyInvalidatedException")) {
            return new Failure(Reason.KEY_UNUSABLE, "the key \"" + what + "\" was invalidated (biometrics changed)");
        }
        if (name.endsWith("UserNotAuthenticatedException")) {
            return new Failure(Reason.NEEDS_AUTHENTICATION, "the key \"" + what + "\" needs the user to authenticate");
        }
        if (e instanceof AEADBadTagException) {
            return new Failure(Reason.DECRYPT_FAILED, "tag mismatch with \"" + what + "\": the entry is corrupted or was altered");
        }
        if (e instanceof BadPaddingException) {
            return new Failure(Reason.DECRYPT_FAILED, "\"" + what + "\" does not decrypt: " + describe(e));
        }
        return new Failure(Reason.DECRYPT_FAILED, "cannot decrypt with \"" + what + "\": " + describe(e));
    }

    private Item store(Parsed p, String value, SecureStore target) {
        String service = targetService(p.expoService);
        SecureStoreOptions options = SecureStoreOptions.service(service).withKeychainAccessible(accessible);
        try {
            for (int attempt = 0; attempt < STORE_ATTEMPTS; attempt++) {
                try {
                    target.setItemIf(p.key, null, value, options);
                    return p.item(Reason.STORED, "stored");
                } catch (SecureStoreException.Conflict alreadyThere) {
                    // Compare below.
                }
                String current = target.getItem(p.key, options);
                if (current == null) {
                    continue; // deleted meanwhile: try again
                }
                if (current.equals(value)) {
                    return p.item(Reason.ALREADY_PRESENT, "already held this value");
                }
                if (!overwrite) {
                    return p.item(Reason.DIFFERENT_VALUE_PRESENT,
                            "the item holds a different value; left as it is (overwriteDifferentValues replaces it)");
                }
                try {
                    target.setItemIf(p.key, current, value, options);
                    return p.item(Reason.REPLACED, "replaced a different value");
                } catch (SecureStoreException.Conflict changed) {
                    // Changed again meanwhile: try again.
                }
            }
            return p.item(Reason.STORE_REFUSED, "the item kept changing while it was imported");
        } catch (SecureStoreException e) {
            return p.item(Reason.STORE_REFUSED, e.code() + ": " + e.getMessage());
        }
    }

    private static byte[] base64Field(Map<String, Object> json, String name) throws Failure {
        Object text = json.get(name);
        if (!(text instanceof String)) {
            throw new Failure(Reason.MALFORMED, "the field \"" + name + "\" is missing or not a string");
        }
        try {
            return base64((String) text);
        } catch (IllegalArgumentException e) {
            throw new Failure(Reason.MALFORMED, "the field \"" + name + "\" is not base64: " + e.getMessage());
        }
    }

    /** {@code org.json}'s {@code getInt}: a number, or a string holding one. */
    private static int intField(Map<String, Object> json, String name) throws Failure {
        Object value = json.get(name);
        try {
            if (value instanceof Long && (Long) value >= Integer.MIN_VALUE && (Long) value <= Integer.MAX_VALUE) {
                return ((Long) value).intValue();
            }
            if (value instanceof String) {
                return Integer.parseInt(((String) value).trim());
            }
        } catch (NumberFormatException e) {
            // Reported below.
        }
        throw new Failure(Reason.MALFORMED, "the field \"" + name + "\" is missing or not an integer");
    }

    private static final String ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    /**
     * Standard base64 as Android's {@code Base64.decode(text, DEFAULT)} reads it: whitespace
     * ignored, padding optional, anything else refused. ({@code java.util.Base64} needs API 26.)
     */
    static byte[] base64(String text) {
        ByteArrayOutputStream out = new ByteArrayOutputStream(text.length() * 3 / 4);
        int buffer = 0;
        int bits = 0;
        boolean padding = false;
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i);
            if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
                continue;
            }
            if (c == '=') {
                padding = true;
                continue;
            }
            int digit = ALPHABET.indexOf(c);
            if (digit < 0 || padding) {
                throw new IllegalArgumentException(padding ? "data after padding" : "bad character at " + i);
            }
            buffer = (buffer << 6) | digit;
            bits += 6;
            if (bits >= 8) {
                bits -= 8;
                out.write((buffer >> bits) & 0xff);
            }
        }
        if (bits >= 6) {
            throw new IllegalArgumentException("truncated");
        }
        return out.toByteArray();
    }

    /**
     * Reads a SharedPreferences XML file: {@code <map>} of {@code <string name="...">text</string>}
     * and other typed elements. No DTD, no external entities.
     */
    static Map<String, Object> readPreferences(File file) throws IOException {
        DocumentBuilderFactory factory = DocumentBuilderFactory.newInstance();
        trySetFeature(factory, "http://apache.org/xml/features/disallow-doctype-decl");
        trySetFeature(factory, XMLConstants.FEATURE_SECURE_PROCESSING);
        factory.setExpandEntityReferences(false);
        factory.setNamespaceAware(false);
        Document document;
        try {
            DocumentBuilder builder = factory.newDocumentBuilder();
            builder.setErrorHandler(new ErrorHandler() {
                // Errors become the exception below; nothing is printed to stderr.
                @Override
                public void warning(SAXParseException e) {}

                @Override
                public void error(SAXParseException e) throws SAXException {
                    throw e;
                }

                @Override
                public void fatalError(SAXParseException e) throws SAXException {
                    throw e;
                }
            });
            document = builder.parse(file);
        } catch (ParserConfigurationException | SAXException e) {
            throw new IOException("cannot read " + file + " as a preferences file: " + e.getMessage(), e);
        }
        if (document.getDoctype() != null) {
            // SharedPreferences never writes one; refused here too where the parser has no switch.
            throw new IOException(file + " has a DOCTYPE, which a preferences file never has");
        }
        Element root = document.getDocumentElement();
        if (!"map".equals(root.getTagName())) {
            throw new IOException(file + " is not a preferences file (its root is <" + root.getTagName() + ">)");
        }
        Map<String, Object> entries = new LinkedHashMap<>();
        NodeList children = root.getChildNodes();
        for (int i = 0; i < children.getLength(); i++) {
            Node node = children.item(i);
            if (node.getNodeType() != Node.ELEMENT_NODE) {
                continue;
            }
            Element element = (Element) node;
            String name = element.getAttribute("name");
            if ("string".equals(element.getTagName())) {
                entries.put(name, element.getTextContent());
            } else {
                entries.put(name, new OtherValue(element.getTagName()));
            }
        }
        return entries;
    }

    private static void trySetFeature(DocumentBuilderFactory factory, String feature) {
        try {
            factory.setFeature(feature, true);
        } catch (ParserConfigurationException | RuntimeException unsupported) {
            // Not every parser has the feature (Android's lacks both); a DOCTYPE is refused after
            // parsing anyway.
        }
    }

    private static String describe(Exception e) {
        return e.getMessage() == null ? e.getClass().getSimpleName() : e.getClass().getSimpleName() + ": " + e.getMessage();
    }
}

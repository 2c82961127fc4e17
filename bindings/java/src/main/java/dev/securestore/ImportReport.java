package dev.securestore;

/** What {@link SecureStore#importBackup} did. */
public final class ImportReport {
    private final long added;
    private final long replaced;
    private final long skipped;

    ImportReport(long added, long replaced, long skipped) {
        this.added = added;
        this.replaced = replaced;
        this.skipped = skipped;
    }

    /** Items that did not exist and were stored. */
    public long added() {
        return added;
    }

    /** Items that existed and were overwritten (only when replacing). */
    public long replaced() {
        return replaced;
    }

    /** Items that existed and were kept (when not replacing). */
    public long skipped() {
        return skipped;
    }

    @Override
    public String toString() {
        return added + " added, " + replaced + " replaced, " + skipped + " skipped";
    }
}

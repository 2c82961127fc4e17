package dev.securestore;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

/**
 * One durable change to an item, as a watcher sees it: the service, the key and the kind of
 * change, never the value. Events arrive in commit order, with increasing {@link #seq()}.
 */
public final class ChangeEvent {
    /** What a change did. */
    public enum Kind {
        /** The item was stored. */
        SET,
        /** The item was deleted (reported even if nothing was stored under the key). */
        DELETED,
        /** Every item of the service (of every service when {@link #service()} is null) was deleted. */
        CLEARED
    }

    private final long seq;
    private final Kind kind;
    private final String service;
    private final String key;

    ChangeEvent(long seq, Kind kind, String service, String key) {
        this.seq = seq;
        this.kind = kind;
        this.service = service;
        this.key = key;
    }

    /** The daemon's commit sequence number. */
    public long seq() {
        return seq;
    }

    /** What happened. */
    public Kind kind() {
        return kind;
    }

    /** The service, or {@code null} for a clear of every service. */
    public String service() {
        return service;
    }

    /** The key, or {@code null} for a clear. */
    public String key() {
        return key;
    }

    @Override
    public String toString() {
        return seq + " " + kind + " " + service + " " + key;
    }

    /** One poll's answer: the events, and how many were missed before them (0 when none). */
    public static final class Batch {
        private final List<ChangeEvent> events;
        private final long missed;

        Batch(List<ChangeEvent> events, long missed) {
            this.events = Collections.unmodifiableList(events);
            this.missed = missed;
        }

        /** The events, in commit order. */
        public List<ChangeEvent> events() {
            return events;
        }

        /** Events dropped because the watcher's queue was full; re-read what matters when not 0. */
        public long missed() {
            return missed;
        }
    }

    /** Parses the native side's text: an optional {@code lagged\tN} line, then {@code seq\tkind\tservice\tkey}. */
    static Batch parse(String text) {
        List<ChangeEvent> events = new ArrayList<>();
        long missed = 0;
        if (text == null || text.isEmpty()) {
            return new Batch(events, missed);
        }
        for (String line : text.split("\n", -1)) {
            String[] f = line.split("\t", -1);
            if (f[0].equals("lagged")) {
                missed = Long.parseLong(f[1]);
                continue;
            }
            Kind kind = f[1].equals("set") ? Kind.SET : f[1].equals("deleted") ? Kind.DELETED : Kind.CLEARED;
            events.add(new ChangeEvent(Long.parseLong(f[0]), kind,
                    f[2].isEmpty() ? null : f[2], f[3].isEmpty() ? null : f[3]));
        }
        return new Batch(events, missed);
    }
}

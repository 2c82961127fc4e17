package dev.securestore;

import java.util.concurrent.locks.ReadWriteLock;
import java.util.concurrent.locks.ReentrantReadWriteLock;
import java.util.function.LongConsumer;

/**
 * A native handle shared by many threads: calls hold the read lock, so they run at once; destroying
 * takes the write lock, so it waits for calls under way and no call can start on a freed handle.
 */
final class NativeHandle {
    /** Work that uses the handle and may throw. */
    interface Call<T> {
        T apply(long handle);
    }

    private final ReadWriteLock lock = new ReentrantReadWriteLock();
    private final String what;
    private long handle;

    NativeHandle(long handle, String what) {
        this.handle = handle;
        this.what = what;
    }

    <T> T use(Call<T> call) {
        lock.readLock().lock();
        try {
            if (handle == 0) {
                throw new IllegalStateException("this " + what + " is closed");
            }
            return call.apply(handle);
        } finally {
            lock.readLock().unlock();
        }
    }

    /** Destroys the handle once; later calls do nothing. */
    void destroy(LongConsumer destroy) {
        lock.writeLock().lock();
        try {
            if (handle != 0) {
                long h = handle;
                handle = 0;
                destroy.accept(h);
            }
        } finally {
            lock.writeLock().unlock();
        }
    }

    boolean isOpen() {
        lock.readLock().lock();
        try {
            return handle != 0;
        } finally {
            lock.readLock().unlock();
        }
    }
}

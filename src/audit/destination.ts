import { mkdir, open, rename, type FileHandle } from "node:fs/promises";
import { dirname } from "node:path";
import type { Writable } from "node:stream";
import type { Clock } from "../clock";

/**
 * Where audit lines go. A destination never throws and never blocks: when it cannot keep up
 * (a full disk, a failing file, a reader that does not read) it drops lines and counts them,
 * so the audit log can never stop the server from answering (SECURITY.md I38).
 */
export interface AuditDestination {
  /** Takes one complete line (ending in "\n"), or drops and counts it. */
  write(line: string): void;
  /** Resolves once what was queued so far is written or dropped (a stalled reader: after a deadline). */
  flush(): Promise<void>;
  /** Closes and opens the file again (after logrotate moved it away); a no-op for a stream. */
  reopen(): void;
  close(): Promise<void>;
}

// What a destination may hold in memory before it drops: a never-read stdout or a stalled
// disk costs at most this much per destination, not the whole heap.
export const DEFAULT_MAX_QUEUED_BYTES = 1024 * 1024;
const BATCH_BYTES = 64 * 1024; // Stryker: a smaller batch only costs more writes.
const NOTICE_INTERVAL_MS = 10_000;
const NOTICE_MAX_QUEUED_BYTES = 64 * 1024;
const STREAM_FLUSH_DEADLINE_MS = 1_000;

/**
 * Counts dropped lines and says so on stderr, at most once per 10 s per destination, so a
 * full disk is visible to the operator without stderr becoming the next flood.
 */
export class DropReporter {
  private readonly pending = new Map<string, { destination: string; reason: string; count: number; lastNoticeAt: number | null }>();
  /** Every line dropped since start, by destination. */
  readonly totals = new Map<string, number>();

  constructor(
    private readonly notices: Writable,
    private readonly clock: Clock,
  ) {
    // stderr closed under us (EPIPE) must not become an uncaught exception either.
    // Stryker: equivalent (`true`, `listenerCount("")`) — one more no-op listener changes nothing.
    if (notices.listenerCount("error") === 0) notices.on("error", () => undefined);
  }

  dropped(destination: string, count: number, reason: string): void {
    this.totals.set(destination, (this.totals.get(destination) ?? 0) + count);
    // One notice stream per destination and reason: a new kind of failure is said at once.
    const key = `${destination}\u0000${reason}`;
    const entry = this.pending.get(key) ?? { destination, reason, count: 0, lastNoticeAt: null };
    entry.count += count;
    this.pending.set(key, entry);
    this.tick();
  }

  /** Writes the notices that are due (called on every drop and by the audit log's timer). */
  tick(options: { force?: boolean } = {}): void {
    const now = this.clock.now();
    for (const entry of this.pending.values()) {
      if (entry.count === 0) continue;
      if (!options.force && entry.lastNoticeAt !== null && now - entry.lastNoticeAt < NOTICE_INTERVAL_MS) continue;
      this.notice(`portcullis: audit log ${entry.destination}: ${entry.count} line(s) dropped (${entry.reason}); still serving\n`);
      entry.count = 0;
      entry.lastNoticeAt = now;
    }
  }

  private notice(text: string): void {
    // Stryker: `>=` is the same bound, one notice apart.
    if (this.notices.destroyed || this.notices.writableLength > NOTICE_MAX_QUEUED_BYTES) return;
    this.notices.write(text);
  }
}

/**
 * A Writable (stdout, or a test's capture). Lines are handed to the stream only while its
 * own buffer holds less than `maxQueuedBytes`: a reader that stops reading costs that much
 * memory, then lines are dropped until it reads again. An error (EPIPE) ends the stream.
 */
export class StreamDestination implements AuditDestination {
  private failure: string | null = null;

  constructor(
    private readonly stream: Writable,
    private readonly name: string,
    private readonly drops: DropReporter,
    private readonly maxQueuedBytes: number = DEFAULT_MAX_QUEUED_BYTES,
  ) {
    stream.on("error", (error: unknown) => {
      this.failure = errorCode(error);
    });
  }

  write(line: string): void {
    if (this.failure !== null || this.stream.destroyed || this.stream.writableEnded) {
      this.drops.dropped(this.name, 1, this.failure ?? "stream closed");
      return;
    }
    if (this.stream.writableLength + Buffer.byteLength(line) > this.maxQueuedBytes) {
      this.drops.dropped(this.name, 1, "reader too slow");
      return;
    }
    this.stream.write(line);
  }

  flush(): Promise<void> {
    if (this.stream.writableLength === 0 || this.stream.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      // Stryker: not security-relevant — the event names below only decide whether a flush
      // that ends by `close` or by the deadline leaves a listener, or waits the 1 s deadline.
      const done = (): void => {
        clearTimeout(deadline);
        this.stream.off("drain", done);
        this.stream.off("close", done);
        resolve();
      };
      // A reader that never reads must not hold up shutdown.
      const deadline = setTimeout(done, STREAM_FLUSH_DEADLINE_MS);
      this.stream.once("drain", done);
      this.stream.once("close", done);
    });
  }

  reopen(): void {}

  close(): Promise<void> {
    return this.flush();
  }
}

export interface FileDestinationOptions {
  /** Rotate to `<path>.1` before the file would grow past this many bytes; null: never. */
  maxBytes?: number | null;
  maxQueuedBytes?: number;
}

/**
 * AUDIT_LOG_PATH: appended with asynchronous writes, one at a time, from a bounded queue.
 * The file is created 0600 (and narrowed to 0600 if it was wider): audit lines name IPs and
 * accounts. A write error (ENOSPC, EIO) drops the lines of that write and the next write
 * tries again, so the log resumes by itself once space is freed.
 */
export class FileDestination implements AuditDestination {
  private readonly queue: string[] = [];
  private queuedBytes = 0;
  private handle: FileHandle | null = null;
  private size = 0;
  private pumping = false;
  private reopenRequested = false; // Stryker: `true` is equivalent: the constructor calls reopen().
  private closed = false;
  /** The last write stopped inside a line: the next write starts on a fresh line. */
  private midLine = false; // Stryker: `true` is equivalent: openHandle() resets it before any write.
  private idle: (() => void)[] = [];
  private lastError: string | null = null;
  private readonly maxBytes: number | null;
  private readonly maxQueuedBytes: number;

  constructor(
    private readonly path: string,
    private readonly drops: DropReporter,
    options: FileDestinationOptions = {},
  ) {
    this.maxBytes = options.maxBytes ?? null;
    this.maxQueuedBytes = options.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES;
    // Open now, so a wrong mode is narrowed and a bad path reported at start, not at the first event.
    this.reopen();
  }

  write(line: string): void {
    const bytes = Buffer.byteLength(line);
    if (this.closed) {
      this.drops.dropped(this.path, 1, "log closed");
      return;
    }
    if (this.queuedBytes + bytes > this.maxQueuedBytes) {
      this.drops.dropped(this.path, 1, "disk too slow");
      return;
    }
    this.queue.push(line);
    this.queuedBytes += bytes;
    this.pump();
  }

  reopen(): void {
    if (this.closed) return;
    this.reopenRequested = true;
    this.pump();
  }

  flush(): Promise<void> {
    if (!this.pumping) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  async close(): Promise<void> {
    await this.flush();
    this.closed = true;
    await this.closeHandle();
  }

  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    void this.drain().finally(() => {
      this.pumping = false;
      for (const resolve of this.idle.splice(0)) resolve();
    });
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0 || this.reopenRequested) {
      // Stryker: `true` (reopen before every batch) writes the same lines, one open more per batch.
      if (this.reopenRequested || this.handle === null) {
        this.reopenRequested = false;
        await this.closeHandle();
        try {
          await this.openHandle();
        } catch (error) {
          this.dropQueue(errorCode(error));
          continue;
        }
      }
      const batch = this.takeBatch();
      if (batch.length === 0) continue; // Stryker: equivalent — an empty buffer writes nothing.
      let text = batch.join("");
      // Stryker: untested — no test disk stops inside a line (/dev/full writes nothing at all).
      if (this.midLine) text = `\n${text}`;
      const buffer = Buffer.from(text);
      if (this.maxBytes !== null && this.size > 0 && this.size + buffer.length > this.maxBytes) {
        await this.rotate();
        // Stryker: untested (as root no test can make the reopen fail); without this branch
        // writeAll() writes nothing and the batch is dropped and counted all the same.
        if (this.handle === null) {
          this.drops.dropped(this.path, batch.length, "could not reopen after rotation");
          continue;
        }
      }
      const written = await this.writeAll(buffer);
      if (written < buffer.length) {
        // Lines whose newline did not reach the disk are lost; count them, not bytes.
        const lost = countNewlines(buffer.subarray(written));
        this.drops.dropped(this.path, lost, this.lastError ?? "short write");
      }
      if (written > 0) this.midLine = buffer[written - 1] !== 0x0a;
    }
  }

  private async writeAll(buffer: Buffer): Promise<number> {
    const handle = this.handle;
    if (handle === null) return 0;
    let written = 0;
    try {
      while (written < buffer.length) {
        const { bytesWritten } = await handle.write(buffer, written, buffer.length - written);
        if (bytesWritten === 0) break;
        written += bytesWritten;
      }
      this.lastError = null;
    } catch (error) {
      this.lastError = errorCode(error);
    }
    this.size += written;
    return written;
  }

  private takeBatch(): string[] {
    const batch: string[] = [];
    let bytes = 0;
    while (this.queue.length > 0 && bytes < BATCH_BYTES) {
      const line = this.queue.shift();
      if (line === undefined) break;
      const length = Buffer.byteLength(line);
      bytes += length;
      this.queuedBytes -= length;
      batch.push(line);
    }
    return batch;
  }

  private dropQueue(reason: string): void {
    // Stryker: equivalent (`true`, `>= 0`) — dropping 0 lines adds 0 and says nothing.
    if (this.queue.length > 0) this.drops.dropped(this.path, this.queue.length, reason);
    this.queue.length = 0;
    this.queuedBytes = 0;
  }

  private async openHandle(): Promise<void> {
    await mkdir(dirname(this.path), { recursive: true, mode: 0o700 });
    // 0600 on creation (the umask can only narrow it); an existing wider file is narrowed.
    const handle = await open(this.path, "a", 0o600);
    try {
      const stat = await handle.stat();
      // Only a regular file: AUDIT_LOG_PATH=/dev/stderr must not re-mode a device.
      // Stryker: `true` is equivalent (chmod 0600 of a 0600 file). The catch below needs
      // fstat or fchmod to fail on a descriptor just opened: untested.
      if (stat.isFile() && (stat.mode & 0o777) !== 0o600) await handle.chmod(0o600);
      this.size = stat.size;
    } catch (error) {
      await handle.close().catch(() => undefined);
      throw error;
    }
    this.handle = handle;
    this.midLine = false;
  }

  private async closeHandle(): Promise<void> {
    const handle = this.handle;
    this.handle = null;
    await handle?.close().catch(() => undefined);
  }

  /** One generation is kept: `<path>.1` is replaced by the current file. */
  private async rotate(): Promise<void> {
    await this.closeHandle();
    await rename(this.path, `${this.path}.1`).catch(() => undefined);
    try {
      await this.openHandle();
    } catch (error) {
      this.lastError = errorCode(error);
    }
  }
}

function countNewlines(buffer: Buffer): number {
  let count = 0;
  for (let index = buffer.indexOf(0x0a); index !== -1; index = buffer.indexOf(0x0a, index + 1)) count += 1;
  return count;
}

function errorCode(error: unknown): string {
  if (error instanceof Error) {
    return "code" in error && typeof error.code === "string" ? error.code : error.message;
  }
  return String(error);
}

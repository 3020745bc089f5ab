/**
 * The benchmark's Node children (game backend, Portcullis, load generator): forked with
 * tsx, talked to over IPC, every wait bounded, and stopped by their own pid only.
 */
import { fork, type ChildProcess } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseReply, readString, type LoadgenRequest, type Result, type Scenario } from "./protocol";

const HERE = dirname(fileURLToPath(import.meta.url));

export class HarnessError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "HarnessError";
  }
}

/** `cpuProfileDir`: run the child under node --cpu-prof, which writes a .cpuprofile there as it exits. */
export function forkChild(file: string, args: string[], options: { exposeGC?: boolean; cpuProfileDir?: string | null } = {}): ChildProcess {
  const execArgv = ["--import", "tsx", ...(options.exposeGC === true ? ["--expose-gc"] : [])];
  if (options.cpuProfileDir !== undefined && options.cpuProfileDir !== null) execArgv.push("--cpu-prof", `--cpu-prof-dir=${options.cpuProfileDir}`);
  // stdout is dropped (the harness and the IdP may log there); stderr shows crashes.
  return fork(join(HERE, file), args, { execArgv, stdio: ["ignore", "ignore", "inherit", "ipc"] });
}

/** The first IPC message of `type` from `child`, or a HarnessError after `timeoutMs` or on exit. */
export function waitFor(child: ChildProcess, type: string, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const done = (): void => {
      clearTimeout(timer);
      child.off("message", onMessage);
      child.off("exit", onExit);
    };
    const onMessage = (message: unknown): void => {
      if (readString(message, "type") !== type) return;
      done();
      resolve(message);
    };
    const onExit = (code: number | null): void => {
      done();
      reject(new HarnessError(`${child.spawnfile} child exited (${code}) before "${type}"`));
    };
    const timer = setTimeout(() => {
      done();
      reject(new HarnessError(`no "${type}" from a child within ${timeoutMs} ms`));
    }, timeoutMs);
    child.on("message", onMessage);
    child.once("exit", onExit);
  });
}

/**
 * Asks a child to stop (its `message`, or closing the IPC channel, which every child here
 * treats as "exit"), then kills that one pid if it has not exited after `graceMs`.
 */
export async function stopChild(child: ChildProcess, options: { message?: Record<string, string>; graceMs?: number } = {}): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  if (child.connected) {
    if (options.message === undefined) child.disconnect();
    else child.send(options.message);
  }
  const graceMs = options.graceMs ?? 3_000;
  await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, graceMs))]);
  if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
}

/** A request without its id, kept as a union so `type` still discriminates. */
type Unnumbered<T> = T extends unknown ? Omit<T, "id"> : never;

/** The orchestrator's side of the load generator: one request at a time, each with a deadline. */
export class LoadgenClient {
  private nextId = 0;

  constructor(readonly child: ChildProcess) {}

  send(request: Unnumbered<LoadgenRequest>, timeoutMs: number): Promise<Result> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const finish = (): void => {
        clearTimeout(timer);
        this.child.off("message", onMessage);
        this.child.off("exit", onExit);
      };
      const onMessage = (message: unknown): void => {
        const reply = parseReply(message);
        if (reply === null || reply.id !== id) return;
        finish();
        if (reply.ok) resolve(reply.result);
        else reject(new HarnessError(reply.error));
      };
      const onExit = (code: number | null): void => {
        finish();
        reject(new HarnessError(`the load generator exited (${code})`));
      };
      // A scenario that hangs is a broken harness: fail loudly rather than wait forever.
      const timer = setTimeout(() => {
        finish();
        reject(new HarnessError(`no answer from the load generator within ${timeoutMs} ms`));
      }, timeoutMs);
      this.child.on("message", onMessage);
      this.child.once("exit", onExit);
      this.child.send({ ...request, id });
    });
  }

  run(scenario: Scenario, timeoutMs: number): Promise<Result> {
    return this.send({ type: "run", scenario }, timeoutMs);
  }
}

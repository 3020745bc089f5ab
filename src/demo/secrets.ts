import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { randomBytes } from "node:crypto";
import type { NamedKey } from "../config";

export interface DemoSecrets {
  tokenEncryptionKeys: NamedKey[];
  assertionSigningKeys: NamedKey[];
  demoClientSecret: string;
  idpCookieKeys: string[];
}

/**
 * Demo mode only: keys generated on first start and kept in a 0600 file under db/, so
 * sessions survive a restart. Production refuses to start without configured keys.
 */
export function loadOrCreateDemoSecrets(path: string): DemoSecrets {
  if (existsSync(path)) {
    chmodSync(path, 0o600);
    const stored: unknown = JSON.parse(readFileSync(path, "utf8"));
    const parsed = parse(stored);
    if (parsed !== null) {
      return parsed;
    }
  }
  const secrets: DemoSecrets = {
    tokenEncryptionKeys: [{ id: "demo1", key: randomBytes(32) }],
    assertionSigningKeys: [{ id: "demo1", key: randomBytes(32) }],
    demoClientSecret: randomBytes(32).toString("base64url"),
    idpCookieKeys: [randomBytes(32).toString("base64url")],
  };
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileSync(
    path,
    JSON.stringify({
      tokenEncryptionKeys: secrets.tokenEncryptionKeys.map((k) => `${k.id}:${k.key.toString("base64")}`),
      assertionSigningKeys: secrets.assertionSigningKeys.map((k) => `${k.id}:${k.key.toString("base64")}`),
      demoClientSecret: secrets.demoClientSecret,
      idpCookieKeys: secrets.idpCookieKeys,
    }),
    { mode: 0o600 },
  );
  return secrets;
}

function parse(value: unknown): DemoSecrets | null {
  if (typeof value !== "object" || value === null) return null;
  const record = value as Record<string, unknown>;
  const keys = (field: unknown): NamedKey[] | null => {
    if (!Array.isArray(field)) return null;
    const out: NamedKey[] = [];
    for (const entry of field) {
      if (typeof entry !== "string" || !entry.includes(":")) return null;
      const [id, key] = [entry.slice(0, entry.indexOf(":")), Buffer.from(entry.slice(entry.indexOf(":") + 1), "base64")];
      if (key.length !== 32) return null;
      out.push({ id, key });
    }
    return out.length > 0 ? out : null;
  };
  const tokenEncryptionKeys = keys(record.tokenEncryptionKeys);
  const assertionSigningKeys = keys(record.assertionSigningKeys);
  const { demoClientSecret, idpCookieKeys } = record;
  if (
    tokenEncryptionKeys === null ||
    assertionSigningKeys === null ||
    typeof demoClientSecret !== "string" ||
    !Array.isArray(idpCookieKeys) ||
    !idpCookieKeys.every((k) => typeof k === "string")
  ) {
    return null;
  }
  return { tokenEncryptionKeys, assertionSigningKeys, demoClientSecret, idpCookieKeys };
}

import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { check, type Diagnostics } from "recheck";
import ts from "typescript";
import { describe, expect, it } from "vitest";

/**
 * SECURITY.md I37: no regular expression that touches client input may backtrack. Rather
 * than trusting a reviewer to spot the ones that do (issue 11: a split on optional spaces, a comma
 * and optional spaces cost 200 ms per `Connection` header), every pattern in src/ and public/ is found
 * by walking the syntax tree and handed to recheck, which reports an attack string for any
 * pattern with super-linear matching time.
 */

const ROOT = join(import.meta.dirname, "..");
const SCANNED = ["src", "public"];
const SCRIPT = /\.(?:[cm]?[jt]s|tsx)$/;

/**
 * A `new RegExp(x)` whose source is not a literal cannot be checked here: each must be
 * listed with the reason its source is safe, or the test fails. Empty today, and it should
 * stay that way: a pattern built at run time from data is where ReDoS hides.
 */
const DYNAMIC_ALLOWED: ReadonlyArray<{ file: string; reason: string }> = [];

/** The walker must find at least this many: an empty result means the walker broke, not that the code is safe. */
const AT_LEAST = 30;

interface Pattern {
  source: string;
  flags: string;
  where: string;
}

interface Scan {
  patterns: Pattern[];
  dynamic: string[];
  inlineScripts: string[];
}

function filesUnder(directory: string): string[] {
  return readdirSync(directory, { withFileTypes: true }).flatMap((entry) => {
    const path = join(directory, entry.name);
    return entry.isDirectory() ? filesUnder(path) : [path];
  });
}

function stringValue(node: ts.Node | undefined): string | null {
  return node !== undefined && (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) ? node.text : null;
}

/** `RegExp` or `globalThis.RegExp`: the constructor, called with or without `new`. */
function isRegExpConstructor(node: ts.Expression): boolean {
  if (ts.isIdentifier(node)) return node.text === "RegExp";
  return ts.isPropertyAccessExpression(node) && node.name.text === "RegExp";
}

/** `String.prototype.match/matchAll/search` turn a string argument into a RegExp. */
const STRING_TO_REGEXP = new Set(["match", "matchAll", "search"]);

function scanScript(path: string, scan: Scan): void {
  const file = ts.createSourceFile(path, readFileSync(path, "utf8"), ts.ScriptTarget.Latest, true);
  const where = (node: ts.Node): string => `${relative(ROOT, path)}:${file.getLineAndCharacterOfPosition(node.getStart()).line + 1}`;
  const visit = (node: ts.Node): void => {
    if (node.kind === ts.SyntaxKind.RegularExpressionLiteral) {
      const text = node.getText(file);
      const end = text.lastIndexOf("/");
      scan.patterns.push({ source: text.slice(1, end), flags: text.slice(end + 1), where: where(node) });
    } else if ((ts.isNewExpression(node) || ts.isCallExpression(node)) && isRegExpConstructor(node.expression)) {
      const [first, second] = node.arguments ?? [];
      const source = stringValue(first);
      const flags = second === undefined ? "" : stringValue(second);
      // A regex literal argument is collected on its own; with literal flags it is still checkable.
      if (first !== undefined && first.kind === ts.SyntaxKind.RegularExpressionLiteral && (second === undefined || flags !== null)) {
        // Collected by the branch above when the walk reaches it.
      } else if (source === null || flags === null) {
        scan.dynamic.push(where(node));
      } else {
        scan.patterns.push({ source, flags, where: where(node) });
      }
    } else if (ts.isCallExpression(node) && ts.isPropertyAccessExpression(node.expression) && STRING_TO_REGEXP.has(node.expression.name.text)) {
      const source = stringValue(node.arguments[0]);
      if (source !== null) scan.patterns.push({ source, flags: "", where: where(node) });
    }
    ts.forEachChild(node, visit);
  };
  visit(file);
}

function scanAll(): Scan {
  const scan: Scan = { patterns: [], dynamic: [], inlineScripts: [] };
  for (const directory of SCANNED) {
    for (const path of filesUnder(join(ROOT, directory))) {
      if (SCRIPT.test(path)) scanScript(path, scan);
      // Inline scripts would escape the walk (and the CSP forbids them anyway).
      if (path.endsWith(".html") && /<script\b(?![^>]*\bsrc=)[^>]*>/i.test(readFileSync(path, "utf8"))) {
        scan.inlineScripts.push(relative(ROOT, path));
      }
    }
  }
  return scan;
}

function describeVulnerability(pattern: Pattern, result: Diagnostics): string {
  const shown = `/${pattern.source}/${pattern.flags} at ${pattern.where}: ${result.status}`;
  if (result.status === "vulnerable") {
    const attack = result.attack.pattern.length > 200 ? `${result.attack.pattern.slice(0, 200)}…` : result.attack.pattern;
    return `${shown} (${result.complexity.summary}); attack: ${attack}`;
  }
  if (result.status === "unknown") return `${shown} (${result.error.kind}${"message" in result.error ? `: ${result.error.message}` : ""})`;
  return shown;
}

describe("regular expressions in src/ and public/ (SECURITY.md I37)", () => {
  // recheck's "auto" backend starts its native linux-x64 agent when present (one process,
  // milliseconds per pattern), else a JVM, else its pure JS build (seconds per pattern).
  const scan = scanAll();

  it(`finds a plausible number of patterns (at least ${AT_LEAST}), including known ones`, () => {
    expect(scan.patterns.length).toBeGreaterThanOrEqual(AT_LEAST);
    const sources = scan.patterns.map((p) => p.source);
    // One pattern known to be there, so a walker that misses literals cannot pass.
    expect(sources).toContain("^[+/0-9A-Za-z]{22}==$");
  });

  it("builds no RegExp from a non-literal source, unless listed with a reason", () => {
    const allowed = new Set(DYNAMIC_ALLOWED.map((entry) => entry.file));
    expect(scan.dynamic.filter((where) => !allowed.has(where.replace(/:\d+$/, "")))).toEqual([]);
  });

  it("finds no inline script in public/ HTML (it would escape this check)", () => {
    expect(scan.inlineScripts).toEqual([]);
  });

  it("has no pattern recheck does not call safe", async () => {
    const failures: string[] = [];
    // Deterministic: a fixed seed, and a timeout long enough that a slow machine reports
    // the pattern's status rather than "timeout" (which fails too: unknown is not safe).
    for (const pattern of scan.patterns) {
      const result = await check(pattern.source, pattern.flags, { randomSeed: 0, timeout: 20_000 });
      if (result.status !== "safe") failures.push(describeVulnerability(pattern, result));
    }
    expect(failures, failures.join("\n")).toEqual([]);
  }, 120_000);
});

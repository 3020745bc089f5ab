import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import { securityHeadersMiddleware } from "../../src/http/headers";

/**
 * SECURITY.md F30: no inline script anywhere in public/. The browser suite would see a CSP
 * violation, but it is not part of `npm test` (issue 17); this reads every page and image
 * that can carry markup, with a small tokenizer of its own (no HTML parser is installed).
 */
const PUBLIC_DIR = fileURLToPath(new URL("../../public", import.meta.url));
const MARKUP = /\.(html|htm|svg|xhtml)$/;

interface Element {
  name: string;
  attributes: [string, string][];
  /** The raw text inside <script> and <style>, which the tokenizer does not descend into. */
  body: string;
  line: number;
}

/** Every start tag of `html`, comments and doctype skipped; enough for hand-written pages. */
function elements(html: string): Element[] {
  const found: Element[] = [];
  const lower = html.toLowerCase();
  const isSpace = (ch: string | undefined): boolean => ch === " " || ch === "\n" || ch === "\t" || ch === "\r" || ch === "\f";
  let i = 0;
  while (i < html.length) {
    if (html.startsWith("<!--", i)) {
      const end = html.indexOf("-->", i + 4);
      i = end === -1 ? html.length : end + 3;
      continue;
    }
    if (html[i] !== "<") {
      i += 1;
      continue;
    }
    const next = html[i + 1] ?? "";
    if (next === "!" || next === "?") {
      const end = html.indexOf(">", i);
      i = end === -1 ? html.length : end + 1;
      continue;
    }
    if (!/[A-Za-z]/.test(next)) {
      i += 1;
      continue;
    }
    const line = html.slice(0, i).split("\n").length;
    let j = i + 1;
    while (j < html.length && !isSpace(html[j]) && html[j] !== ">" && html[j] !== "/") j += 1;
    const name = html.slice(i + 1, j).toLowerCase();
    const attributes: [string, string][] = [];
    while (j < html.length && html[j] !== ">") {
      if (isSpace(html[j]) || html[j] === "/") {
        j += 1;
        continue;
      }
      const nameStart = j;
      while (j < html.length && !isSpace(html[j]) && html[j] !== "=" && html[j] !== ">" && !(html[j] === "/" && html[j + 1] === ">")) j += 1;
      const attribute = html.slice(nameStart, j).toLowerCase();
      while (isSpace(html[j])) j += 1;
      let value = "";
      if (html[j] === "=") {
        j += 1;
        while (isSpace(html[j])) j += 1;
        const quote = html[j];
        if (quote === '"' || quote === "'") {
          const end = html.indexOf(quote, j + 1);
          value = html.slice(j + 1, end === -1 ? html.length : end);
          j = end === -1 ? html.length : end + 1;
        } else {
          const valueStart = j;
          while (j < html.length && !isSpace(html[j]) && html[j] !== ">") j += 1;
          value = html.slice(valueStart, j);
        }
      }
      attributes.push([attribute, decodeEntities(value)]);
    }
    j += 1;
    let body = "";
    if (name === "script" || name === "style") {
      const close = lower.indexOf(`</${name}`, j);
      body = html.slice(j, close === -1 ? html.length : close);
      j = close === -1 ? html.length : close;
    }
    found.push({ name, attributes, body, line });
    i = j;
  }
  return found;
}

/** The character references an attacker would use to hide `javascript:` in an attribute. */
function decodeEntities(value: string): string {
  return value
    .replace(/&#x([0-9a-f]{1,6});?/gi, (_m, hex: string) => String.fromCodePoint(Number.parseInt(hex, 16)))
    .replace(/&#([0-9]{1,7});?/g, (_m, dec: string) => String.fromCodePoint(Number(dec)))
    .replace(/&colon;/gi, ":")
    .replace(/&tab;/gi, "\t")
    .replace(/&newline;/gi, "\n")
    .replace(/&amp;/gi, "&");
}

/** What the policy forbids in markup: inline script always; inline style when style-src has no 'unsafe-inline'. */
function violations(html: string, options: { inlineStyleAllowed: boolean }): string[] {
  const found: string[] = [];
  for (const element of elements(html)) {
    const at = `<${element.name}> on line ${element.line}`;
    if (element.name === "script") {
      const src = element.attributes.find(([name]) => name === "src")?.[1] ?? "";
      if (src.trim() === "") found.push(`${at}: a script without src`);
      if (element.body.trim() !== "") found.push(`${at}: script text inline`);
    }
    if (element.name === "style" && !options.inlineStyleAllowed) found.push(`${at}: a <style> element`);
    for (const [name, value] of element.attributes) {
      if (name.startsWith("on")) found.push(`${at}: event handler attribute ${name}`);
      if (name === "style" && !options.inlineStyleAllowed) found.push(`${at}: style attribute`);
      if (name === "srcdoc") found.push(`${at}: srcdoc`);
      // Browsers ignore ASCII whitespace and control characters inside a URL's scheme.
      let squeezed = "";
      for (const ch of value.toLowerCase()) if (ch > " ") squeezed += ch;
      if (squeezed.includes("javascript:") || squeezed.includes("vbscript:") || squeezed.startsWith("data:text/html")) {
        found.push(`${at}: script URL in ${name}`);
      }
    }
  }
  return found;
}

/** The CSP the server actually sends, directive by directive. */
async function servedPolicy(): Promise<Map<string, string[]>> {
  const app = new Hono();
  app.use(securityHeadersMiddleware({ publicOrigin: "https://game.example", formActionOrigins: [], connectOrigins: [] }));
  app.get("/", (c) => c.text("ok"));
  const header = (await app.request("https://game.example/")).headers.get("content-security-policy") ?? "";
  const policy = new Map<string, string[]>();
  for (const directive of header.split(";")) {
    const [name, ...sources] = directive.trim().split(/\s+/);
    if (name) policy.set(name.toLowerCase(), sources);
  }
  return policy;
}

describe("no inline script in public/ (SECURITY.md F30)", () => {
  const files = readdirSync(PUBLIC_DIR).filter((file) => MARKUP.test(file));

  it("finds the pages to check", () => {
    expect(files).toContain("index.html");
  });

  it("the served CSP forbids inline script, so inline script would break the page", async () => {
    const policy = await servedPolicy();
    const scripts = policy.get("script-src") ?? policy.get("default-src") ?? [];
    expect(scripts.length).toBeGreaterThan(0);
    expect(scripts).not.toContain("'unsafe-inline'");
    expect(scripts).not.toContain("'unsafe-eval'");
  });

  it.each(files)("%s: no script without src, no on* attribute, no javascript: URL, no inline style the CSP forbids", async (file) => {
    const policy = await servedPolicy();
    const styles = policy.get("style-src-attr") ?? policy.get("style-src") ?? policy.get("default-src") ?? [];
    const inlineStyleAllowed = styles.includes("'unsafe-inline'");
    expect(violations(readFileSync(join(PUBLIC_DIR, file), "utf8"), { inlineStyleAllowed })).toEqual([]);
  });

  describe("the checker itself", () => {
    it.each([
      ["<script>alert(1)</script>", "a script without src"],
      ['<script src="/app.js">alert(1)</script>', "script text inline"],
      ["<SCRIPT\n>x()</SCRIPT>", "a script without src"],
      ['<img src="x.png" onerror="alert(1)">', "event handler attribute onerror"],
      ["<body onload=go()>", "event handler attribute onload"],
      ['<a href="javascript:alert(1)">x</a>', "script URL in href"],
      ['<a href=" JaVa\tScRiPt:alert(1)">x</a>', "script URL in href"],
      ['<a href="javascript&colon;alert(1)">x</a>', "script URL in href"],
      ['<a href="&#106;avascript:alert(1)">x</a>', "script URL in href"],
      ['<form action="javascript:go()"></form>', "script URL in action"],
      ['<iframe srcdoc="&lt;script&gt;"></iframe>', "srcdoc"],
      ['<p style="color:red">x</p>', "style attribute"],
      ["<style>p{}</style>", "a <style> element"],
      ['<svg><rect onclick="x()"/></svg>', "event handler attribute onclick"],
    ])("catches %j", (html, problem) => {
      expect(violations(html, { inlineStyleAllowed: false }).join("\n")).toContain(problem);
    });

    it("passes what the policy allows", () => {
      const html = '<!-- <script>x</script> --><!doctype html><script type="module" src="/app.js"></script><a href="/x?on=1" data-one="javascript">x</a>';
      expect(violations(html, { inlineStyleAllowed: false })).toEqual([]);
      expect(violations('<p style="color:red">x</p>', { inlineStyleAllowed: true })).toEqual([]);
    });
  });
});

import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";

const ROOT = new URL("../../", import.meta.url);

/** The guide's blocks marked "*from <file>:*", each with the file it claims to be copied from. */
function copiedBlocks(markdown: string): { file: string; block: string }[] {
  const blocks: { file: string; block: string }[] = [];
  let file: string | null = null;
  for (const part of markdown.split(/^```[a-z]*\n/m).entries()) {
    const [index, text] = part;
    if (index % 2 === 0) {
      // Prose: a marker names the file for every block up to the next prose with a heading.
      const marker = /\*from ([\w./-]+):\*/.exec(text);
      if (marker?.[1] !== undefined) file = marker[1];
      else if (/^#/m.test(text)) file = null;
    } else if (file !== null) {
      blocks.push({ file, block: text.replace(/```\s*$/, "") });
    }
  }
  return blocks;
}

describe("docs/socketio.md shows the code the tests run (issue 12)", () => {
  const guide = readFileSync(new URL("docs/socketio.md", ROOT), "utf8");
  const blocks = copiedBlocks(guide);

  it("has copied blocks, from the Socket.IO fixture and the demo page", () => {
    expect(new Set(blocks.map((b) => b.file))).toEqual(new Set(["test/fixtures/socketio-backend.ts", "public/lobby.js"]));
    expect(blocks.length).toBeGreaterThanOrEqual(8);
  });

  it("every copied block's lines stand in its file, in the same order", () => {
    for (const { file, block } of blocks) {
      const source = readFileSync(new URL(file, ROOT), "utf8").split("\n");
      let at = 0;
      for (const line of block.split("\n").filter((l) => l.trim() !== "")) {
        const found = source.indexOf(line, at);
        expect(found, `${file}: ${JSON.stringify(line)}`).toBeGreaterThanOrEqual(0);
        at = found + 1;
      }
    }
  });
});

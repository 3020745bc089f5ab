// Prints the mutation score of each module from reports/mutation/<module>.json as a
// Markdown table (the README's), and lists every surviving mutant with its place.
import { existsSync, readFileSync, readdirSync } from "node:fs";

const dir = "reports/mutation";
const rows = [];
const survivors = [];
for (const file of existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith(".json")).sort() : []) {
  const report = JSON.parse(readFileSync(`${dir}/${file}`, "utf8"));
  const count = { Killed: 0, Timeout: 0, Survived: 0, NoCoverage: 0, CompileError: 0, RuntimeError: 0, Ignored: 0 };
  for (const [path, source] of Object.entries(report.files)) {
    for (const mutant of source.mutants) {
      count[mutant.status] = (count[mutant.status] ?? 0) + 1;
      if (mutant.status === "Survived" || mutant.status === "NoCoverage") {
        survivors.push(`${path}:${mutant.location.start.line} ${mutant.status} ${mutant.mutatorName}: ${(mutant.replacement ?? "").replace(/\s+/g, " ").slice(0, 80)}`);
      }
    }
  }
  const detected = count.Killed + count.Timeout;
  const valid = detected + count.Survived + count.NoCoverage;
  rows.push(`| ${file.replace(/\.json$/, "")} | ${valid} | ${count.Killed} | ${count.Timeout} | ${count.Survived} | ${count.NoCoverage} | ${count.CompileError} | ${valid ? ((100 * detected) / valid).toFixed(1) : "n/a"} % |`);
}
console.log("| module | mutants tested | killed | timed out | survived | no coverage | type errors | score |");
console.log("|---|---:|---:|---:|---:|---:|---:|---:|");
for (const row of rows) console.log(row);
if (survivors.length > 0) {
  console.log(`\n${survivors.length} surviving mutants:`);
  for (const line of survivors) console.log(`  ${line}`);
}

#!/usr/bin/env bash
# Runs `npm run mutate` module by module (smallest first), each with its own report in
# reports/mutation/<module>.json and its own incremental file, then prints the score table.
set -u
cd "$(dirname "$0")/.."
modules=${*:-"crypto rate-limit tickets registry audit gate api-relay auth-session auth-login auth-logout"}
for m in $modules; do
  echo "::: mutating $m"
  MUTATE_MODULE=$m npx stryker run > "reports/mutation/$m.log" 2>&1 || echo "stryker failed for $m (see reports/mutation/$m.log)"
done
node scripts/mutation-scores.mjs

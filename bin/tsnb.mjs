#!/usr/bin/env node
// The `tsnb` command. The real entry is bundled into dist/ by `npm run build` (run by `prepare`).
import "../dist/cli.js";

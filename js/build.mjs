// Builds the shipped client: one minified ES module per entry point, bundling its
// dependencies, plus one .d.ts each, into the Python package (src/pl3xus_rx/web/), where the
// server serves them (/pl3xus.js) and the wheel carries them. `node build.mjs --check` builds
// into a temporary folder and fails if the committed files differ (CI runs it).
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

const here = dirname(fileURLToPath(import.meta.url));
const shipped = join(here, "..", "src", "pl3xus_rx", "web");
const check = process.argv.includes("--check");
const out = check ? mkdtempSync(join(tmpdir(), "pl3xus-js-")) : shipped;

const entries = [
  { source: "src/index.ts", name: "pl3xus" },
  { source: "src/react.ts", name: "pl3xus-react", external: ["react", "./pl3xus.js"] },
];

const sizes = [];
for (const entry of entries) {
  if (!existsSync(join(here, entry.source))) continue;
  const file = join(out, `${entry.name}.js`);
  await build({
    entryPoints: [join(here, entry.source)],
    outfile: file,
    bundle: true,
    format: "esm",
    target: "es2020",
    minify: true,
    keepNames: true, // (error classes keep their names: InvalidValue, not Ce)
    legalComments: "eof",
    external: entry.external ?? [],
    alias: entry.name === "pl3xus-react" ? { "./index.js": "./pl3xus.js" } : {},
    logLevel: "warning",
  });
  execFileSync(
    join(here, "node_modules", ".bin", "dts-bundle-generator"),
    ["--silent", "--no-check", "--project", join(here, "tsconfig.json"),
     "--external-inlines", "@preact/signals-core", "-o", join(out, `${entry.name}.d.ts`), join(here, entry.source)],
    { stdio: "inherit" },
  );
  const bytes = readFileSync(file);
  sizes.push(`${entry.name}.js: ${bytes.length} bytes, ${gzipSync(bytes).length} gzipped`);
}

if (check) {
  const stale = [];
  for (const entry of entries) {
    for (const ext of [".js", ".d.ts"]) {
      const name = `${entry.name}${ext}`;
      if (!existsSync(join(out, name))) continue;
      const fresh = readFileSync(join(out, name), "utf8");
      const committed = existsSync(join(shipped, name)) ? readFileSync(join(shipped, name), "utf8") : "";
      if (fresh !== committed) stale.push(name);
    }
  }
  rmSync(out, { recursive: true, force: true });
  if (stale.length) {
    console.error(`src/pl3xus_rx/web: ${stale.join(", ")} differ from a fresh build: run \`npm run build\` in js/ and commit`);
    process.exit(1);
  }
  console.log("src/pl3xus_rx/web matches a fresh build");
} else {
  console.log(sizes.join("\n"));
}

import { readFileSync, writeFileSync } from 'node:fs';
import { renderApiDescriptions } from './api-descriptions/render.js';

/** npm run docs:api: writes docs/openapi.yaml and docs/asyncapi.yaml from the zod schemas (docs/reference.md). */
const root = new URL('../', import.meta.url);
for (const { path, text } of renderApiDescriptions(root)) {
  const file = new URL(path, root);
  let current: string | null = null;
  try {
    current = readFileSync(file, 'utf8');
  } catch {
    // not written yet
  }
  if (current === text) {
    console.log(`${path}: unchanged`);
    continue;
  }
  writeFileSync(file, text);
  console.log(`${path}: written`);
}

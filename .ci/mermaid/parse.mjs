// Parse a Mermaid diagram (stdin) with Mermaid's own parser: prints its type, or the parse error and exits 1.
// Mermaid sanitises labels with DOMPurify, which needs a DOM: jsdom gives it one.
import { JSDOM } from 'jsdom';

const dom = new JSDOM('<!doctype html><html><body></body></html>');
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const { default: mermaid } = await import('mermaid');

let text = '';
for await (const chunk of process.stdin) text += chunk;
try {
  const parsed = await mermaid.parse(text);
  process.stdout.write(`${parsed.diagramType}\n`);
} catch (e) {
  process.stderr.write(`${e.message || e}\n`);
  process.exit(1);
}

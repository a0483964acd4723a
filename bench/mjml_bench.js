// The rendering benchmark's reference side (run by bench/run.sh): compiles one MJML file with the
// `mjml` npm package, in this one process after a warm-up, and prints the time of one compile.
//   NODE_PATH=DIR/node_modules node bench/mjml_bench.js FILE.mjml [ITERATIONS]
// Options as Gazette compiles (comments dropped, no minifying); mjml 5 returns a promise, mjml 4 does not.
const fs = require('fs');
const mjml2html = require('mjml');

async function main() {
  const [file, n] = process.argv.slice(2);
  const iterations = Number(n || 20);
  const source = fs.readFileSync(file, 'utf8');
  const compile = () => Promise.resolve(mjml2html(source, { keepComments: false, validationLevel: 'soft' }));
  const first = await compile();
  if (first.errors && first.errors.length) console.error(`mjml: ${first.errors.length} validation warnings`);
  for (let i = 0; i < Math.ceil(iterations / 10); i++) await compile();
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) await compile();
  const seconds = Number(process.hrtime.bigint() - start) / 1e9 / iterations;
  console.log(`html_bytes ${Buffer.byteLength(first.html)}`);
  console.log(`compile_ms ${(seconds * 1e3).toFixed(4)}`);
}
main().catch((e) => { console.error(e); process.exit(1); });

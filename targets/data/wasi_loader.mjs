// Runs a WASI (preview1) command module under node: node wasi_loader.mjs MODULE.wasm WORKDIR [ARGS...]
// WORKDIR is preopened as "." so the program's relative paths land there. A trap is
// printed after the HWSIM_WASM_TRAP: marker so targets/runners/node.py can report it.
import { readFile } from "node:fs/promises";
import { WASI } from "node:wasi";
import process from "node:process";

const [wasmPath, workdir, ...programArgs] = process.argv.slice(2);
const wasi = new WASI({
  version: "preview1",
  args: [wasmPath.split("/").pop(), ...programArgs],
  env: {},
  preopens: { ".": workdir },
  returnOnExit: true,
});
let exitCode;
try {
  const module = await WebAssembly.compile(await readFile(wasmPath));
  const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
  exitCode = wasi.start(instance);
} catch (error) {
  process.stderr.write(`HWSIM_WASM_TRAP: ${error && error.message ? error.message : error}\n`);
  if (error && error.stack) process.stderr.write(`${error.stack}\n`);
  exitCode = 70;
}
process.exitCode = exitCode ?? 0;

// Runs a WASI (preview1) command module inside a browser Worker, the way
// targets/data/wasi_loader.mjs runs it under node: same argv, "." preopened as the
// program's working directory, stdout/stderr captured, a trap reported after the
// HWSIM_WASM_TRAP: marker.
//
// Files: the page is served by targets/runners/chromium.py, whose /fs/ route is the
// run's working directory. A file opened for reading is fetched whole with a
// synchronous XHR (allowed in workers); a file opened for writing is kept in memory
// and PUT back when it is closed. clock_time_get is performance.now(), so the
// harness's own timings (its HWSIM_TIMES line) are the browser's clock.
//
// Only the calls the codegen harnesses import are implemented (checked against
// WebAssembly.Module.imports before instantiating): a module needing more fails with
// a message naming the missing call rather than at a random point.

const ERRNO = { SUCCESS: 0, BADF: 8, INVAL: 28, IO: 29, NOENT: 44, NOSYS: 52, SPIPE: 70 };
const FILETYPE = { CHARACTER_DEVICE: 2, DIRECTORY: 3, REGULAR_FILE: 4 };
const OFLAGS = { CREAT: 1, DIRECTORY: 2, EXCL: 4, TRUNC: 8 };
const RIGHT_FD_WRITE = 1n << 6n;
const ALL_RIGHTS = (1n << 30n) - 1n;
const PREOPEN_FD = 3;

class ProcExit extends Error {
  constructor(code) { super(`exit ${code}`); this.code = code; }
}

function fetchBytes(url) {
  const request = new XMLHttpRequest();
  request.open("GET", url, false);
  request.responseType = "arraybuffer";
  request.send();
  if (request.status === 404) return null;
  if (request.status !== 200) throw new Error(`GET ${url}: HTTP ${request.status}`);
  return new Uint8Array(request.response);
}

function putBytes(url, bytes) {
  const request = new XMLHttpRequest();
  request.open("PUT", url, false);
  request.send(bytes);
  if (request.status !== 200 && request.status !== 201 && request.status !== 204) {
    throw new Error(`PUT ${url}: HTTP ${request.status}`);
  }
}

// A regular file: its bytes (grown on write), its logical size and the file position.
class OpenFile {
  constructor(path, bytes, writable) {
    this.path = path;
    this.bytes = bytes;
    this.size = bytes.length;
    this.position = 0;
    this.writable = writable;
  }
  write(chunk) {
    const end = this.position + chunk.length;
    if (end > this.bytes.length) {
      const grown = new Uint8Array(Math.max(end, 2 * this.bytes.length, 4096));
      grown.set(this.bytes.subarray(0, this.size));
      this.bytes = grown;
    }
    this.bytes.set(chunk, this.position);
    this.position = end;
    this.size = Math.max(this.size, end);
  }
}

export function runWasi({ moduleBytes, args, fsUrl }) {
  const decoder = new TextDecoder();
  const encoder = new TextEncoder();
  const output = { stdout: "", stderr: "" };
  const files = new Map();       // fd -> OpenFile
  let nextFd = PREOPEN_FD + 1;
  let memory = null;
  const view = () => new DataView(memory.buffer);
  const bytesAt = (pointer, length) => new Uint8Array(memory.buffer, pointer, length);
  const encodedArgs = args.map((arg) => encoder.encode(`${arg}\0`));

  function iovecs(pointer, count) {
    const list = [];
    for (let index = 0; index < count; index++) {
      list.push([view().getUint32(pointer + 8 * index, true),
                 view().getUint32(pointer + 8 * index + 4, true)]);
    }
    return list;
  }

  function flush(file) {
    if (file.writable) putBytes(fsUrl + encodeURI(file.path), file.bytes.subarray(0, file.size));
  }

  const calls = {
    args_sizes_get(countPointer, bytesPointer) {
      view().setUint32(countPointer, encodedArgs.length, true);
      view().setUint32(bytesPointer, encodedArgs.reduce((sum, arg) => sum + arg.length, 0), true);
      return ERRNO.SUCCESS;
    },
    args_get(argvPointer, bufferPointer) {
      let offset = bufferPointer;
      encodedArgs.forEach((arg, index) => {
        view().setUint32(argvPointer + 4 * index, offset, true);
        bytesAt(offset, arg.length).set(arg);
        offset += arg.length;
      });
      return ERRNO.SUCCESS;
    },
    clock_time_get(clockId, precision, timePointer) {
      // 0 = realtime, 1 = monotonic (what the harness uses): both from performance.now().
      const milliseconds = clockId === 0 ? performance.timeOrigin + performance.now()
                                         : performance.now();
      view().setBigUint64(timePointer, BigInt(Math.round(milliseconds * 1e6)), true);
      return ERRNO.SUCCESS;
    },
    fd_prestat_get(fd, pointer) {
      if (fd !== PREOPEN_FD) return ERRNO.BADF;
      view().setUint8(pointer, 0);            // preopen type: directory
      view().setUint32(pointer + 4, 1, true); // name ".": one byte
      return ERRNO.SUCCESS;
    },
    fd_prestat_dir_name(fd, pointer, length) {
      if (fd !== PREOPEN_FD) return ERRNO.BADF;
      bytesAt(pointer, length).set(encoder.encode(".").subarray(0, length));
      return ERRNO.SUCCESS;
    },
    fd_fdstat_get(fd, pointer) {
      let filetype;
      if (fd <= 2) filetype = FILETYPE.CHARACTER_DEVICE;
      else if (fd === PREOPEN_FD) filetype = FILETYPE.DIRECTORY;
      else if (files.has(fd)) filetype = FILETYPE.REGULAR_FILE;
      else return ERRNO.BADF;
      view().setUint8(pointer, filetype);
      view().setUint16(pointer + 2, 0, true);
      view().setBigUint64(pointer + 8, ALL_RIGHTS, true);
      view().setBigUint64(pointer + 16, ALL_RIGHTS, true);
      return ERRNO.SUCCESS;
    },
    fd_fdstat_set_flags() { return ERRNO.SUCCESS; },
    path_open(dirFd, dirFlags, pathPointer, pathLength, oflags, rightsBase, rightsInheriting,
              fdflags, fdPointer) {
      if (dirFd !== PREOPEN_FD) return ERRNO.BADF;
      if (oflags & OFLAGS.DIRECTORY) return ERRNO.NOSYS;
      const path = decoder.decode(bytesAt(pathPointer, pathLength).slice());
      if (path.startsWith("/") || path.split("/").includes("..")) return ERRNO.INVAL;
      const writable = (BigInt(rightsBase) & RIGHT_FD_WRITE) !== 0n
        || (oflags & (OFLAGS.CREAT | OFLAGS.TRUNC)) !== 0;
      let bytes = null;
      if (!(oflags & OFLAGS.TRUNC)) {
        bytes = fetchBytes(fsUrl + encodeURI(path));
        if (bytes === null && !(oflags & OFLAGS.CREAT)) return ERRNO.NOENT;
      }
      const fd = nextFd++;
      files.set(fd, new OpenFile(path, bytes ?? new Uint8Array(0), writable));
      view().setUint32(fdPointer, fd, true);
      return ERRNO.SUCCESS;
    },
    fd_read(fd, iovsPointer, iovsCount, readPointer) {
      if (fd === 0) { view().setUint32(readPointer, 0, true); return ERRNO.SUCCESS; }
      const file = files.get(fd);
      if (!file) return ERRNO.BADF;
      let total = 0;
      for (const [pointer, length] of iovecs(iovsPointer, iovsCount)) {
        const count = Math.max(0, Math.min(length, file.size - file.position));
        bytesAt(pointer, count).set(file.bytes.subarray(file.position, file.position + count));
        file.position += count;
        total += count;
        if (count < length) break;
      }
      view().setUint32(readPointer, total, true);
      return ERRNO.SUCCESS;
    },
    fd_write(fd, iovsPointer, iovsCount, writtenPointer) {
      let total = 0;
      const file = files.get(fd);
      if (fd !== 1 && fd !== 2 && !file) return ERRNO.BADF;
      for (const [pointer, length] of iovecs(iovsPointer, iovsCount)) {
        const chunk = bytesAt(pointer, length);
        if (fd === 1) output.stdout += decoder.decode(chunk.slice(), { stream: true });
        else if (fd === 2) output.stderr += decoder.decode(chunk.slice(), { stream: true });
        else file.write(chunk.slice());
        total += length;
      }
      view().setUint32(writtenPointer, total, true);
      return ERRNO.SUCCESS;
    },
    fd_seek(fd, offset, whence, positionPointer) {
      if (fd <= 2) return ERRNO.SPIPE;
      const file = files.get(fd);
      if (!file) return ERRNO.BADF;
      const base = [0, file.position, file.size][whence];
      if (base === undefined) return ERRNO.INVAL;
      const position = base + Number(offset);
      if (position < 0) return ERRNO.INVAL;
      file.position = position;
      view().setBigUint64(positionPointer, BigInt(position), true);
      return ERRNO.SUCCESS;
    },
    fd_close(fd) {
      const file = files.get(fd);
      if (!file) return fd <= PREOPEN_FD ? ERRNO.SUCCESS : ERRNO.BADF;
      files.delete(fd);
      try { flush(file); } catch (error) { output.stderr += `${error.message}\n`; return ERRNO.IO; }
      return ERRNO.SUCCESS;
    },
    proc_exit(code) { throw new ProcExit(code); },
  };

  const module = new WebAssembly.Module(moduleBytes);
  const missing = WebAssembly.Module.imports(module)
    .filter((entry) => entry.module !== "wasi_snapshot_preview1" || !(entry.name in calls))
    .map((entry) => `${entry.module}.${entry.name}`);
  if (missing.length) {
    throw new Error(`the browser WASI shim lacks ${missing.join(", ")}`);
  }
  const instance = new WebAssembly.Instance(module, { wasi_snapshot_preview1: calls });
  memory = instance.exports.memory;
  let exitCode = 0;
  try {
    instance.exports._start();
  } catch (error) {
    if (error instanceof ProcExit) {
      exitCode = error.code;
    } else {   // a trap: keep what the program printed before it
      output.stderr += `HWSIM_WASM_TRAP: ${error && error.message ? error.message : error}\n`
                       + `${error && error.stack ? error.stack : ""}\n`;
      exitCode = 70;
    }
  }
  for (const file of files.values()) flush(file);   // files the program left open
  return { exitCode, ...output };
}

// As a Worker: one message {wasmUrl, args, fsUrl} in, one {exitCode, stdout, stderr} out.
if (typeof WorkerGlobalScope !== "undefined" && self instanceof WorkerGlobalScope) {
  self.onmessage = (event) => {
    const { wasmUrl, args, fsUrl } = event.data;
    let result;
    try {
      const moduleBytes = fetchBytes(wasmUrl);
      if (moduleBytes === null) throw new Error(`${wasmUrl} not found`);
      result = runWasi({ moduleBytes, args, fsUrl });
    } catch (error) {
      result = { exitCode: 70, stdout: "",
                 stderr: `HWSIM_WASM_TRAP: ${error && error.message ? error.message : error}\n`
                         + `${error && error.stack ? error.stack : ""}\n` };
    }
    self.postMessage({ ...result, crossOriginIsolated: self.crossOriginIsolated });
  };
}

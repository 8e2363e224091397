"""CPU and WebAssembly cost model: llvm-mca on the kernels' machine code, plus a memory roofline."""

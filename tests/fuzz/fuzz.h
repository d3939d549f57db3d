/*
 * fuzz.h - what a fuzz target (tests/fuzz/fuzz_*.c) offers its drivers:
 * libFuzzer's, built by tests/fuzz/run.sh, and tests/fuzz/regress.c, which
 * `make check` runs over the kept inputs.
 */
#ifndef KEYWAY_FUZZ_H
#define KEYWAY_FUZZ_H

#include <stddef.h>
#include <stdint.h>

/* Run one input; aborts when something that must hold does not.  Always
 * returns 0, as libFuzzer wants. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif

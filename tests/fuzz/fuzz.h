/* SPDX-License-Identifier: MIT */
/* The entry point every fuzz target defines (libFuzzer's, or replay.c's caller). */
#ifndef RMIG_FUZZ_H
#define RMIG_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif

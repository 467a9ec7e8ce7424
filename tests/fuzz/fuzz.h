/* SPDX-License-Identifier: Apache-2.0 */
#ifndef KMM_TESTS_FUZZ_H
#define KMM_TESTS_FUZZ_H

#include <stddef.h>
#include <stdint.h>

/* Every fuzz target defines this; libFuzzer or fuzz-main.c calls it. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to lib/: KMM_TESTABLE marks a function that is static in the product
 * library but extern in the test variant (built with KMM_TESTING), where unit
 * tests reach it through the area's *-internal.h header.
 */
#ifndef KMM_LIB_INTERNAL_H
#define KMM_LIB_INTERNAL_H

#ifdef KMM_TESTING
#define KMM_TESTABLE
#else
#define KMM_TESTABLE static
#endif

#endif

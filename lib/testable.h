/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Private to lib/ (every area, no area owns it): KMM_TESTABLE marks a function that is static in the product
 * library but extern in the test variant (built with KMM_TESTING), where unit
 * tests reach it through the area's *-internal.h header.
 *
 * Declare such functions in the *-internal.h header inside
 * `#ifdef KMM_TESTING`, without KMM_TESTABLE: in the product build they stay
 * file-local, and a declaration there would be an unused static.
 *
 *     lib/foo/foo-internal.h:   #ifdef KMM_TESTING
 *                               int kmm_foo_parse_line(const char *line);
 *                               #endif
 *     lib/foo/foo.c:            KMM_TESTABLE int kmm_foo_parse_line(const char *line) { ... }
 */
#ifndef KMM_LIB_TESTABLE_H
#define KMM_LIB_TESTABLE_H

#ifdef KMM_TESTING
#define KMM_TESTABLE
#else
#define KMM_TESTABLE static
#endif

#endif

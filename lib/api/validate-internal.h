/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers of validate.c exposed to unit tests (KMM_TESTABLE). */
#ifndef KMM_LIB_API_VALIDATE_INTERNAL_H
#define KMM_LIB_API_VALIDATE_INTERNAL_H

#include <stdbool.h>

#ifdef KMM_TESTING
bool kmm_is_dns1123_subdomain(const char *s);
bool kmm_is_qualified_name(const char *s);
bool kmm_is_label_value(const char *s);
char *kmm_path_clean(const char *p);
#endif

#endif
